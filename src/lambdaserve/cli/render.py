"""Rich renderings of model reports and bundle manifests, shared by several commands."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from lambdaserve.cli.output import out

if TYPE_CHECKING:
    # Only their types: the inspection (importlib.metadata, the pickle scanner) is heavy, and
    # rich.table (5 ms) is imported when a command prints a table.
    from rich.table import Table

    from lambdaserve.bundle.inspection import ModelReport
    from lambdaserve.bundle.manifest import Manifest

_SOURCES = {
    "file": "recorded in the file",
    "installed": "installed here",
    "user": "--requirement",
    "unknown": "unknown: pin it",
}


def size_text(size: int) -> str:
    """A file's size in decimal units (1 MB = 1,000,000 bytes), as file managers, browsers and
    pip show it, so that one file reads the same everywhere."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def plural(count: int, noun: str) -> str:
    """``1 name``, ``2 names``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def show_report(report: ModelReport) -> None:
    compression = f" ({report.compression}-compressed)" if report.compression else ""
    out.print(
        f"[bold]{report.path.name}[/]  {report.format}{compression} · {size_text(report.size)} · "
        f"sha256 {report.sha256[:16]}… · Python {report.python}"
    )
    _show_imports(report.imports)
    if report.dangerous:
        out.print("\n[bold red]Dangerous[/] (refused unless you pass --trust):")
        for finding in report.dangerous:
            out.print(f"  [red]✗[/] {finding.what}: {finding.reason}")
    elif report.format in ("pickle", "joblib"):
        out.print("\n[green]✓[/] Nothing dangerous is imported or called while loading.")
    if report.untrusted_types:
        out.print("\n[bold red]Types skops does not trust by default[/] (refused unless --trust):")
        for name in report.untrusted_types:
            out.print(f"  [red]✗[/] {name}")
    show_by_value(report.by_value_classes, report.by_value_functions, report.by_value_imports)
    show_pins([p.to_dict() for p in report.pins])
    for warning in report.warnings:
        out.print(f"[yellow]Warning:[/] {warning}")


def show_by_value(classes: list[str], functions: list[str], imports: list[str]) -> None:
    if not (classes or functions):
        return
    parts = [f"class {c}" for c in classes] + [f"function {f}" for f in functions]
    out.print(
        f"\n[bold yellow]Code pickled by value:[/] {', '.join(parts)}.\n"
        "  This code comes from the file, not from an installed library. It runs whenever the "
        "model predicts, with the rights of the process that serves it. Serve such files only "
        "if you trust whoever made them." + (f"\n  It imports: {', '.join(imports)}." if imports else "")
    )


def _show_imports(imports: list[str]) -> None:
    if not imports:
        return
    by_module: dict[str, list[str]] = {}
    for dotted in imports:
        top = dotted.split(".", 1)[0]
        by_module.setdefault(top, []).append(dotted.rsplit(".", 1)[-1])
    out.print(f"\n[bold]Imports[/] ({plural(len(imports), 'name')} from {plural(len(by_module), 'module')}):")
    for module, names in by_module.items():
        shown = ", ".join(names[:8]) + (f", … (+{len(names) - 8})" if len(names) > 8 else "")
        out.print(f"  [cyan]{module}[/]: {shown}")


def show_pins(pins: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="Pinned requirements", title_justify="left", title_style="bold", box=None)
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("from", style="dim")
    for pin in pins:
        table.add_row(pin["name"], pin["version"] or "[red]?[/]", _SOURCES.get(pin["source"], pin["source"]))
    out.print()
    out.print(table)


def show_manifest(manifest: Manifest, location: str) -> None:
    out.print(
        f"[bold]Bundle {manifest.name}[/] at {location}\n"
        f"  model: {manifest.model_file} ({manifest.format}, {size_text(manifest.size)}, "
        f"sha256 {manifest.sha256[:16]}…)\n"
        f"  Python {manifest.python} · made {manifest.created} by lambdaserve {manifest.lambdaserve_version}"
    )
    routes = "predict, predict_proba, explain" if manifest.has_proba else "predict, explain"
    out.print(f"  routes: {routes}")
    found = manifest.probabilities or {}
    if found.get("found"):
        verdict = (
            "checked on the sample: its argmax, decoded, is predict's answer"
            if found.get("checked")
            else "[yellow]not used[/]: not checked (give --sample) or its argmax disagrees with predict"
        )
        out.print(f"  probabilities: {escape(str(found['found']))}, {verdict}")
    elif not manifest.has_proba:
        out.print("  probabilities: none (/explain uses one-hot predictions)")
    if manifest.reference:
        out.print(
            f"  reference: statistics of {manifest.reference.get('n_rows', '?')} training rows (for /explain)"
        )
    if manifest.feature_names:
        out.print(f"  features ({len(manifest.feature_names)}): {', '.join(manifest.feature_names)}")
    elif manifest.n_features:
        out.print(f"  features: {manifest.n_features} numbers per instance")
    if manifest.classes:
        shown = ", ".join(manifest.classes[:6]) + (" …" if len(manifest.classes) > 6 else "")
        out.print(f"  classes ({len(manifest.classes)}): {shown}")
    if manifest.sample_input is not None:
        out.print(f"  sample: {_short(manifest.sample_input)} -> {_short(manifest.sample_output)}")
    scan = manifest.scan
    if scan.get("dangerous"):
        out.print(f"  [red]trusted despite:[/] {', '.join(d['what'] for d in scan['dangerous'])}")
    by_value = scan.get("by_value") or {}
    show_by_value(by_value.get("classes", []), by_value.get("functions", []), by_value.get("imports", []))
    show_pins(manifest.pins)
    for warning in manifest.warnings:
        out.print(f"[yellow]Warning:[/] {warning}")


def _short(value: Any, limit: int = 90) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def create_table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=None)
    for column in columns:
        table.add_column(column)
    return table
