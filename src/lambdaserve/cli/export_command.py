"""``lambdaserve export cloudformation``: the project's AWS resources as a template.

What each model's stages serve (version, canary) comes from the local store, the function
and usage plan settings from the flags, as ``lambdaserve deploy`` takes them. Nothing talks
to AWS, so no credentials are needed: the account is left to CloudFormation
(``${AWS::AccountId}``) unless ``--account`` gives it. The template goes to stdout, or to
``-o PATH`` (JSON when PATH ends in ``.json``, else YAML); notes go to stderr.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from lambdaserve.cli.options import PROJECT_OPTION, STATE_OPTION
from lambdaserve.cli.output import handle_errors, out, print_json, progress, warn
from lambdaserve.cli.parsing import parse_count, parse_rate
from lambdaserve.cli.state import open_store, require_model, state_root
from lambdaserve.defaults import DEFAULT_LOG_RETENTION_DAYS, DEFAULT_TIMEOUT_S, OFF
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.deploy.names import Names
    from lambdaserve.deploy.plan import Reporter
    from lambdaserve.deploy.spec import AwsFunctionSettings, Desired, Release, UsagePlanSettings
    from lambdaserve.store import Alias, Store

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")

export_app = typer.Typer(
    help="Write the project's AWS resources, or a model's image build context, for other tools.\n\n"
    "Example:\n\n    lambdaserve export cloudformation -o template.yaml\n\n"
    "    lambdaserve export image news -o news-image",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@handle_errors
def cloudformation(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the template here (.json: JSON, else YAML) [default: stdout]."
    ),
    models: list[str] | None = typer.Option(
        None, "--model", "-m", help="A model to export; repeat for more [default: every model with a stage]."
    ),
    project: str | None = PROJECT_OPTION,
    region: str | None = typer.Option(
        None, "--region", help="The AWS region to deploy to [default: $AWS_REGION, $AWS_DEFAULT_REGION]."
    ),
    account: str | None = typer.Option(
        None, "--account", help="The 12-digit AWS account ID [default: left to CloudFormation]."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="yaml or json [default: from the -o suffix, else yaml]."
    ),
    memory: int | None = typer.Option(
        None,
        "--memory",
        help="Function memory in MB [default: per model, 1.5x what it used when packaged, at least 256].",
    ),
    timeout: int = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", help="Function timeout in s."),
    reserved: str | None = typer.Option(
        None,
        "--reserved-concurrency",
        help="Cap on each function's concurrent executions, or 'none' [default: 10].",
    ),
    provisioned: int | None = typer.Option(
        None, "--provisioned-concurrency", help="Environments kept initialised for each stage."
    ),
    keep_warm: bool = typer.Option(
        False, "--keep-warm", help="Invoke each stage every 5 minutes (EventBridge rule)."
    ),
    log_retention: int = typer.Option(
        DEFAULT_LOG_RETENTION_DAYS, "--log-retention", help="Days to keep logs."
    ),
    rate: str | None = typer.Option(
        None,
        "--rate",
        help="Usage plan: requests per second per key (with --burst), or 'none' [default: 10].",
    ),
    burst: int | None = typer.Option(
        None, "--burst", help="Usage plan: bucket size of the throttle [default: 10]."
    ),
    quota: str | None = typer.Option(None, "--quota", help="Usage plan: COUNT/DAY|WEEK|MONTH, e.g. 100/DAY."),
    arch: str = typer.Option("x86_64", "--arch", help="x86_64 or arm64 (Graviton)."),
    capture: str | None = typer.Option(
        None,
        "--capture",
        help="Record this share of each stage's requests in the functions' logs (10%, 0.1, or off): "
        "the stage variable lambdaserveCapture.",
    ),
    python: str | None = typer.Option(
        None, "--python", help="Run on a newer Python than each model's (no code pickled by value)."
    ),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = typer.Option(
        False,
        "--json",
        help='One JSON object: {"template": ...} on stdout, or {"written": PATH, ...} with -o.',
    ),
) -> None:
    """Write a CloudFormation template of the project: what `lambdaserve deploy` makes.

    Each model with a stage becomes a Lambda function (an image), a version per model version
    its stages serve, an alias per stage (a canary as alias weights), and resources of one
    REST API with an API key and a usage plan per stage; plus the S3 bucket and the ECR
    repository. Deploy it with StorageOnly=true first, upload the model files and push the
    images, then deploy with the ModelObjectVersion parameters (see docs/aws.md). Apply a
    new export after each promote or rollback.

    Example:

        lambdaserve export cloudformation -o template.yaml --region eu-west-1 --rate 10 --burst 10

        lambdaserve export cloudformation --model news --keep-warm --quota 100/DAY > news.yaml

        lambdaserve export cloudformation --capture 10% -o template.yaml
    """
    from lambdaserve.deploy.cloudformation import build_template, releases_needing_history
    from lambdaserve.deploy.cloudformation_syntax import dump_template
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.deploy.spec import (
        DEFAULT_BURST,
        DEFAULT_MEMORY_MB,
        DEFAULT_RATE,
        DEFAULT_RESERVED_CONCURRENCY,
        AwsFunctionSettings,
        UsagePlanSettings,
    )
    from lambdaserve.monitoring.capture import parse_rate as parse_capture
    from lambdaserve.store.records import check_limits, parse_quota

    fmt = _format(fmt, output)
    names = Names(project_name(project, state_root(state_dir)), _account(account), _region(region))
    quota_limit, quota_period = parse_quota(quota)
    capture_rate = parse_capture(capture) if capture is not None else None
    throttle = parse_rate(rate)
    if throttle == OFF:
        throttle, burst = None, None
    elif throttle is None and burst is None:
        throttle, burst = DEFAULT_RATE, DEFAULT_BURST
    elif throttle is not None and burst is None:
        burst = max(1, int(throttle))
    check_limits(throttle, burst, quota_limit, quota_period)
    reserved_count = parse_count(reserved, "--reserved-concurrency")
    function = AwsFunctionSettings(
        memory_mb=memory or DEFAULT_MEMORY_MB,
        timeout_s=timeout,
        reserved_concurrency=None
        if reserved_count == OFF
        else (reserved_count or DEFAULT_RESERVED_CONCURRENCY),
        provisioned_concurrency=provisioned,
        keep_warm=keep_warm,
        log_retention_days=log_retention,
        architecture=arch,
    )
    plan = UsagePlanSettings(throttle, burst, quota_limit, quota_period)
    with open_store(state_dir) as store, progress() as reporter:
        desired, configured = desired_stages(store, names, models or [], function, plan)
        desired = with_images(store, desired, memory_set=memory is not None, python=python, progress=reporter)
    if capture_rate:
        desired = [replace(d, capture=capture_rate) for d in desired]
    template = build_template(desired, configured=configured)
    text = dump_template(template, fmt)
    notes = []
    for model, versions in releases_needing_history(desired).items():
        served = ", ".join(map(str, versions))
        notes.append(
            f"The stages of {model} serve versions {served}. CloudFormation publishes Lambda versions "
            f"from the function's one configuration, that of version {configured[model]} here: apply "
            "this template to a stack that already has the others (from earlier exports); a new "
            "stack would publish every version with that model."
        )
        warn(notes[-1])
    if output is None:
        if as_json:
            print_json({"template": template, "warnings": notes})
        else:
            sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise LambdaserveError(f"Cannot write {output}: {exc.strerror}.", "Check the path.") from None
    if as_json:
        resources = len(template.get("Resources") or {})
        print_json({"written": str(output), "format": fmt, "resources": resources, "warnings": notes})
        return
    _show_next_steps(output, names, desired, configured)


export_app.command("cloudformation")(cloudformation)


def desired_stages(
    store: Store, names: Names, models: list[str], function: AwsFunctionSettings, plan: UsagePlanSettings
) -> tuple[list[Desired], dict[str, int]]:
    """Every stage of the models, and the version each model's function is configured with.

    That version is what the model's most recently changed stage brought in (its canary, if
    it has one): the one release a stack update can publish a Lambda version of.
    """
    from lambdaserve.deploy.spec import Desired

    aliases = store.aliases()
    for model in models:
        require_model(store, model)
        if not any(a.model == model for a in aliases):
            raise LambdaserveError(
                f"{model!r} has no stage yet, so there is nothing of it to deploy.",
                f"Promote a version first: lambdaserve promote {model} VERSION --stage test",
            )
    chosen = [a for a in aliases if not models or a.model in models]
    if not chosen:
        raise LambdaserveError(
            "No model has a stage yet, so there is nothing to deploy.",
            "Push and promote one first: lambdaserve models push MODEL_FILE --name NAME, "
            "then lambdaserve promote NAME 1 --stage test",
        )
    desired = []
    for alias in chosen:
        release = _release(store, alias.model, alias.version)
        desired.append(
            Desired(
                names=names,
                stage=alias.stage,
                release=release,
                function=function,
                plan=plan,
                canary=_release(store, alias.model, alias.canary_version) if alias.canary_version else None,
                canary_weight=alias.canary_weight,
                explain=release.has_proba,  # as deploy's default: /explain where LIME has probabilities
            )
        )
    latest: dict[str, Alias] = {}
    for alias in chosen:
        before = latest.get(alias.model)
        if before is None or alias.sequence > before.sequence:
            latest[alias.model] = alias
    return desired, {model: _newest(alias) for model, alias in sorted(latest.items())}


def with_images(
    store: Store, desired: list[Desired], *, memory_set: bool, python: str | None, progress: Reporter
) -> list[Desired]:
    """Each release with the image lambdaserve builds for it, and each function with its memory.

    The base is pinned as the last deploy or ``export image`` recorded it; nothing is pulled.
    """
    from lambdaserve.deploy.release_image import NoBuilders, built_image
    from lambdaserve.deploy.spec import recommended_memory

    images: dict[tuple[str, int], Any] = {}
    notes: list[str] = []
    done = []
    for d in desired:
        releases = []
        for release in d.releases():
            key = (release.model, release.version)
            if key not in images:
                images[key] = built_image(
                    store,
                    d.names,
                    release,
                    arch=d.function.architecture,
                    python=python,
                    function_tags={},
                    refresh_base=False,
                    builders=NoBuilders(),
                    notes=notes,
                    progress=progress,
                )
            releases.append(replace(release, image_uri=images[key].uri))
        function = d.function
        if not memory_set:
            function = replace(function, memory_mb=recommended_memory(d.release.measured_memory_mb))
        done.append(
            replace(
                d,
                release=releases[0],
                canary=releases[1] if len(releases) > 1 else None,
                function=function,
                build_tags=images[(d.release.model, d.release.version)].base.tags(),
            )
        )
    for note in dict.fromkeys(notes):
        warn(
            note.replace("nothing is pulled here", "export cloudformation pulls nothing") + " Run "
            "`lambdaserve export image MODEL` first to pin it."
        )
    return done


def _show_next_steps(output: Path, names: Names, desired: list[Desired], configured: dict[str, int]) -> None:
    from lambdaserve.deploy.cloudformation_syntax import logical_part

    releases = {(r.model, r.version): r for d in desired for r in d.releases()}
    current = [releases[(model, version)] for model, version in configured.items()]
    deploy = (
        f"aws cloudformation deploy --stack-name lambdaserve-{names.project} --template-file {output} "
        "--capabilities CAPABILITY_NAMED_IAM --parameter-overrides"
    )
    stages = ", ".join(sorted({d.stage for d in desired}))
    models = ", ".join(configured)
    out.print(
        "[green]✓[/] " + escape(f"Wrote {output}: project {names.project}, models {models}; stages {stages}.")
    )
    versions = " ".join(f"{logical_part(r.model)}ModelObjectVersion=VERSION_ID" for r in current)
    lines = [
        "Then, from a pipeline or by hand:",
        f"  {deploy} StorageOnly=true",
        "  Upload each model file to the stack's ModelBucket output, keeping the VersionId it answers:",
        *(
            f"    aws s3api put-object --bucket BUCKET --key {names.bundle_key(r.model, r.sha256, r.suffix)} "
            f"--body {r.file}"
            for r in current
        ),
        "  Build each function's image and push it to the ImageRepositoryUri output with this tag",
        "  (or pass an ImageUri parameter per model):",
        *(
            f"    {r.model}: {r.image_uri.rsplit(':', 1)[-1]}  (lambdaserve export image {r.model} "
            f"--version {r.version} -o {r.model}-image writes its build context)"
            for r in current
        ),
        # StorageOnly=false is needed: aws cloudformation deploy keeps a parameter's previous value.
        f"  {deploy} StorageOnly=false {versions}",
    ]
    out.print("\n".join(lines), markup=False)


def _newest(alias: Alias) -> int:
    return alias.canary_version if alias.canary_version is not None else alias.version


def _release(store: Store, model: str, version: int) -> Release:
    from lambdaserve.deploy.spec import Release

    record = store.version(model, version)
    return Release.from_version(record, store.model_path(record), store.root / "references")


def _region(region: str | None) -> str:
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise LambdaserveError(
            "No AWS region: the bucket's name and the endpoints' URLs carry it.",
            "Pass --region (e.g. --region eu-west-1), or set AWS_REGION.",
        )
    if not _REGION.fullmatch(region):
        raise LambdaserveError(f"{region!r} is not an AWS region.", "e.g. --region eu-west-1")
    return region


def _account(account: str | None) -> str:
    from lambdaserve.deploy.cloudformation_syntax import ACCOUNT_PLACEHOLDER

    if account is None:
        return ACCOUNT_PLACEHOLDER
    if not re.fullmatch(r"\d{12}", account):
        raise LambdaserveError(
            f"{account!r} is not an AWS account ID.", "Give its 12 digits, e.g. 123456789012."
        )
    return account


def _format(fmt: str | None, output: Path | None) -> str:
    from lambdaserve.deploy.cloudformation_syntax import FORMATS

    if fmt is None:
        return "json" if output is not None and output.suffix.lower() == ".json" else "yaml"
    if fmt not in FORMATS:
        raise LambdaserveError(f"Unknown --format {fmt!r}.", f"Use one of: {', '.join(FORMATS)}.")
    return fmt
