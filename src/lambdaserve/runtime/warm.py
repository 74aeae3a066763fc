"""The warm-up sample a function's INIT predicts once (``LAMBDASERVE_WARM_UP``; see handler.py)."""

from __future__ import annotations

import json
from typing import Any


def warm_up_variable(sample: Any, largest: int) -> dict[str, str]:
    """``{"LAMBDASERVE_WARM_UP": sample as JSON}``, or nothing when there is no sample or its JSON
    is over ``largest`` bytes (Lambda holds 4 KB of variables in all)."""
    if sample is None:
        return {}
    text = json.dumps(sample, separators=(",", ":"))
    return {"LAMBDASERVE_WARM_UP": text} if len(text.encode()) <= largest else {}
