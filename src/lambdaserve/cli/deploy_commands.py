"""``lambdaserve deploy``, ``destroy`` and ``status``: the project on AWS.

Thin: parse flags, call deploy/, print. ``AWS_ENDPOINT_URL`` (boto3's own setting)
points every AWS call elsewhere, as the tests do at moto's server.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from lambdaserve.cli.options import (
    DRY_RUN_OPTION,
    JSON_OPTION,
    PROFILE_OPTION,
    PROJECT_OPTION,
    REGION_OPTION,
    STATE_OPTION,
)
from lambdaserve.cli.output import handle_errors, out, print_json, progress
from lambdaserve.cli.parsing import parse_count, parse_rate
from lambdaserve.cli.state import open_store
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.deploy.deployer import DeployOptions, DeployResult


@handle_errors
def deploy_command(
    model: str = typer.Argument(..., help="The model's name, as pushed with `lambdaserve models push`."),
    stage: str = typer.Option(
        ..., "--stage", help="The stage (its own REST API and the Lambda alias), e.g. test."
    ),
    version: int | None = typer.Option(None, "--version", help="The model version [default: the latest]."),
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    memory: int | None = typer.Option(
        None,
        "--memory",
        help="Function memory in MB [default for a new function: 1.5x what the model used when packaged, "
        "at least 256; else as deployed].",
    ),
    timeout: int | None = typer.Option(
        None, "--timeout", help="Function timeout in s [default: 10, or as deployed]."
    ),
    reserved: str | None = typer.Option(
        None,
        "--reserved-concurrency",
        help="Cap on the function's concurrent executions, or 'none' [default for a new function: 10].",
    ),
    provisioned: str | None = typer.Option(
        None, "--provisioned-concurrency", help="Environments kept initialised for the stage, or 'none'."
    ),
    keep_warm: bool | None = typer.Option(
        None, "--keep-warm/--no-keep-warm", help="Invoke the stage every 5 minutes (EventBridge rule)."
    ),
    explain: bool | None = typer.Option(
        None,
        "--explain/--no-explain",
        help="The /explain route (LIME) [default: on where the model has predict_proba].",
    ),
    access_logs: bool | None = typer.Option(
        None,
        "--access-logs/--no-access-logs",
        help="API Gateway's access log of the stage, in CloudWatch Logs.",
    ),
    log_retention: int | None = typer.Option(
        None, "--log-retention", help="Days to keep logs [default: 30]."
    ),
    rate: str | None = typer.Option(
        None,
        "--rate",
        help="Usage plan: requests per second per key (with --burst), or 'none' "
        "[default for a new stage: 10].",
    ),
    burst: int | None = typer.Option(
        None, "--burst", help="Usage plan: bucket size of the throttle [default for a new stage: 10]."
    ),
    quota: str | None = typer.Option(
        None, "--quota", help="Usage plan: COUNT/DAY|WEEK|MONTH (e.g. 100/DAY), or 'none'."
    ),
    capture: str | None = typer.Option(
        None,
        "--capture",
        help="Record this share of the stage's requests in the function's log stream (10%, 0.1), or "
        "off: the stage variable lambdaserveCapture, a stage update [default: as deployed].",
    ),
    arch: str | None = typer.Option(
        None,
        "--arch",
        help="x86_64 or arm64 (Graviton, about 20% cheaper) [default: x86_64, or as deployed].",
    ),
    python: str | None = typer.Option(
        None, "--python", help="Run on a newer Python than the model's, e.g. 3.12 (no code pickled by value)."
    ),
    refresh_base: bool = typer.Option(
        False, "--refresh-base", help="Rebuild on the current base image and CPython patch release."
    ),
    image_uri: str | None = typer.Option(
        None, "--image-uri", help="Use this pushed image; build nothing. Kept by later deploys."
    ),
    build: bool = typer.Option(
        False, "--build", help="Go back to lambdaserve's image after an --image-uri of yours."
    ),
    builder: str | None = typer.Option(
        None, "--builder", help="docker, podman or buildah [default: the first found]."
    ),
    dry_run: bool = DRY_RUN_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Deploy a model's stage to AWS: S3, ECR image, Lambda, the stage's REST API, API key, usage plan.

    Idempotent: a second run with nothing changed makes no call that writes. A new model
    version uploads the model to S3, publishes a Lambda version and moves the stage's alias;
    the image is rebuilt only when its lock or base changes. Flags you leave out keep what is
    deployed; a new stage and function get safe defaults (a throttle of 10 requests/s per
    key, reserved concurrency 10, memory from what the model used). The API key's value is
    printed once, when it is made (later: lambdaserve keys show --remote STAGE).

    Example:

        lambdaserve deploy news --stage test --region eu-west-1 --dry-run

        lambdaserve deploy news --stage test --region eu-west-1 --rate 10 --burst 20 --quota 1000/DAY

        lambdaserve deploy news --stage prod --arch arm64 --refresh-base

        lambdaserve deploy news --stage prod --capture 10%
    """
    from lambdaserve.deploy.deployer import DeployOptions
    from lambdaserve.monitoring.capture import parse_rate as parse_capture

    options = DeployOptions(
        model=model,
        stage=stage,
        version=version,
        project=project,
        region=region,
        profile=profile,
        image_uri=image_uri,
        build=build,
        builder=builder,
        python=python,
        arch=arch,
        refresh_base=refresh_base,
        memory_mb=memory,
        timeout_s=timeout,
        reserved_concurrency=parse_count(reserved, "--reserved-concurrency"),
        provisioned_concurrency=parse_count(provisioned, "--provisioned-concurrency"),
        keep_warm=keep_warm,
        explain=explain,
        access_logs=access_logs,
        log_retention_days=log_retention,
        rate=parse_rate(rate),
        burst=burst,
        quota=quota,
        capture=parse_capture(capture) if capture is not None else None,
        dry_run=dry_run,
    )
    run_deploy(options, state_dir, as_json)


def run_deploy(options: DeployOptions, state_dir: Path | None, as_json: bool) -> DeployResult:
    """Deploy and print the outcome: shared by deploy, promote --remote and rollback --remote."""
    from lambdaserve.deploy.deployer import deploy

    with open_store(state_dir) as store, progress() as reporter:
        result = deploy(store, options, reporter)
    show_result(result, options.dry_run, as_json)
    return result


def promote_remote(
    model: str,
    version: int,
    stage: str,
    canary: float | None,
    region: str | None,
    project: str | None,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    from lambdaserve.deploy.deployer import DeployOptions
    from lambdaserve.deploy.remote import promote_options

    with open_store(state_dir) as store:
        store.version(model, version)  # an unknown version is an error that lists the known ones
        options = promote_options(
            store, DeployOptions(model, stage, project=project, region=region), version, canary
        )
    run_deploy(options, state_dir, as_json)


def rollback_remote(
    model: str, stage: str, region: str | None, project: str | None, state_dir: Path | None, as_json: bool
) -> None:
    from lambdaserve.deploy.deployer import DeployOptions
    from lambdaserve.deploy.remote import rollback_options

    with open_store(state_dir) as store:
        options = rollback_options(store, DeployOptions(model, stage, project=project, region=region))
    run_deploy(options, state_dir, as_json)


def show_result(result: DeployResult, dry_run: bool, as_json: bool) -> None:
    from lambdaserve.deploy.plan import describe_step

    desired = result.desired
    where = f"{desired.model} {desired.stage} in {desired.names.region} (project {desired.names.project})"
    if as_json:
        print_json(
            {
                "project": desired.names.project,
                "region": desired.names.region,
                "model": desired.model,
                "stage": desired.stage,
                "version": desired.release.version,
                "image": desired.image_uri,
                "base": result.base.tags() if result.base else None,
                "architecture": desired.function.architecture,
                "dry_run": dry_run,
                "changed": result.changed,
                "plan": result.plan.describe(),
                "notes": result.plan.notes,
                "url": result.url,
                "api_key": result.api_key,
                "api_key_id": result.api_key_id,
                "lambda_version": result.lambda_version,
            }
        )
        return
    if dry_run:
        if not result.changed:
            out.print(f"Nothing to change for {where}.")
        else:
            out.print(f"Plan for {where}: {len(result.plan.steps)} steps, none done yet:")
            for number, step in enumerate(result.plan.steps, 1):
                out.print(f"  {number:>2}. {escape(describe_step(step))}")
        for note in result.plan.notes:
            out.print(f"  [dim]{escape(note)}[/]")
        return
    if not result.changed:
        out.print(f"[green]✓[/] Up to date: {where}; nothing changed.")
    else:
        out.print(
            f"[green]✓[/] Deployed {where}: version {desired.release.version} "
            f"(Lambda version {result.lambda_version})."
        )
    for note in result.plan.notes:
        if "moves from the project's one REST API" in note:
            out.print(f"  [yellow]{escape(note)}[/]")
    if result.url:
        out.print(f"  URL:  {result.url}")
        if result.api_key:
            out.print(f"  key:  {result.api_key}  (shown once: keep it)")
            key = result.api_key
        else:
            out.print(f"  key:  the stage's key: lambdaserve keys show --remote {desired.stage}")
            key = "$KEY"
        sample = json.dumps(
            desired.release.sample_input if desired.release.sample_input is not None else ["some text"]
        )
        out.print(
            f'  curl -X POST {result.url} -H "x-api-key: {key}" '
            f"-H 'content-type: application/json' -d {shlex.quote(sample)}"
        )


@handle_errors
def destroy_command(
    model: str | None = typer.Argument(None, help="The model to remove; leave out with --all."),
    all_models: bool = typer.Option(False, "--all", help="Remove everything of the project."),
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove what deploy made on AWS, found by its lambdaserve tags: nothing is left behind.

    One model: its function, role, logs, keep-warm rules, routes and S3 bundles; the
    project's shared resources too when it was the last model. --all: the whole project
    (REST API, usage plans, API keys, ECR repository, bucket with every object version).
    Models in the local store are kept.

    Example:

        lambdaserve destroy news --dry-run

        lambdaserve destroy --all --yes
    """
    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.deployer import connect
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.deploy.plan import describe_step, execute
    from lambdaserve.deploy.teardown import find_resources, plan_teardown
    from lambdaserve.store.records import Deployment

    if (model is None) == (not all_models):
        raise LambdaserveError("Name one model to destroy, or pass --all.", "e.g. lambdaserve destroy news")
    with open_store(state_dir) as store:
        name = project_name(project, store.root)
        aws = connect(store, name, region, profile, AWS)
        names = Names(name, aws.account(), aws.region)
        with progress() as reporter:
            reporter.step(f"Finding what {name} has in {aws.region} (by its tags)")
            found = find_resources(aws, names, model)
            plan = plan_teardown(aws, names, found, model)
        what = f"{model} of project {name}" if model else f"project {name}"
        if as_json and (dry_run or not plan.steps):
            print_json({"project": name, "region": aws.region, "plan": plan.describe(), "dry_run": dry_run})
            return
        if not plan.steps:
            out.print(f"Nothing of {what} is on AWS in {aws.region}.")
            return
        if dry_run or not as_json:
            out.print(f"To remove {what} in {aws.region}:")
            for number, step in enumerate(plan.steps, 1):
                out.print(f"  {number:>2}. {escape(describe_step(step))}")
        if dry_run:
            return
        if not yes and not typer.confirm("Remove all of this?", default=False, err=True):
            raise typer.Exit(1)
        with progress() as reporter:
            execute(plan, aws, reporter)
        store.record_deployment(
            Deployment(
                project=name,
                region=aws.region,
                account=names.account,
                model=model or "*",
                stage="*",
                version=0,
                status="destroyed",
            )
        )
    if as_json:
        print_json({"project": name, "region": aws.region, "removed": plan.describe()})
    else:
        out.print(f"[green]✓[/] Removed {what} from {aws.region}.")


@handle_errors
def status_command(
    remote: bool = typer.Option(False, "--remote", help="Ask AWS what runs, instead of the local record."),
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """What is deployed where: stages, versions, URLs, image digests.

    Without --remote: the local stages and the last deploy of each stage to AWS, as
    recorded here. With --remote: what AWS runs now, read from Lambda and API Gateway.

    Example:

        lambdaserve status

        lambdaserve status --remote
    """
    from rich.table import Table

    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.names import project_name
    from lambdaserve.deploy.remote import last_deploys, remote_status

    with open_store(state_dir) as store:
        if remote:
            data = remote_status(store, project, region, profile, AWS)
            if as_json:
                print_json(data)
            else:
                _print_remote(data)
            return
        local = [a.to_dict() for a in store.aliases()]
        name = project_name(project, store.root)
        latest = last_deploys(store, name)
    if as_json:
        print_json({"project": name, "local": local, "aws": [d.to_dict() for d in latest.values()]})
        return
    table = Table("model", "stage", "version", "canary", title="Local stages", title_justify="left")
    for a in local:
        canary = f"v{a['canary_version']} at {a['canary_weight']:g}%" if a["canary_version"] else ""
        table.add_row(a["model"], a["stage"], str(a["version"]), canary)
    out.print(table if local else "No local stage yet.")
    if not latest:
        out.print(
            f"Nothing of project {name} deployed to AWS from here (lambdaserve deploy MODEL --stage STAGE)."
        )
        return
    aws = Table(
        "model",
        "stage",
        "version",
        "region",
        "deployed",
        "base image",
        "URL",
        title=f"On AWS (project {name}, as last deployed from here)",
        title_justify="left",
    )
    for d in latest.values():
        version = f"{d.version}" + (
            f" + v{d.canary_version} at {d.canary_weight:g}%" if d.canary_version else ""
        )
        aws.add_row(d.model, d.stage, version, d.region, d.at, _base_text(d.base), d.url or "")
    out.print(aws)


def _base_text(recorded: str | None) -> str:
    """The recorded base, short: ``provided:al2023@sha256:0123456789ab``, or ``yours`` (--image-uri)."""
    from lambdaserve.deploy.base import TAG_BASE

    if not recorded:
        return "yours (--image-uri)"
    reference = json.loads(recorded).get(TAG_BASE, "")
    image, _, digest = reference.rpartition("/")[2].partition("@")
    return f"{image}@{digest[:19]}" if digest else image


def _print_remote(data: dict[str, Any]) -> None:
    from rich.table import Table

    apis = ", ".join(f"{stage} {api}" for stage, api in data["apis"].items()) or "-"
    out.print(
        f"Project {data['project']} in {data['region']} (account {data['account']}), "
        f"REST APIs by stage: {apis}"
    )
    if data["legacy_api"]:
        out.print(
            f"  [yellow]The old one-API layout ({data['legacy_api']}) still serves some stages: "
            "deploy each of them once to move it to an API of its own.[/]"
        )
    if not data["models"]:
        out.print("Nothing deployed.")
        return
    for model in data["models"]:
        table = Table(
            "stage",
            "version",
            "Lambda version",
            "canary",
            "URL",
            title=f"{model['model']}  ({model['function']}, {model['memory_mb']} MB, {model['timeout_s']} s, "
            f"{model['architecture']})",
            title_justify="left",
        )
        for stage in model["stages"]:
            canary = ", ".join(f"v{c['version']} at {c['weight']:g}%" for c in stage["canary"])
            table.add_row(
                stage["stage"], str(stage["version"]), stage["lambda_version"], canary, stage["url"] or ""
            )
        out.print(table)
        out.print(f"  image {model['image']}  digest {model['image_digest']}")
        if model["base"]:
            age = model["base_age_days"]
            built = f", built {model['base_created'][:10]} ({age} days ago)" if age is not None else ""
            python = f", CPython {model['python_build']}" if model["python_build"] else ""
            stale = (
                "  [yellow]rebuild with deploy --refresh-base for its security fixes[/]"
                if (age or 0) > 30
                else ""
            )
            out.print(f"  base  {model['base']}{built}{python}{stale}")
            if model["base_why"]:
                out.print(f"  why   {model['base_why']}")
        else:
            out.print("  base  not lambdaserve's image (--image-uri): its base is yours to patch")
