"""``lambdaserve capture``: prediction capture, a sampled record of what a model was asked and answered.

``set`` changes a local stage's rate (a running server follows within a second or two);
``pull`` writes the records as JSON lines, from the local capture file or, with ``--remote``,
from the deployed function's CloudWatch Logs; ``show`` prints the latest as a table. The
record format and the readers are ``runtime/capture.py`` and ``monitoring/capture.py``.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from lambdaserve.cli.log_command import parse_since_ms
from lambdaserve.cli.options import JSON_OPTION, PROFILE_OPTION, PROJECT_OPTION, REGION_OPTION, STATE_OPTION
from lambdaserve.cli.output import err, handle_errors, out, print_json
from lambdaserve.cli.state import open_store, require_model, state_root
from lambdaserve.errors import LambdaserveError

STAGE_FILTER_OPTION = typer.Option(None, "--stage", help="Only the records of this stage.")
SINCE_OPTION = typer.Option("7d", "--since", help="Records from the last 30m, 2h, 7d, ...")
REMOTE_OPTION = typer.Option(
    False, "--remote", help="Read the deployed function's CloudWatch Logs instead of the local file."
)

capture_app = typer.Typer(
    help="Prediction capture: a sampled record of what a model was asked and answered, per stage.\n\n"
    "Example:\n\n    lambdaserve capture set news 10% --stage test\n\n"
    "    lambdaserve capture pull news --since 1d -o news.jsonl\n\n"
    "    lambdaserve capture show news",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@capture_app.command("set")
@handle_errors
def set_rate(
    model: str = typer.Argument(..., help="The model's name."),
    rate: str = typer.Argument(..., help="10% (or 0.1) of requests; off (or 0) to stop."),
    stage: str = typer.Option(..., "--stage", help="The local stage, e.g. test."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Capture a share of a local stage's requests; a running server follows within a second or two.

    Records go to STATE/capture/MODEL.jsonl (at most about 100 MB per model: 50 MB, and the
    file before it). On AWS, use lambdaserve deploy MODEL --stage STAGE --capture 10% instead.

    Example:

        lambdaserve capture set news 10% --stage test

        lambdaserve capture set news off --stage test
    """
    from lambdaserve.monitoring.capture import capture_path, format_rate, parse_rate
    from lambdaserve.store.captures import set_capture_rate

    fraction = parse_rate(rate)
    with open_store(state_dir) as store:
        require_model(store, model)
        stages = [a.stage for a in store.aliases(model)]
        if stage not in stages:
            raise LambdaserveError(
                f"Model {model!r} has no stage {stage!r} here.",
                f"Its stages: {', '.join(stages)}."
                if stages
                else f"Serve it first: lambdaserve promote {model} VERSION --stage {stage}",
            )
        set_capture_rate(store, model, stage, fraction)
    if as_json:
        print_json({"model": model, "stage": stage, "rate": fraction})
        return
    where = capture_path(state_root(state_dir), model)
    if fraction:
        out.print(
            f"[green]✓[/] {model} on {stage}: capturing {format_rate(fraction)} of requests, in {where}"
        )
    else:
        out.print(f"[green]✓[/] {model} on {stage}: capture off")


@capture_app.command("pull")
@handle_errors
def pull(
    model: str = typer.Argument(..., help="The model's name."),
    stage: str | None = STAGE_FILTER_OPTION,
    since: str = SINCE_OPTION,
    remote: bool = REMOTE_OPTION,
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the records here (JSON lines) [default: stdout]."
    ),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a model's capture records as JSON lines, oldest first.

    Locally from STATE/capture/MODEL.jsonl; with --remote from the deployed function's
    CloudWatch Logs (the records are in its log stream). With -o, prints a count (or, with
    --json, {"records", "written", "source"}); without, the records themselves.

    Example:

        lambdaserve capture pull news --since 1d -o news.jsonl

        lambdaserve capture pull news --stage prod --remote --since 7d -o prod.jsonl
    """
    records = _records(model, stage, since, remote, region, project, profile, state_dir)
    if output is None:
        count = 0
        for record in records:
            sys.stdout.write(json.dumps(record) + "\n")
            count += 1
        sys.stdout.flush()
        if count == 0:
            err.print(_nothing(model, stage, since, remote))
        return
    count = 0
    try:
        with output.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
                count += 1
    except OSError as exc:
        raise LambdaserveError(f"Cannot write {output}: {exc.strerror}.", "Check the path.") from None
    source = "cloudwatch" if remote else "local"
    if as_json:
        print_json({"records": count, "written": str(output), "source": source})
    else:
        out.print(f"[green]✓[/] {count} record(s) of {model} written to {output}")
        if count == 0:
            err.print(_nothing(model, stage, since, remote))


@capture_app.command("show")
@handle_errors
def show(
    model: str = typer.Argument(..., help="The model's name."),
    stage: str | None = STAGE_FILTER_OPTION,
    lines: int = typer.Option(20, "--lines", "-n", min=1, max=1000, help="How many of the latest records."),
    since: str = SINCE_OPTION,
    remote: bool = REMOTE_OPTION,
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a model's latest capture records as a table, and each local stage's rate.

    Example:

        lambdaserve capture show news

        lambdaserve capture show news --stage prod -n 50
    """
    from rich.table import Table

    from lambdaserve.monitoring.capture import format_rate
    from lambdaserve.store.captures import capture_rates

    latest = collections.deque(
        _records(model, stage, since, remote, region, project, profile, state_dir), maxlen=lines
    )
    rates: dict[str, float] = {}
    if not remote:
        with open_store(state_dir) as store:
            rates = {s: r for (_, s), r in capture_rates(store, model).items()}
    if as_json:
        print_json({"model": model, "rates": rates, "records": list(latest)})
        return
    if not remote:
        on = ", ".join(f"{s} {format_rate(r)}" for s, r in sorted(rates.items())) or "off on every stage"
        out.print(f"Capture of {model} here: {on}")
    if not latest:
        err.print(_nothing(model, stage, since, remote))
        return
    table = Table("time", "stage", "version", "route", "ms", "instances", "predictions")
    for record in latest:
        table.add_row(
            str(record.get("time", "")),
            str(record.get("stage") or "-"),
            str(record.get("version", "")),
            str(record.get("route", "")),
            f"{record.get('latencyMs', 0):.1f}" if isinstance(record.get("latencyMs"), int | float) else "",
            _short(record.get("instances")),
            _short(record.get("predictions")),
        )
    out.print(table)


def _records(
    model: str,
    stage: str | None,
    since: str,
    remote: bool,
    region: str | None,
    project: str | None,
    profile: str | None,
    state_dir: Path | None,
) -> Iterator[dict[str, Any]]:
    from lambdaserve.monitoring.capture import read_records

    cutoff = datetime.fromtimestamp(parse_since_ms(since) / 1000, timezone.utc)
    if not remote:
        with open_store(state_dir) as store:
            require_model(store, model)
        return read_records(state_root(state_dir), model, since=cutoff, stage=stage)
    return _remote(model, stage, cutoff, region, project, profile, state_dir)


def _remote(
    model: str,
    stage: str | None,
    cutoff: datetime,
    region: str | None,
    project: str | None,
    profile: str | None,
    state_dir: Path | None,
) -> Iterator[dict[str, Any]]:
    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.deployer import connect
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.monitoring.capture import remote_records

    with open_store(state_dir) as store:
        name = project_name(project, store.root)
        aws = connect(store, name, region, profile, AWS)
    group = Names(name, aws.account(), aws.region).log_group(model)
    if aws.find("logs", "describe_log_streams", logGroupName=group, limit=1) is None:
        raise LambdaserveError(
            f"There is no log group {group} in {aws.region}.",
            f"Deploy the model first (lambdaserve deploy {model} --stage STAGE --capture 10%), then call it.",
        )
    try:
        yield from remote_records(aws.client("logs"), group, since=cutoff, stage=stage)
    except Exception as exc:  # botocore's errors, made readable
        raise aws.explain(exc, "logs", "filter_log_events") from None


def _nothing(model: str, stage: str | None, since: str, remote: bool) -> str:
    where = f" on {stage}" if stage else ""
    how = (
        f"turn it on with lambdaserve deploy {model} --stage {stage or 'STAGE'} --capture 10%"
        if remote
        else f"turn it on with lambdaserve capture set {model} 10% --stage {stage or 'STAGE'}"
    )
    return f"No capture records of {model}{where} in the last {since}: {how}, then send requests."


def _short(value: Any, width: int = 48) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"
