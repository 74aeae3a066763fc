"""The admin API's fields, read with their type and range checked: a bad one is a 400 that says which.

JSON gives booleans where numbers are expected (``true`` is not 1 here), integers with
thousands of digits, and NaN-free floats of any size; the store's SQLite takes 64-bit
integers only. Each field is checked before it reaches the store.
"""

from __future__ import annotations

import math
from typing import Any

from lambdaserve.errors import LambdaserveError

LARGEST = 2**31 - 1  # versions, bursts, quotas: API Gateway's own counts are 32-bit


def whole_number(data: dict[str, Any], field: str, *, low: int = 0, high: int = LARGEST) -> int | None:
    """``data[field]`` as an integer in [low, high]; None when absent or null."""
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LambdaserveError(f"{field} must be a whole number from {low} to {high}, not {_shown(value)}.")
    return value


def decimal(data: dict[str, Any], field: str, *, low: float, high: float) -> float | None:
    """``data[field]`` as a finite number in (low, high]; None when absent or null."""
    value = data.get(field)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low < value <= high
    ):
        raise LambdaserveError(
            f"{field} must be a number above {low:g} and at most {high:g}, not {_shown(value)}."
        )
    return float(value)


def text(data: dict[str, Any], field: str, *, default: str = "", longest: int = 128) -> str:
    value = data.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > longest:
        raise LambdaserveError(
            f"{field} must be a string of at most {longest} characters, not {_shown(value)}."
        )
    return value


def names(data: dict[str, Any], field: str, *, most: int = 64) -> list[str] | None:
    """``data[field]`` as a list of strings (at most ``most``); None when absent or null."""
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > most or not all(isinstance(v, str) for v in value):
        raise LambdaserveError(
            f'{field} must be a list of at most {most} names, e.g. ["test", "prod"], not {_shown(value)}.'
        )
    return value


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
