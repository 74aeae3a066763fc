"""``lambdaserve deploy``: the local store + flags -> desired state -> plan -> AWS.

Order of work: resolve the project, region and account; build the desired state of the
model's stage from the store; read what AWS has; fill the flags the user left out from
what is deployed (so a rerun without flags changes nothing); plan; print the plan or run
it; record the outcome in the store, failures included.

Flags left out keep the deployed value (or the default for a new stage): memory,
timeout, reserved and provisioned concurrency, keep-warm, log retention, and the usage
plan's rate, burst and quota.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.current import Current, read_current
from lambdaserve.deploy.image import ImageContext, detect_builder, image_tag
from lambdaserve.deploy.names import Names, check_api_stage, project_name
from lambdaserve.deploy.plan import Plan, PushImage, Reporter, execute
from lambdaserve.deploy.planner import plan_deploy
from lambdaserve.deploy.registry import ImagePublisher
from lambdaserve.deploy.spec import (
    DEFAULT_LOG_RETENTION_DAYS,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    Desired,
    FunctionSettings,
    Release,
    UsagePlanSettings,
)
from lambdaserve.errors import LambdaserveError
from lambdaserve.store.records import Deployment, parse_quota
from lambdaserve.store.store import Store

OFF = -1  # --reserved-concurrency off / --provisioned-concurrency off


@dataclass
class DeployOptions:
    model: str
    stage: str
    version: int | None = None  # default: the model's latest version
    canary_version: int | None = None
    canary_weight: float = 0.0
    project: str | None = None
    region: str | None = None
    profile: str | None = None
    image_uri: str | None = None
    builder: str | None = None
    memory_mb: int | None = None
    timeout_s: int | None = None
    reserved_concurrency: int | None = None  # OFF removes it
    provisioned_concurrency: int | None = None  # OFF removes it
    keep_warm: bool | None = None
    log_retention_days: int | None = None
    rate: float | None = None
    burst: int | None = None
    quota: str | None = None
    dry_run: bool = False


@dataclass
class DeployResult:
    desired: Desired
    plan: Plan
    url: str | None = None
    api_key: str | None = None
    lambda_version: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.plan.writes


class Publisher(Protocol):
    """Builds and pushes images: ``check`` before any write, then one call per image."""

    def check(self, uris: list[str]) -> None: ...

    def __call__(self, uri: str) -> dict[str, Any]: ...


AWSFactory = Callable[[str | None, str | None], AWS]
PublisherFactory = Callable[[AWS, dict[str, ImageContext], Reporter], Publisher]


def default_publisher(builder: str | None) -> PublisherFactory:
    def create(aws: AWS, contexts: dict[str, ImageContext], progress: Reporter) -> Publisher:
        return ImagePublisher(aws, detect_builder(builder), contexts, progress)

    return create


def recorded_region(store: Store, project: str) -> str | None:
    """The region the project's last deploy went to, unless it was destroyed since."""
    for deployment in reversed(store.deployments(project)):
        if deployment.status == "destroyed" and deployment.model == "*":
            return None
        if deployment.status == "deployed":
            return deployment.region
    return None


def connect(store: Store, project: str, region: str | None, profile: str | None, factory: AWSFactory) -> AWS:
    """AWS for the project: --region, else the region it was deployed to, else the AWS config's."""
    known = recorded_region(store, project)
    if region and known and region != known:
        raise LambdaserveError(
            f"The project {project!r} is deployed in {known}, not {region}.",
            f"Leave out --region (or pass --region {known}); to move it, `lambdaserve destroy --all` "
            f"there first, or use another --project.",
        )
    return factory(region or known, profile)


def deploy(
    store: Store,
    options: DeployOptions,
    progress: Reporter,
    aws_factory: AWSFactory = AWS,
    publisher_factory: PublisherFactory | None = None,
) -> DeployResult:
    check_api_stage(options.stage)
    project = project_name(options.project, store.root)
    aws = connect(store, project, options.region, options.profile, aws_factory)
    progress.step(f"Reading the account and what {project} has in {aws.region}")
    names = Names(project, aws.account(), aws.region)
    contexts: dict[str, ImageContext] = {}
    release = _release(store, names, options.model, options.version, options.image_uri, contexts)
    canary = None
    if options.canary_version is not None and options.canary_weight > 0:
        canary = _release(store, names, options.model, options.canary_version, options.image_uri, contexts)
    desired = Desired(
        names=names, stage=options.stage, release=release, canary=canary, canary_weight=options.canary_weight
    )
    current = read_current(aws, desired)
    desired = replace(
        desired, function=_function_settings(options, current), plan=_plan_settings(options, current)
    )
    if desired.canary is not None and desired.function.provisioned_concurrency:
        # Lambda keeps no provisioned concurrency on an alias with routing weights.
        raise LambdaserveError(
            f"The stage {desired.stage} has provisioned concurrency, which AWS refuses beside a canary.",
            f"Remove it first (lambdaserve deploy {desired.model} --stage {desired.stage} "
            "--provisioned-concurrency off), and set it again once the canary ends.",
        )
    plan = plan_deploy(desired, current)
    result = DeployResult(desired=desired, plan=plan)
    # An image that cannot be built (no builder, requirements without wheels for AWS's base
    # image) is found before any call that writes; a dry run tells it as a note.
    images = [step.uri for step in plan.steps if isinstance(step, PushImage)]
    pusher: Publisher | None = None
    if images:
        try:
            pusher = (publisher_factory or default_publisher(options.builder))(aws, contexts, progress)
            pusher.check(images)
        except LambdaserveError as exc:
            if not options.dry_run:
                raise
            plan.notes.append(f"The image cannot be built here: {exc.message} {exc.hint or ''}".strip())
    if options.dry_run:
        return result
    record = Deployment(
        project=project,
        region=aws.region,
        account=names.account,
        model=desired.model,
        stage=desired.stage,
        version=release.version,
        canary_version=canary.version if canary else None,
        canary_weight=options.canary_weight if canary else 0.0,
        image=release.image_uri,
        status="deployed",
    )
    try:
        result.outputs = execute(plan, aws, progress, pusher)
    except LambdaserveError as exc:
        store.record_deployment(replace(record, status="failed", message=exc.message))
        raise
    _fill_result(result, current, aws)
    store.record_deployment(replace(record, lambda_version=result.lambda_version, url=result.url))
    return result


def _release(
    store: Store,
    names: Names,
    model: str,
    version: int | None,
    image_uri: str | None,
    contexts: dict[str, ImageContext],
) -> Release:
    if model not in store.models():
        raise LambdaserveError(
            f"There is no model {model!r} in {store.root}.",
            f"Push one first: lambdaserve models push model.pickle --name {model}",
        )
    records = store.versions(model)
    record = records[-1] if version is None else store.version(model, version)
    release = Release.from_version(record, store.model_path(record))
    if image_uri:
        return replace(release, image_uri=image_uri)
    context = release.image_context()
    uri = names.image_uri(image_tag(context))
    contexts[uri] = context
    return replace(release, image_uri=uri)


def _function_settings(options: DeployOptions, current: Current) -> FunctionSettings:
    function = current.function

    def pick(flag: int | None, deployed: int | None, default: int | None) -> int | None:
        if flag == OFF:
            return None
        if flag is not None:
            return flag
        return deployed if function is not None else default

    retention = (current.log_group or {}).get("retentionInDays")
    return FunctionSettings(
        memory_mb=options.memory_mb or (function.memory_mb if function else DEFAULT_MEMORY_MB),
        timeout_s=options.timeout_s or (function.timeout_s if function else DEFAULT_TIMEOUT_S),
        reserved_concurrency=pick(
            options.reserved_concurrency, function.reserved_concurrency if function else None, None
        ),
        provisioned_concurrency=pick(
            options.provisioned_concurrency, function.provisioned_concurrency if function else None, None
        ),
        keep_warm=options.keep_warm if options.keep_warm is not None else current.keep_warm_rule is not None,
        log_retention_days=options.log_retention_days or retention or DEFAULT_LOG_RETENTION_DAYS,
    )


def _plan_settings(options: DeployOptions, current: Current) -> UsagePlanSettings:
    deployed = current.usage_plan or {}
    throttle, quota = deployed.get("throttle") or {}, deployed.get("quota") or {}
    if options.quota is not None:
        quota_limit, quota_period = parse_quota(options.quota)
    else:
        quota_limit, quota_period = quota.get("limit"), quota.get("period")
    rate = options.rate if options.rate is not None else throttle.get("rateLimit")
    burst = options.burst if options.burst is not None else throttle.get("burstLimit")
    if (rate is None) != (burst is None):
        raise LambdaserveError("A throttle needs both --rate and --burst.", "e.g. --rate 10 --burst 10")
    return UsagePlanSettings(rate=rate, burst=burst, quota_limit=quota_limit, quota_period=quota_period)


def _fill_result(result: DeployResult, current: Current, aws: AWS) -> None:
    desired, outputs = result.desired, result.outputs
    names = desired.names
    api_id = outputs["api"]["id"] if "api" in outputs else current.api.id if current.api else None
    result.url = names.endpoint(api_id, desired.stage, desired.model) if api_id else None
    if "key" in outputs:
        result.api_key = outputs["key"].get("value")
    elif current.api_key is not None:
        result.api_key = current.api_key.get("value")
    publish = outputs.get(f"publish-{desired.release.version}")
    if publish is not None:
        result.lambda_version = publish["Version"]
    else:
        alias = aws.find(
            "lambda", "get_alias", FunctionName=names.function(desired.model), Name=desired.stage
        )
        result.lambda_version = alias.get("FunctionVersion") if alias else None
