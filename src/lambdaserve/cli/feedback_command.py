"""``lambdaserve feedback``: ground truth for past requests, and the model's quality per version."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from lambdaserve.cli.captures import captured_records, check_window, nothing_captured
from lambdaserve.cli.options import (
    CAPTURED_STAGE_OPTION,
    CAPTURES_REMOTE_OPTION,
    JSON_OPTION,
    PROFILE_OPTION,
    PROJECT_OPTION,
    REGION_OPTION,
    STATE_OPTION,
    WINDOW_OPTION,
)
from lambdaserve.cli.output import handle_errors, out, print_json
from lambdaserve.cli.render import create_table, plural
from lambdaserve.cli.state import open_store, require_model


@handle_errors
def feedback(
    model: str = typer.Argument(..., help="The model's name."),
    file: Path | None = typer.Option(
        None,
        "--file",
        "-f",
        help='Labels to add: a CSV with request_id,label columns, or JSON Lines {"requestId", "label"}.',
    ),
    stage: str | None = CAPTURED_STAGE_OPTION,
    since: str = typer.Option("30d", "--since", help="Requests from how long ago: 12h, 7d, 30d."),
    window: str = WINDOW_OPTION,
    remote: bool = CAPTURES_REMOTE_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
    project: str | None = PROJECT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add the true labels of past requests, then score the model on them, per version.

    A label names its request by the x-amzn-RequestId its caller got back; it is joined to
    that request's captured prediction (capture must have been on for it: at 100% to score
    every request). Accuracy for labels, mean absolute error for numbers; per version side by
    side, so a canary is compared with the stable version on quality, not only on errors.

    Example:

        lambdaserve feedback news --file labels.csv

        lambdaserve feedback news --stage prod --since 7d --window hour --json
    """
    from lambdaserve.monitoring.drift import parse_age
    from lambdaserve.monitoring.quality import quality
    from lambdaserve.store.feedback import labels_of, read_label_file, record_labels

    check_window(window)
    cutoff = datetime.now(timezone.utc) - parse_age(since)
    with open_store(state_dir, create=file is not None) as store:
        require_model(store, model)
        added = record_labels(store, model, read_label_file(file)) if file is not None else 0
        labels = labels_of(store, model)
        records = captured_records(
            store, model, stage, cutoff, remote=remote, region=region, profile=profile, project=project
        )
    if not records:
        kept = f" (the labels given are kept for later: {plural(added, 'label')})" if added else ""
        raise nothing_captured(
            model, stage, since, remote, f"labels are scored against captured predictions{kept}"
        )
    report = {"model": model, "stage": stage, "added": added, **quality(records, labels, window)}
    if as_json:
        print_json(report)
        return
    _show(report)


def _show(report: dict[str, Any]) -> None:
    if report["added"]:
        out.print(f"[green]✓[/] Added {report['added']:,} labels.")
    metric = report["metric"]
    out.print(
        f"[bold]{escape(report['model'])}[/]: {report['matched']:,} of {report['labels']:,} labels matched a "
        f"captured request ({report['unmatched']:,} did not: not captured, or older than --since)"
    )
    if not report["versions"]:
        return
    table = create_table("version", "labelled", metric)
    for version, scored in report["versions"].items():
        table.add_row(version, f"{scored['labelled']:,}", _value(metric, scored["value"]))
    out.print(table)
    windows = create_table("window", "version", "labelled", metric)
    for row in report["windows"]:
        windows.add_row(row["start"], row["version"], f"{row['labelled']:,}", _value(metric, row["value"]))
    out.print(windows)


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if metric == "accuracy" else f"{value:.4g}"
