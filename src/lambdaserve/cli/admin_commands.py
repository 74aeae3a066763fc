"""``lambdaserve models``, ``promote``, ``rollback`` and ``logs``: versions, stages, log lines.

These commands write the store directly, so they work whether or not a server runs; a
running server notices their commits (``PRAGMA data_version``). As with Lambda's
PublishVersion and UpdateAlias, publishing a version never moves a stage: traffic moves
only with ``promote`` and ``rollback``. Commands that only read refuse to create a state
directory where there is none, so a typo in ``--state-dir`` is an error, not empty output.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lambdaserve.cli.options import (
    ENV_OPTION,
    JSON_OPTION,
    PROJECT_OPTION,
    REFERENCE_OPTION,
    REGION_OPTION,
    REMOTE_OPTION,
    REQUIREMENT_OPTION,
    STAGE_OPTION,
    STATE_OPTION,
    TRUST_OPTION,
)
from lambdaserve.cli.output import handle_errors, out, parse_json_option, print_json, progress, warn
from lambdaserve.cli.render import create_table, size_text
from lambdaserve.cli.state import open_store, require_model
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.store import Alias


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
    reference: Path | None = REFERENCE_OPTION,
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
    from lambdaserve.bundle.manifest import read_manifest
    from lambdaserve.functions.package import NO_SAMPLE, check_model
    from lambdaserve.functions.target import check_name

    check_name(name)
    if source.is_dir():
        if sample is not None or trust or requirement or env != "auto" or reference is not None:
            warn(
                "--sample, --trust, -r, --env and --reference apply to model files; a bundle is used "
                "as packaged (package it with --reference)."
            )
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
                reference=reference,
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
    remote: bool = REMOTE_OPTION,
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Point a stage at a version, or let a canary version take a share of its requests.

    Without --canary, the stage serves VERSION alone (any canary ends). With --canary
    PERCENT, the stage keeps its version and sends PERCENT% of requests to VERSION, as an
    API Gateway canary release does; promote VERSION without --canary to finish the
    release. `lambdaserve rollback` undoes the last change. With --remote, the same on
    AWS: the stage's Lambda alias moves (weights for a canary); the local stage does not.

    Example:

        lambdaserve promote iris 2 --stage prod --canary 10

        lambdaserve promote iris 2 --stage prod --remote
    """
    from lambdaserve.store.records import check_stage

    check_stage(stage)
    if canary is not None and not 0 < canary < 100:
        raise LambdaserveError(
            f"--canary {canary:g} is not a percentage between 0 and 100 (both excluded).",
            "e.g. --canary 10 sends 10% of requests to VERSION; to send them all, leave out --canary.",
        )
    if remote:
        from lambdaserve.cli.deploy_commands import promote_remote

        promote_remote(model, version, stage, canary, region, project, state_dir, as_json)
        return
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
    remote: bool = REMOTE_OPTION,
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Undo a stage's last change (a promote or a canary); repeat to go further back.

    With --remote, on AWS: the stage goes back to what it served before its last deploy.

    Example:

        lambdaserve rollback iris --stage prod

        lambdaserve rollback iris --stage prod --remote
    """
    from lambdaserve.store.records import check_stage

    check_stage(stage)
    if remote:
        from lambdaserve.cli.deploy_commands import rollback_remote

        rollback_remote(model, stage, region, project, state_dir, as_json)
        return
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
