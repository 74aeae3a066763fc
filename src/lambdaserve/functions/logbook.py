"""Each model's log stream, as CloudWatch Logs keeps a function's: START / END / REPORT
lines, the handler's own lines, INIT output.

Lines are buffered in memory and appended to ``<state>/logs/<model>.log`` by the
server's housekeeping task (``flush``), each prefixed with its UTC timestamp and a tab.
A file over 20 MB is rotated once (``.log.1``). The last lines of each model are also
kept in memory for the admin API and the console.

Capture records (``monitoring/capture.py``) are not log lines here: they go, unstamped, to
``<state>/capture/<model>.jsonl`` in the same flush, bounded by ``capture_bytes`` per model.
On AWS they stay in the function's log stream.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from lambdaserve.functions.log_lines import Report, end_line, start_line
from lambdaserve.monitoring.capture import CAPTURE_BYTES, append_records, is_capture_line

ROTATE_BYTES = 20 * 1024 * 1024
_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def log_path(state_dir: Path, model: str) -> Path:
    return state_dir / "logs" / f"{_SAFE.sub('_', model)}.log"


class LogSink(Protocol):
    """Where a function writes its log stream."""

    def write(self, model: str, lines: Iterable[str]) -> None: ...


class CollectedLines:
    """A log stream kept in memory, unstamped, for one command's output (``invoke``, ``package``)."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def write(self, model: str, lines: Iterable[str]) -> None:
        self._lines.extend(lines)

    def take(self) -> list[str]:
        """The lines written since the last call, in order."""
        lines, self._lines = self._lines, []
        return lines


class LogBook:
    def __init__(self, state_dir: Path, keep: int = 500, capture_bytes: int = CAPTURE_BYTES) -> None:
        self.state_dir = state_dir
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.capture_bytes = capture_bytes
        self._pending: dict[str, list[str]] = collections.defaultdict(list)
        self._recent: dict[str, collections.deque[str]] = {}
        self._captured: dict[str, list[str]] = collections.defaultdict(list)
        self._captured_bytes: dict[str, int] = collections.defaultdict(int)

    def write(self, model: str, lines: Iterable[str]) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stamped = []
        for line in lines:
            if is_capture_line(line):
                self._capture(model, line)
            else:
                stamped.append(f"{stamp}\t{line}")
        self._pending[model].extend(stamped)
        self._recent.setdefault(model, collections.deque(maxlen=self.keep)).extend(stamped)

    def _capture(self, model: str, line: str) -> None:
        # Held until the next flush, never more than one file's worth: past that, the oldest
        # would be rotated away anyway, so the newest is dropped rather than memory grown.
        if self._captured_bytes[model] + len(line) < self.capture_bytes:
            self._captured[model].append(line)
            self._captured_bytes[model] += len(line) + 1

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
        captured, self._captured = self._captured, collections.defaultdict(list)
        self._captured_bytes.clear()
        for model, records in captured.items():
            append_records(self.state_dir, model, records, self.capture_bytes)


def frame_invocations(
    ids: list[str],
    lines: list[str],
    version: str,
    duration_ms: float,
    memory_size_mb: int,
    memory_used_mb: int,
    cold: tuple[str, float] | None,
    status: str | None,
    error_type: str | None,
) -> list[tuple[list[str], Report]]:
    """START / handler lines / END / REPORT for each request of one message to an environment,
    with each request's REPORT.

    The handler's lines go to the request they name (lambdaserve's handler logs each
    request id), the rest to the first; the cold start (INIT, or a forked environment's
    restore) is reported on the first request, the one that waited for it.
    """
    own: dict[str, list[str]] = {i: [] for i in ids}
    for line in lines:
        own[next((i for i in ids if i in line), ids[0])].append(line)
    framed: list[tuple[list[str], Report]] = []
    for n, request_id in enumerate(ids):
        kind, cold_ms = cold if cold and n == 0 else ("", None)
        report = Report(
            request_id,
            duration_ms,
            memory_size_mb,
            memory_used_mb,
            init_duration_ms=cold_ms if kind == "Init" else None,
            restore_duration_ms=cold_ms if kind == "Restore" else None,
            status=status,
            error_type=error_type,
        )
        lines = [start_line(request_id, version), *own[request_id], end_line(request_id), report.line()]
        framed.append((lines, report))
    return framed
