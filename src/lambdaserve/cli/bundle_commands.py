"""``lambdaserve package`` and ``lambdaserve inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lambdaserve.cli import render
from lambdaserve.cli.options import (
    ENV_OPTION,
    JSON_OPTION,
    REFERENCE_OPTION,
    REQUIREMENT_OPTION,
    TRUST_OPTION,
)
from lambdaserve.cli.output import handle_errors, out, parse_json_option, print_json, progress


@handle_errors
def package(
    model: Path = typer.Argument(..., help="The model file: .pkl .pickle .joblib .skops .onnx"),
    sample: str | None = typer.Option(
        None, "--sample", "-s", help="JSON instances to smoke-test predict with, e.g. '[\"some text\"]'."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Bundle directory [default: bundles/NAME]."
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="Model name [default: from the file name]."),
    trust: bool = TRUST_OPTION,
    requirement: list[str] | None = REQUIREMENT_OPTION,
    env: str = ENV_OPTION,
    reference: Path | None = REFERENCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a model file and write a bundle: the file, its pinned requirements and a sample.

    The file is scanned without being loaded, then loaded in a fresh process with the
    library versions it was made with, and `predict` is tried on the sample.

    Example:

        lambdaserve package model.pickle --sample '["the space shuttle launch"]' -o bundles/news

        lambdaserve package iris.pickle --sample '[[5.1, 3.5, 1.4, 0.2]]' --reference train.csv
    """
    from lambdaserve.functions.package import NO_SAMPLE, package_model

    sample_value = parse_json_option(sample, "--sample") if sample is not None else NO_SAMPLE
    with progress() as reporter:
        manifest, location = package_model(
            model,
            output=output,
            name=name,
            sample=sample_value,
            trust=trust,
            requirements=requirement or [],
            env_mode=env,
            progress=reporter,
            reference=reference,
        )
    if as_json:
        print_json({"bundle": str(location), "manifest": manifest.to_dict()})
        return
    render.show_manifest(manifest, str(location))
    if sample is None:
        out.print("[yellow]No --sample given: the model was loaded but predict was not tried.[/]")
    out.print(f"\n[green]✓[/] Bundle written to [bold]{location}[/]. Try it:")
    out.print(f"  lambdaserve invoke {location} --data '{_example(manifest.sample_input)}'")


@handle_errors
def inspect(
    path: Path = typer.Argument(..., help="A model file or a bundle directory."),
    requirement: list[str] | None = REQUIREMENT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show what a model file imports, what in it is risky, and the requirements it pins.

    Nothing is loaded: the file is read as data. For a bundle, shows its manifest.

    Example:

        lambdaserve inspect model.pickle
    """
    from lambdaserve.bundle.inspection import inspect_model
    from lambdaserve.bundle.manifest import is_bundle, read_manifest

    if is_bundle(path) or path.is_dir():
        manifest = read_manifest(path)
        if as_json:
            print_json({"bundle": str(path), "manifest": manifest.to_dict()})
        else:
            render.show_manifest(manifest, str(path))
        return
    report = inspect_model(path, requirement or [])
    if as_json:
        print_json(report.to_dict())
    else:
        render.show_report(report)


def _example(sample: object) -> str:
    return json.dumps(sample) if sample is not None else '["..."]'
