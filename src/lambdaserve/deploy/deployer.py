"""``lambdaserve deploy``: the local store + flags -> desired state -> plan -> AWS.

Order of work: resolve the project, region and account; take the model's releases from the
store; read what AWS has; choose the image (the user's, or one lambdaserve builds: its
pinned base and full lock); fill the flags the user left out from what is deployed (so a
rerun without flags changes nothing) or, for what is new, from safe defaults; plan; print
the plan or run it; record the outcome in the store, failures included.

Everything that can stop a deploy (a requirement without a wheel for the image's platform,
a Python the model's code cannot run on, no builder) is found before the first call that
writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from lambdaserve.defaults import DEFAULT_LOG_RETENTION_DAYS, DEFAULT_TIMEOUT_S, OFF
from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.base import Base
from lambdaserve.deploy.current import Current, read_current, read_image_tags
from lambdaserve.deploy.image import Builder, ImageContext, detect_builder
from lambdaserve.deploy.names import Names, check_api_stage, project_name
from lambdaserve.deploy.plan import Plan, PushImage, Reporter, execute
from lambdaserve.deploy.planner import plan_deploy
from lambdaserve.deploy.registry import ImagePublisher
from lambdaserve.deploy.release_image import BuilderFactory, Builders, NoBuilders, built_image
from lambdaserve.deploy.spec import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    DEFAULT_RESERVED_CONCURRENCY,
    MIN_UNRESERVED_CONCURRENCY,
    AwsFunctionSettings,
    Desired,
    Release,
    UsagePlanSettings,
    recommended_memory,
)
from lambdaserve.errors import LambdaserveError
from lambdaserve.store.records import Deployment, parse_quota
from lambdaserve.store.store import Store


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
    build: bool = False  # build lambdaserve's image even where the function runs one of the user's
    builder: str | None = None
    python: str | None = None  # a newer Python than the model's (no code pickled by value)
    arch: str | None = None  # x86_64 | arm64
    refresh_base: bool = False
    memory_mb: int | None = None
    timeout_s: int | None = None
    reserved_concurrency: int | None = None  # OFF removes it
    provisioned_concurrency: int | None = None  # OFF removes it
    keep_warm: bool | None = None
    explain: bool | None = None  # default: where the model gives probabilities or has a reference
    access_logs: bool | None = None
    log_retention_days: int | None = None
    rate: float | None = None  # OFF removes the throttle
    burst: int | None = None
    quota: str | None = None  # "none" removes it
    capture: float | None = None  # the stage's capture rate, 0 to 1 (0 removes it); None keeps it
    dry_run: bool = False


@dataclass
class DeployResult:
    desired: Desired
    plan: Plan
    url: str | None = None
    api_key: str | None = None  # the key's value, only when this deploy created it
    api_key_id: str | None = None
    lambda_version: str | None = None
    base: Base | None = None  # what lambdaserve's image is built on (None: the user's image)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.plan.writes


class Publisher(Protocol):
    """Builds and pushes images: one call per image, returning what the push answered."""

    def __call__(self, uri: str) -> dict[str, Any]: ...


AWSFactory = Callable[[str | None, str | None], AWS]
PublisherFactory = Callable[[AWS, Builder | None, dict[str, ImageContext], Reporter], Publisher]


def default_publisher(
    aws: AWS, builder: Builder | None, contexts: dict[str, ImageContext], progress: Reporter
) -> Publisher:
    if builder is None:
        raise LambdaserveError("An image must be built, and no builder was found.")
    return ImagePublisher(aws, builder, contexts, progress)


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
    publisher_factory: PublisherFactory = default_publisher,
    builder_factory: BuilderFactory = detect_builder,
) -> DeployResult:
    check_api_stage(options.stage)
    project = project_name(options.project, store.root)
    aws = connect(store, project, options.region, options.profile, aws_factory)
    progress.step(f"Reading the account and what {project} has in {aws.region}")
    names = Names(project, aws.account(), aws.region)
    release = _release(store, options.model, options.version)
    canary = None
    if options.canary_version is not None and options.canary_weight > 0:
        canary = _release(store, options.model, options.canary_version)
    releases = [release] if canary is None else [release, canary]
    keys = [key for r in releases for key, _, _ in r.objects(names)]
    current = read_current(
        aws, names, options.model, options.stage, keys, access_logs=options.access_logs is not False
    )
    notes: list[str] = []
    function = _function_settings(options, current, release, notes)
    builders = Builders(options.builder, builder_factory)
    # A dry run pulls nothing: the base keeps the pin recorded for it, or is named by its tag.
    pinning = NoBuilders() if options.dry_run else builders
    contexts: dict[str, ImageContext] = {}
    base = _choose_images(
        store, names, options, current, releases, function.architecture, pinning, contexts, notes, progress
    )
    release, canary = releases[0], (releases[1] if canary is not None else None)
    current.image_tags = read_image_tags(aws, names, list(contexts))
    desired = Desired(
        names=names,
        stage=options.stage,
        release=release,
        canary=canary,
        canary_weight=options.canary_weight,
        function=function,
        plan=_plan_settings(options, current, notes),
        access_logs=_access_logs(options, current),
        build_tags=base.tags() if base is not None else {},
        explain=_explain(options, release, notes),
        capture=options.capture,
    )
    if desired.canary is not None and desired.function.provisioned_concurrency:
        # Lambda keeps no provisioned concurrency on an alias with routing weights.
        raise LambdaserveError(
            f"The stage {desired.stage} has provisioned concurrency, which AWS refuses beside a canary.",
            f"Remove it first (lambdaserve deploy {desired.model} --stage {desired.stage} "
            "--provisioned-concurrency none), and set it again once the canary ends.",
        )
    plan = plan_deploy(desired, current)
    plan.notes[:0] = notes
    result = DeployResult(desired=desired, plan=plan, base=base)
    # A missing builder is found before any call that writes; a dry run tells it as a note.
    pusher: Publisher | None = None
    if any(isinstance(step, PushImage) for step in plan.steps):
        builder = builders.get()
        if builder is None and builders.problem is not None:
            if not options.dry_run:
                raise builders.problem
            problem = builders.problem
            plan.notes.append(
                f"The image cannot be built here: {problem.message} {problem.hint or ''}".strip()
            )
        else:
            pusher = publisher_factory(aws, builder, contexts, progress)
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
        base=json.dumps(base.tags(), sort_keys=True) if base is not None else None,
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


def _release(store: Store, model: str, version: int | None) -> Release:
    if model not in store.models():
        raise LambdaserveError(
            f"There is no model {model!r} in {store.root}.",
            f"Push one first: lambdaserve models push model.pickle --name {model}",
        )
    records = store.versions(model)
    record = records[-1] if version is None else store.version(model, version)
    return Release.from_version(record, store.model_path(record), store.root / "references")


def _function_settings(
    options: DeployOptions, current: Current, release: Release, notes: list[str]
) -> AwsFunctionSettings:
    """The flags, else what is deployed, else (for a new function) the defaults."""
    function = current.function
    measured = release.measured_memory_mb
    if options.memory_mb is not None:
        memory = options.memory_mb
        if measured and memory < measured:
            notes.append(
                f"--memory {memory} is below the {measured} MB that INIT and a prediction used when the "
                "model was packaged: Lambda may stop the function (Runtime.OutOfMemory)."
            )
    elif function is not None:
        memory = function.memory_mb
    else:
        memory = recommended_memory(measured)
        notes.append(
            f"Memory {memory} MB: 1.5x the {measured} MB measured when the model was packaged "
            "(--memory to set)."
            if measured
            else f"Memory {memory} MB: the model was packaged before lambdaserve measured its memory "
            "(--memory to set)."
        )
    if options.reserved_concurrency is not None:
        reserved = None if options.reserved_concurrency == OFF else options.reserved_concurrency
    elif function is not None:
        reserved = function.reserved_concurrency
    else:
        reserved = _default_reserved(current, notes)
    provisioned = options.provisioned_concurrency
    if provisioned is None:
        provisioned = function.provisioned_concurrency if function else None
    elif provisioned == OFF:
        provisioned = None
    retention = (current.log_group or {}).get("retentionInDays")
    return AwsFunctionSettings(
        memory_mb=memory,
        timeout_s=options.timeout_s or (function.timeout_s if function else DEFAULT_TIMEOUT_S),
        reserved_concurrency=reserved,
        provisioned_concurrency=provisioned,
        keep_warm=options.keep_warm if options.keep_warm is not None else current.keep_warm_rule is not None,
        log_retention_days=options.log_retention_days or retention or DEFAULT_LOG_RETENTION_DAYS,
        architecture=options.arch or (function.architecture if function else "x86_64"),
    )


def _explain(options: DeployOptions, release: Release, notes: list[str]) -> bool:
    """Whether the stage gets /explain: asked for, or by default where LIME has what it needs
    (probabilities; for tabular input also the reference statistics)."""
    if options.explain is not None:
        return options.explain
    if release.has_proba:
        notes.append(
            "/explain is on (LIME; --no-explain to leave it out). Each explanation runs num_samples "
            "predictions within API Gateway's 29 s: see docs/reference.md."
        )
        return True
    return False


def _default_reserved(current: Current, notes: list[str]) -> int | None:
    """A new function's reserved concurrency: 10, where the account has room for it."""
    unreserved = current.unreserved_concurrency
    if unreserved is not None and unreserved - DEFAULT_RESERVED_CONCURRENCY < MIN_UNRESERVED_CONCURRENCY:
        notes.append(
            f"No reserved concurrency: the account has {unreserved} unreserved executions, and Lambda keeps "
            f"{MIN_UNRESERVED_CONCURRENCY} unreserved (ask AWS for a higher limit, then "
            "--reserved-concurrency N)."
        )
        return None
    notes.append(
        f"Reserved concurrency {DEFAULT_RESERVED_CONCURRENCY}: at most {DEFAULT_RESERVED_CONCURRENCY} "
        "executions at once, so no caller can take the account's whole Lambda concurrency "
        "(--reserved-concurrency N, or none)."
    )
    return DEFAULT_RESERVED_CONCURRENCY


def _plan_settings(options: DeployOptions, current: Current, notes: list[str]) -> UsagePlanSettings:
    deployed = current.usage_plan
    throttle, quota = (deployed or {}).get("throttle") or {}, (deployed or {}).get("quota") or {}
    if options.quota is not None:
        quota_limit, quota_period = parse_quota(None if options.quota.lower() == "none" else options.quota)
    else:
        quota_limit, quota_period = quota.get("limit"), quota.get("period")
    if options.rate == OFF:
        return UsagePlanSettings(quota_limit=quota_limit, quota_period=quota_period)
    rate = options.rate if options.rate is not None else throttle.get("rateLimit")
    burst = options.burst if options.burst is not None else throttle.get("burstLimit")
    if options.rate is not None and burst is None:
        burst = max(1, int(options.rate))  # as serve --rate and plans create do
    if deployed is None and rate is None and burst is None:
        rate, burst = DEFAULT_RATE, DEFAULT_BURST
        notes.append(
            f"A new stage: each key is throttled to {DEFAULT_RATE:g} requests/s, bursts of {DEFAULT_BURST} "
            "(--rate and --burst to change, --rate none to lift)."
        )
    if (rate is None) != (burst is None):
        raise LambdaserveError("A throttle needs both --rate and --burst.", "e.g. --rate 10 --burst 10")
    return UsagePlanSettings(rate=rate, burst=burst, quota_limit=quota_limit, quota_period=quota_period)


def _access_logs(options: DeployOptions, current: Current) -> bool:
    if options.access_logs is not None:
        return options.access_logs
    stage = current.api.stage if current.api else None
    return bool((stage or {}).get("accessLogSettings"))


def _fill_result(result: DeployResult, current: Current, aws: AWS) -> None:
    desired, outputs = result.desired, result.outputs
    names = desired.names
    api_id = outputs["api"]["id"] if "api" in outputs else current.api.id if current.api else None
    result.url = names.endpoint(api_id, desired.stage, desired.model) if api_id else None
    if "key" in outputs:
        # Shown once: later deploys print where to read it (lambdaserve keys show --remote STAGE).
        result.api_key = outputs["key"].get("value")
        result.api_key_id = outputs["key"].get("id")
    elif current.api_key is not None:
        result.api_key_id = current.api_key.get("id")
    publish = outputs.get(f"publish-{desired.release.version}")
    if publish is not None:
        result.lambda_version = publish["Version"]
    else:
        alias = aws.find(
            "lambda", "get_alias", FunctionName=names.function(desired.model), Name=desired.stage
        )
        result.lambda_version = alias.get("FunctionVersion") if alias else None


def _choose_images(
    store: Store,
    names: Names,
    options: DeployOptions,
    current: Current,
    releases: list[Release],
    arch: str,
    builders: Builders,
    contexts: dict[str, ImageContext],
    notes: list[str],
    progress: Reporter,
) -> Base | None:
    """Give each release its image URI; return the base lambdaserve's image is built on (None: user's)."""
    deployed = current.function.image_uri if current.function else ""
    user_image = options.image_uri
    if not user_image and not options.build and deployed and not deployed.startswith(names.image_uri("")):
        user_image = deployed
        notes.append(f"The function runs your image {deployed}: kept (--build goes back to lambdaserve's).")
    if user_image:
        releases[:] = [replace(r, image_uri=user_image) for r in releases]
        return None
    tags = current.function.tags if current.function else {}
    chosen: Base | None = None
    for index, release in enumerate(releases):
        image = built_image(
            store,
            names,
            release,
            arch=arch,
            python=options.python,
            function_tags=tags,
            refresh_base=options.refresh_base,
            builders=builders,
            notes=notes,
            progress=progress,
        )
        contexts[image.uri] = image.context
        releases[index] = replace(release, image_uri=image.uri)
        chosen = chosen or image.base
    if chosen is not None:
        notes.insert(0, f"Base image: {chosen.describe()}. Why: {chosen.why()}.")
    return chosen
