"""Each model's log stream, as CloudWatch Logs keeps a function's: START / END / REPORT
lines, the handler's own lines, INIT output.

Lines are buffered in memory and appended to ``<state>/logs/<model>.log`` by the
server's housekeeping task (``flush``), each prefixed with its UTC timestamp and a tab.
A file over 20 MB is rotated once (``.log.1``). The last lines of each model are also
kept in memory for the admin API and the console.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

ROTATE_BYTES = 20 * 1024 * 1024
_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def log_path(state_dir: Path, model: str) -> Path:
    return state_dir / "logs" / f"{_SAFE.sub('_', model)}.log"


class LogBook:
    def __init__(self, state_dir: Path, keep: int = 500) -> None:
        self.state_dir = state_dir
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._pending: dict[str, list[str]] = collections.defaultdict(list)
        self._recent: dict[str, collections.deque[str]] = {}

    def write(self, model: str, lines: Iterable[str]) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stamped = [f"{stamp}\t{line}" for line in lines]
        self._pending[model].extend(stamped)
        self._recent.setdefault(model, collections.deque(maxlen=self.keep)).extend(stamped)

    def recent(self, model: str, count: int = 100) -> list[str]:
        lines = self._recent.get(model) or ()
        return list(lines)[-count:]

    def flush(self) -> None:
        pending, self._pending = self._pending, collections.defaultdict(list)
        for model, lines in pending.items():
            if not lines:
                continue
            path = log_path(self.state_dir, model)
            if path.exists() and path.stat().st_size > ROTATE_BYTES:
                path.replace(path.with_suffix(".log.1"))
            with path.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
