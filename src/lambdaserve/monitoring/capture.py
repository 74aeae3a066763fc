"""Capture records, kept and read: the local capture files and CloudWatch Logs.

The handler prints a record per sampled request (``runtime/capture.py`` has the format). On
AWS it stays in the function's log stream; locally the gateway's log book sends those lines
here instead of the model's log: ``<state>/capture/<model>.jsonl``, one record per line,
appended by the server's housekeeping flush. A file that would grow past the cap (50 MB by
default) is renamed ``.jsonl.1``, dropping the one before, so a model keeps at most about
twice the cap, and the oldest records go first.

Readers: ``read_records`` (local, oldest first, ``.jsonl.1`` then ``.jsonl``, damaged lines
skipped) and ``remote_records`` (CloudWatch Logs' ``filter_log_events``, paginated and bounded).
``parse_rate`` is the one place a rate is read from a person ("10%", "0.1", "off").

Standard library only, and nothing else of lambdaserve but its errors: the drift statistics
and the log book build on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lambdaserve.errors import LambdaserveError

CAPTURE_BYTES = 50 * 1024 * 1024  # per model, before the file rotates
FILTER_PATTERN = "{ $.lambdaserveCapture = 1 }"
MAX_REMOTE_RECORDS = 100_000  # remote_records stops after this many
MAX_REMOTE_PAGES = 1_000
_PREFIXES = ('{"lambdaserveCapture": 1,', '{"lambdaserveCapture":1,')
_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")
_RATE_HOW = "Give a percentage (10%), a fraction from 0 to 1 (0.1), or off."


def capture_path(state_dir: Path, model: str) -> Path:
    """Where the local gateway keeps ``model``'s records (the rotated file is this + ``.1``)."""
    return state_dir / "capture" / f"{_SAFE.sub('_', model)}.jsonl"


def is_capture_line(line: str) -> bool:
    """Whether a log line is a capture record (the handler writes the marker first)."""
    return line.startswith(_PREFIXES)


def parse_rate(text: str) -> float:
    """A capture rate as a fraction from 0 to 1: "10%" -> 0.1, "0.1" -> 0.1, "off" -> 0.0."""
    cleaned = str(text).strip().lower()
    if cleaned in ("off", "none", "0", "0%"):
        return 0.0
    percent = cleaned.endswith("%")
    try:
        value = float(cleaned[:-1].strip() if percent else cleaned)
    except ValueError:
        raise LambdaserveError(f"{text!r} is not a capture rate.", _RATE_HOW) from None
    rate = value / 100 if percent else value
    if not 0.0 <= rate <= 1.0:
        if not percent and 1.0 < value <= 100.0:
            raise LambdaserveError(
                f"{text!r} is not a capture rate: a plain number is a fraction from 0 to 1.",
                f"For {value:g} percent, write {value:g}%.",
            )
        raise LambdaserveError(f"{text!r} is not a capture rate from 0% to 100%.", _RATE_HOW)
    return rate


def format_rate(rate: float) -> str:
    """A rate as a person reads it: 0.1 -> "10%", 0 -> "off"."""
    return "off" if rate <= 0 else f"{rate * 100:g}%"


def append_records(state_dir: Path, model: str, lines: list[str], cap: int = CAPTURE_BYTES) -> None:
    """Append records to ``model``'s capture file, rotating it first when they would take it past ``cap``."""
    if not lines:
        return
    path = capture_path(state_dir, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    size = path.stat().st_size if path.exists() else 0
    if size and size + len(data) > cap:
        path.replace(path.with_name(path.name + ".1"))  # the older .1 is dropped
    with path.open("ab") as f:
        f.write(data)


def read_records(
    state_dir: Path, model: str, *, since: datetime | None = None, stage: str | None = None
) -> Iterator[dict[str, Any]]:
    """``model``'s local records, oldest first: ``.jsonl.1``, then ``.jsonl``; damaged lines skipped.

    ``since`` keeps records from that time on (a naive datetime is UTC); ``stage`` those of one stage.
    """
    path = capture_path(state_dir, model)
    for part in (path.with_name(path.name + ".1"), path):
        try:
            handle = part.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            yield from _selected((raw.decode("utf-8", "replace") for raw in handle), since, stage)


def remote_records(
    aws_logs_client: Any,
    log_group: str,
    *,
    since: datetime,
    stage: str | None = None,
    limit: int = MAX_REMOTE_RECORDS,
) -> Iterator[dict[str, Any]]:
    """Records from a function's CloudWatch Logs, from ``since``, in the order Logs returns them.

    One ``filter_log_events`` call per page with the filter pattern ``{ $.lambdaserveCapture = 1 }``
    (Logs does the selecting: only records are transferred), at most ``limit`` records and
    ``MAX_REMOTE_PAGES`` pages.
    """
    params: dict[str, Any] = {
        "logGroupName": log_group,
        "startTime": int(_utc(since).timestamp() * 1000),
        "filterPattern": FILTER_PATTERN,
    }
    found = 0
    for _ in range(MAX_REMOTE_PAGES):
        page = aws_logs_client.filter_log_events(**params)
        for record in _selected((e.get("message", "") for e in page.get("events", [])), since, stage):
            yield record
            found += 1
            if found >= limit:
                return
        token = page.get("nextToken")
        if not token or token == params.get("nextToken"):
            return
        params["nextToken"] = token


def _selected(lines: Iterable[str], since: datetime | None, stage: str | None) -> Iterator[dict[str, Any]]:
    cutoff = _utc(since) if since is not None else None
    for line in lines:
        record = _record(line)
        if record is None:
            continue
        if stage is not None and record.get("stage") != stage:
            continue
        if cutoff is not None:
            at = _time_of(record)
            if at is None or at < cutoff:
                continue
        yield record


def _record(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not is_capture_line(text):
        return None
    try:
        record = json.loads(text)
    except ValueError:  # cut short (a crash mid-write) or damaged
        return None
    return record if isinstance(record, dict) and record.get("lambdaserveCapture") == 1 else None


def _time_of(record: dict[str, Any]) -> datetime | None:
    stamp = record.get("time")
    if not isinstance(stamp, str):
        return None
    try:
        return _utc(datetime.fromisoformat(stamp.replace("Z", "+00:00")))
    except ValueError:
        return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
