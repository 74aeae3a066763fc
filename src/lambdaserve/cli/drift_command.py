"""``lambdaserve drift``: captured requests against the training data's reference, per window.

Local captures come from the state directory (``monitoring.capture.read_records``), remote ones
from the deployed function's CloudWatch Logs (``remote_records``); the comparison is
``monitoring.model_drift``, the same the console's admin API answers with.
"""

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
from lambdaserve.cli.output import err, handle_errors, out, print_json
from lambdaserve.cli.state import open_store, require_model

SHOWN_FEATURES = 5
_STYLES = {"shift": "bold red", "moderate": "yellow", "stable": "green", "no data": "dim"}


@handle_errors
def drift(
    model: str = typer.Argument(..., help="The model's name."),
    stage: str | None = CAPTURED_STAGE_OPTION,
    since: str = typer.Option("7d", "--since", help="From how long ago: 30m, 12h, 7d."),
    window: str = WINDOW_OPTION,
    remote: bool = CAPTURES_REMOTE_OPTION,
    region: str | None = REGION_OPTION,
    profile: str | None = PROFILE_OPTION,
    project: str | None = PROJECT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare captured requests with the model's training data: the Population Stability Index
    of each feature and of the predicted classes, per window.

    PSI below 0.1 reads stable, 0.1 to 0.25 moderate, above 0.25 a shift. The reference is the
    statistics `package --reference` put in the bundle; without one, each window is compared
    with the first. Requests are captured with `serve --capture 10%` or
    `lambdaserve capture set MODEL --stage S 10%`.

    Example:

        lambdaserve drift news --stage prod --since 7d

        lambdaserve drift iris --window hour --since 12h --json

        lambdaserve drift news --stage prod --remote
    """
    from lambdaserve.monitoring.drift import parse_age
    from lambdaserve.monitoring.model_drift import model_drift

    check_window(window)
    cutoff = datetime.now(timezone.utc) - parse_age(since)
    with open_store(state_dir) as store:
        require_model(store, model)
        records = captured_records(
            store, model, stage, cutoff, remote=remote, region=region, profile=profile, project=project
        )
        if not records:
            needs = (
                "drift compares what the model is asked with what it learned, so it needs captured requests"
            )
            raise nothing_captured(model, stage, since, remote, needs)
        source = "aws" if remote else "local"
        report = model_drift(store, model, records, stage=stage, since=cutoff, window=window, source=source)
    if as_json:
        print_json(report)
        return
    show(report)


def show(report: dict[str, Any]) -> None:
    from rich.table import Table

    reference = report["reference"]
    if reference is not None:
        basis = f"the reference of version {reference['version']} ({reference['n_rows']:,} rows)"
    else:
        basis = "the first window (no reference in the bundle)"
    stage = f", stage {report['stage']}" if report["stage"] else ""
    out.print(
        f"[bold]{escape(report['model'])}[/]{escape(stage)}: {report['records']:,} captured requests "
        f"since {report['since']}, per {report['window']}, compared with {escape(basis)}."
    )
    for note in report["notes"]:
        err.print(f"[dim]{escape(note)}[/]")
    for window in report["windows"]:
        out.print()
        if window.get("baseline"):
            out.print(f"[bold]{window['label']}[/]  {window['instances']:,} instances: the baseline")
            continue
        predictions = window["predictions"]
        headline = f"[bold]{window['label']}[/]  {window['instances']:,} instances"
        if predictions is not None:
            psi, reading = predictions["psi"], predictions["reading"]
            headline += f" · predicted classes PSI {psi:.3f} {_reading(reading)}"
        counts = window.get("readings", {})
        if counts:
            headline += f" · features: {counts['shift']} shift, {counts['moderate']} moderate"
        out.print(headline)
        table = Table(box=None, pad_edge=False)
        for column in ("feature", "PSI", "reading", "p-value", "n"):
            table.add_column(column, justify="right" if column in ("PSI", "p-value", "n") else "left")
        for feature in window["features"][:SHOWN_FEATURES]:
            p = feature["p_value"]
            table.add_row(
                escape(feature["name"]),
                f"{feature['psi']:.3f}",
                _reading(feature["reading"]),
                "-" if p is None else f"{p:.2g}",
                f"{feature['n']:,}",
            )
        out.print(table)


def _reading(text: str) -> str:
    return f"[{_STYLES.get(text, '')}]{text}[/]"
