"""``lambdaserve logs``: a model's log stream, as CloudWatch Logs shows a function's.

Reads ``<state>/logs/<model>.log`` (and ``.log.1`` after a rotation); ``--follow``
behaves as ``tail -F``: it survives rotation and truncation and waits for a file that
does not exist yet.
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import typer
from rich.text import Text

from lambdaserve.cli.options import JSON_OPTION, PROJECT_OPTION, REGION_OPTION, STATE_OPTION
from lambdaserve.cli.output import err, handle_errors, out, print_json
from lambdaserve.cli.state import open_store, state_root
from lambdaserve.errors import LambdaserveError

POLL_SECONDS = 0.2
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@handle_errors
def logs(
    model: str = typer.Argument(..., help="The model's (or handler function's) name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until Ctrl-C."),
    lines: int | None = typer.Option(
        None, "--lines", "-n", min=0, help="Show the last N lines [default: 50; with --since, all]."
    ),
    since: str | None = typer.Option(None, "--since", help="Only lines from the last 30s, 10m, 2h or 1d."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", hidden=True),  # for tests
    remote: bool = typer.Option(False, "--remote", help="Read the function's CloudWatch Logs on AWS."),
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a model's log lines: START / END / REPORT, the handler's lines, INIT output.

    A running server appends them to STATE/logs/MODEL.log about once a second. With
    --json, each line is a JSON object {"timestamp", "line"}.

    Example:

        lambdaserve logs iris --since 10m

        lambdaserve logs iris --follow

        lambdaserve logs iris --remote --since 1h
    """
    from lambdaserve.functions.logbook import log_path

    cutoff = _parse_since(since) if since is not None else None
    if remote:
        deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        _remote_logs(
            model, cutoff or _parse_since("1h"), follow, deadline, region, project, state_dir, as_json
        )
        return
    count = lines if lines is not None else (None if since else 50)
    path = log_path(state_root(state_dir), model)
    handle = _open(path)
    if handle is None and not follow:
        raise _nothing_logged(model, path)
    if handle is None:
        err.print(f"{_nothing_logged(model, path).message} Waiting for lines…")
    try:
        if handle is not None:
            _print_recent(handle, path, count, cutoff, as_json)
        if follow:
            deadline = time.monotonic() + max_seconds if max_seconds is not None else None
            _follow(path, handle, as_json, deadline)
    finally:
        if handle is not None:
            handle.close()


def _print_recent(handle: BinaryIO, path: Path, count: int | None, cutoff: str | None, as_json: bool) -> None:
    data = handle.read()
    end = data.rfind(b"\n") + 1
    handle.seek(end)  # a half-written last line is printed once it is complete
    raw = data[:end].split(b"\n")[:-1]
    older = path.with_name(path.name + ".1")
    if (count is None or len(raw) < count) and older.is_file():
        raw = older.read_bytes().split(b"\n")[:-1] + raw  # just rotated: its lines are recent too
    for stamp, line in _select([_parse(r) for r in raw], count, cutoff):
        _emit(stamp, line, as_json)


def _remote_logs(
    model: str,
    cutoff: str,
    follow: bool,
    deadline: float | None,
    region: str | None,
    project: str | None,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """CloudWatch Logs of the model's function, from ``cutoff`` (default: the last hour)."""
    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.deployer import connect
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.deploy.remote import remote_logs

    with open_store(state_dir) as store:
        name = project_name(project, store.root)
        aws = connect(store, name, region, None, AWS)
    since_ms = int(datetime.fromisoformat(cutoff.replace("Z", "+00:00")).timestamp() * 1000)
    events = remote_logs(
        aws,
        Names(name, aws.account(), aws.region),
        model,
        since_ms,
        follow,
        until=lambda: deadline is not None and time.monotonic() > deadline,
    )
    for event in events:
        stamp = datetime.fromtimestamp(event["timestamp"] / 1000, timezone.utc)
        text = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = event["message"].rstrip("\n")
        if as_json:
            print_json({"timestamp": text, "line": line})
        else:
            out.print(Text(f"{text} {line}"))


def _parse_since(text: str) -> str:
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise LambdaserveError(f"--since {text!r} is not a duration.", "e.g. --since 30s, 10m, 2h or 1d.")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    # The log book's own format, so that stamps compare as strings.
    return cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_since_ms(text: str) -> int:
    """``--since 7d`` as CloudWatch's start time: milliseconds since the epoch."""
    cutoff = _parse_since(text)
    return int(datetime.fromisoformat(cutoff.replace("Z", "+00:00")).timestamp() * 1000)


def _parse(raw: bytes) -> tuple[str | None, str]:
    text = raw.decode("utf-8", errors="replace")
    stamp, tab, line = text.partition("\t")
    return (stamp, line) if tab and _STAMP.fullmatch(stamp) else (None, text)


def _select(
    entries: list[tuple[str | None, str]], count: int | None, cutoff: str | None
) -> list[tuple[str | None, str]]:
    if cutoff is not None:
        kept, keep = [], False
        for stamp, line in entries:
            keep = stamp >= cutoff if stamp is not None else keep  # a line without a stamp goes with its own
            if keep:
                kept.append((stamp, line))
        entries = kept
    return entries if count is None else entries[max(0, len(entries) - count) :]


def _emit(stamp: str | None, line: str, as_json: bool) -> None:
    if as_json:
        print_json({"timestamp": stamp, "line": line})
    elif out.is_terminal:
        out.print(Text.assemble((f"{stamp} " if stamp else "", "dim"), line))
    else:
        # Written as they are: Lambda's REPORT lines are tab-separated, and rich would expand the tabs.
        sys.stdout.write(f"{stamp} {line}\n" if stamp else f"{line}\n")
        sys.stdout.flush()


def _open(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _nothing_logged(model: str, path: Path) -> LambdaserveError:
    others = sorted(p.name.removesuffix(".log") for p in path.parent.glob("*.log"))
    return LambdaserveError(
        f"Nothing logged yet for {model} (no {path}).",
        "Is the server running (lambdaserve serve), and has it received requests for this model?"
        + (f" Logs exist for: {', '.join(others)}." if others else ""),
    )


def _follow(path: Path, handle: BinaryIO | None, as_json: bool, deadline: float | None) -> None:
    """Print lines as they are appended, across rotation (to .log.1) and truncation, as ``tail -F``."""
    pending = b""
    try:
        while deadline is None or time.monotonic() < deadline:
            if handle is None:
                handle = _open(path)
                pending = b""
            if handle is not None:
                if os.fstat(handle.fileno()).st_size < handle.tell():  # truncated: start again
                    handle.seek(0)
                    pending = b""
                pending = _emit_complete(pending + handle.read(), as_json)
                if _is_replaced(path, handle):
                    # Rotated or removed: finish the old file (nothing is written to it after the
                    # rename), then read the new one from its start.
                    pending = _emit_complete(pending + handle.read(), as_json)
                    if pending:
                        _emit(*_parse(pending), as_json)
                    handle.close()
                    handle = None
                    continue
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends
    finally:
        if handle is not None:
            handle.close()


def _emit_complete(data: bytes, as_json: bool) -> bytes:
    *complete, rest = data.split(b"\n")
    for raw in complete:
        _emit(*_parse(raw), as_json)
    return rest


def _is_replaced(path: Path, handle: BinaryIO) -> bool:
    try:
        current = path.stat()
    except FileNotFoundError:
        return True
    opened = os.fstat(handle.fileno())
    return (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev)
