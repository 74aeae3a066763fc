"""``lambdaserve models``, ``promote``, ``rollback`` and ``logs``: versions, stages, log lines.

These commands write the store directly, so they work whether or not a server runs; a
running server notices their commits (``PRAGMA data_version``). As with Lambda's
PublishVersion and UpdateAlias, publishing a version never moves a stage: traffic moves
only with ``promote`` and ``rollback``. Commands that only read refuse to create a state
directory where there is none, so a typo in ``--state-dir`` is an error, not empty output.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import typer
from rich.table import Table
from rich.text import Text

from lambdaserve.bundle.manifest import read_manifest
from lambdaserve.bundle.package import NO_SAMPLE, check_model
from lambdaserve.cli.bundle_commands import ENV_OPTION, JSON_OPTION, REQUIREMENT_OPTION, TRUST_OPTION
from lambdaserve.cli.output import err, handle_errors, out, parse_json_option, print_json, progress, warn
from lambdaserve.cli.render import size_text
from lambdaserve.cli.serve_command import STATE_OPTION
from lambdaserve.errors import LambdaserveError
from lambdaserve.execution.target import check_name
from lambdaserve.gateway.logbook import log_path
from lambdaserve.store import Alias, Store, default_state_dir
from lambdaserve.store.store import check_stage

STAGE_OPTION = typer.Option(..., "--stage", help="The stage: the first segment of /STAGE/MODEL/predict.")
POLL_SECONDS = 0.2
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def state_root(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).resolve()


@contextmanager
def open_store(state_dir: Path | None, *, create: bool = False) -> Iterator[Store]:
    """The store, closed afterwards; without ``create``, an error where there is none."""
    root = state_root(state_dir)
    if not create and not (root / "state.db").is_file():
        raise LambdaserveError(
            f"No lambdaserve state in {root}.",
            "Run this where you ran lambdaserve serve, or pass --state-dir (or set LAMBDASERVE_HOME).",
        )
    store = Store(root)
    try:
        yield store
    finally:
        store.close()


def require_model(store: Store, name: str) -> None:
    known = store.models()
    if name not in known:
        raise LambdaserveError(
            f"No model {name!r} in {store.root}.",
            f"Models here: {', '.join(known)}."
            if known
            else f"Push one first: lambdaserve models push MODEL_FILE --name {name}",
        )


def create_table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None)
    for column in columns:
        table.add_column(column)
    return table


def describe_alias(alias: Alias | None) -> str:
    if alias is None:
        return "nothing"
    if alias.canary_version is None:
        return f"version {alias.version}"
    return f"version {alias.version}, canary version {alias.canary_version} at {alias.canary_weight:g}%"


# -- models ----------------------------------------------------------------------------
@handle_errors
def push(
    source: Path = typer.Argument(..., help="A model file (.pkl .pickle .joblib .skops .onnx) or a bundle."),
    name: str = typer.Option(..., "--name", "-n", help="Model name, as in /STAGE/NAME/predict."),
    sample: str | None = typer.Option(
        None,
        "--sample",
        "-s",
        help="JSON instances to smoke-test predict with, e.g. '[[5.1, 3.5, 1.4, 0.2]]'.",
    ),
    trust: bool = TRUST_OPTION,
    env: str = ENV_OPTION,
    requirement: list[str] | None = REQUIREMENT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Publish a model file or a bundle as the model's next version. No stage moves.

    A model file is checked first, as `lambdaserve package` does; a bundle is used as it
    was packaged. As Lambda's PublishVersion, content equal to the latest version's
    publishes nothing. Send traffic to a version with `lambdaserve promote`.

    Example:

        lambdaserve models push iris.pickle --name iris --sample '[[5.1, 3.5, 1.4, 0.2]]'

        lambdaserve promote iris 1 --stage prod
    """
    check_name(name)
    if source.is_dir():
        if sample is not None or trust or requirement or env != "auto":
            warn("--sample, --trust, -r and --env apply to model files; a bundle is used as packaged.")
        bundled = read_manifest(source)
        manifest, model_file = bundled.to_dict(), source / bundled.model_file
    elif source.is_file():
        with progress() as reporter:
            checked = check_model(
                source,
                name=name,
                sample=parse_json_option(sample, "--sample") if sample is not None else NO_SAMPLE,
                trust=trust,
                requirements=requirement or [],
                env_mode=env,
                progress=reporter,
            )
        manifest, model_file = checked.to_dict(), source
    else:
        raise LambdaserveError(
            f"{source} is not a model file or a bundle.",
            "Give a model file such as model.pickle, or a directory made by lambdaserve package.",
        )
    with open_store(state_dir, create=True) as store:
        record, created = store.add_version(name, manifest, model_file)
    if as_json:
        print_json({**record.to_dict(), "unchanged": not created})
    elif not created:
        out.print(f"unchanged: still version {record.version} of {name} (same content as the latest)")
    else:
        size = size_text(int(manifest.get("size") or 0))
        out.print(
            f"[green]✓[/] Published [bold]{name}[/] version [bold]{record.version}[/] "
            f"({record.format}, {size}, sha256 {record.sha256[:12]}…). No stage moved; to serve it:"
        )
        out.print(f"  lambdaserve promote {name} {record.version} --stage STAGE")


@handle_errors
def list_models(state_dir: Path | None = STATE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the models: how many versions each has, and what each stage serves.

    Example:

        lambdaserve models list
    """
    with open_store(state_dir) as store:
        numbers = {name: [v.version for v in store.versions(name)] for name in store.models()}
        stages = {name: store.aliases(name) for name in numbers}
    if as_json:
        print_json({"models": [_model_summary(n, v, stages[n]) for n, v in numbers.items()]})
        return
    if not numbers:
        out.print("No models yet. Push one: lambdaserve models push MODEL_FILE --name NAME")
        return
    table = create_table("model", "versions", "latest", "stages")
    for name, versions in numbers.items():
        served = " · ".join(f"{a.stage} → {describe_alias(a)}" for a in stages[name])
        table.add_row(name, str(len(versions)), str(max(versions)), served or "[dim]none yet[/]")
    out.print(table)


def _model_summary(name: str, versions: list[int], stages: list[Alias]) -> dict[str, Any]:
    return {
        "name": name,
        "versions": len(versions),
        "latest": max(versions),
        "stages": [a.to_dict() for a in stages],
    }


@handle_errors
def show_model(
    name: str = typer.Argument(..., help="The model's name."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a model's versions and what each of its stages serves.

    Example:

        lambdaserve models show iris
    """
    with open_store(state_dir) as store:
        require_model(store, name)
        versions = store.versions(name)
        aliases = store.aliases(name)
    if as_json:
        stages_json = [a.to_dict() for a in aliases]
        print_json({"name": name, "versions": [v.to_dict() for v in versions], "stages": stages_json})
        return
    table = create_table("version", "sha256", "size", "format", "created", title=f"{name}: versions")
    for v in versions:
        size = v.manifest.get("size")
        table.add_row(
            str(v.version), f"{v.sha256[:12]}…", size_text(size) if size else "?", v.format, v.created
        )
    out.print(table)
    stages = create_table("stage", "version", "canary", "updated", title=f"{name}: stages")
    for a in aliases:
        canary = f"version {a.canary_version} at {a.canary_weight:g}%" if a.canary_version else "—"
        stages.add_row(a.stage, str(a.version), canary, a.updated)
    out.print()
    out.print(
        stages if aliases else f"No stage serves {name} yet: lambdaserve promote {name} VERSION --stage STAGE"
    )


# -- stages ----------------------------------------------------------------------------
@handle_errors
def promote(
    model: str = typer.Argument(..., help="The model's name."),
    version: int = typer.Argument(..., help="The version to send traffic to."),
    stage: str = STAGE_OPTION,
    canary: float | None = typer.Option(
        None, "--canary", help="Send only this percentage of the stage's requests to VERSION (a canary)."
    ),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Point a stage at a version, or let a canary version take a share of its requests.

    Without --canary, the stage serves VERSION alone (any canary ends). With --canary
    PERCENT, the stage keeps its version and sends PERCENT% of requests to VERSION, as an
    API Gateway canary release does; promote VERSION without --canary to finish the
    release. `lambdaserve rollback` undoes the last change.

    Example:

        lambdaserve promote iris 2 --stage prod --canary 10

        lambdaserve promote iris 2 --stage prod
    """
    check_stage(stage)
    if canary is not None and not 0 < canary < 100:
        raise LambdaserveError(
            f"--canary {canary:g} is not a percentage between 0 and 100 (both excluded).",
            "e.g. --canary 10 sends 10% of requests to VERSION; to send them all, leave out --canary.",
        )
    with open_store(state_dir) as store:
        require_model(store, model)
        store.version(model, version)  # an unknown version is an error that lists the known ones
        before = store.alias(model, stage)
        if canary is None:
            wanted: tuple[int, int | None, float] = (version, None, 0.0)
        elif before is None:
            raise LambdaserveError(
                f"Stage {stage!r} of {model!r} does not exist yet: a canary shares a stage's traffic.",
                f"Promote a version first: lambdaserve promote {model} VERSION --stage {stage}",
            )
        elif before.version == version:
            raise LambdaserveError(
                f"Stage {stage!r} of {model!r} already serves version {version}: a canary is another one.",
                f"Push a new version (lambdaserve models push FILE --name {model}) and canary that.",
            )
        else:
            wanted = (before.version, version, canary)
        # Promoting what the stage already serves writes nothing, so rollback still undoes a real change.
        changed = before is None or (before.version, before.canary_version, before.canary_weight) != wanted
        after = store.set_alias(model, stage, *wanted) if changed else before
    _show_stage_change(model, stage, before, after, changed, as_json)


@handle_errors
def rollback(
    model: str = typer.Argument(..., help="The model's name."),
    stage: str = STAGE_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Undo a stage's last change (a promote or a canary); repeat to go further back.

    Example:

        lambdaserve rollback iris --stage prod
    """
    check_stage(stage)
    with open_store(state_dir) as store:
        require_model(store, model)
        before = store.alias(model, stage)
        after = store.rollback(model, stage)
    _show_stage_change(model, stage, before, after, True, as_json)


def _show_stage_change(
    model: str, stage: str, before: Alias | None, after: Alias | None, changed: bool, as_json: bool
) -> None:
    if as_json:
        states = {"before": before.to_dict() if before else None, "after": after.to_dict() if after else None}
        print_json({"model": model, "stage": stage, **states, "changed": changed})
    elif not changed:
        out.print(f"unchanged: stage {stage} of {model} already serves {describe_alias(after)}")
    elif after is None:
        out.print(f"{model} {stage}: {describe_alias(before)} → nothing (the stage no longer exists)")
    else:
        out.print(f"{model} {stage}: {describe_alias(before)} → [bold]{describe_alias(after)}[/]")


# -- logs ------------------------------------------------------------------------------
@handle_errors
def logs(
    model: str = typer.Argument(..., help="The model's (or handler function's) name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until Ctrl-C."),
    lines: int | None = typer.Option(
        None, "--lines", "-n", min=0, help="Show the last N lines [default: 50; with --since, all]."
    ),
    since: str | None = typer.Option(None, "--since", help="Only lines from the last 30s, 10m, 2h or 1d."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", hidden=True),  # for tests
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a model's log lines: START / END / REPORT, the handler's lines, INIT output.

    A running server appends them to STATE/logs/MODEL.log about once a second. With
    --json, each line is a JSON object {"timestamp", "line"}.

    Example:

        lambdaserve logs iris --since 10m

        lambdaserve logs iris --follow
    """
    cutoff = _parse_since(since) if since is not None else None
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


def _parse_since(text: str) -> str:
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise LambdaserveError(f"--since {text!r} is not a duration.", "e.g. --since 30s, 10m, 2h or 1d.")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    # The log book's own format, so that stamps compare as strings.
    return cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
