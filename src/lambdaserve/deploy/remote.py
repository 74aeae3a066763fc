"""Stages on AWS after a deploy: promote, roll back, see what runs where, read the logs.

``promote --remote`` and ``rollback --remote`` are deploys of another version to a stage
(the engine publishes what is missing and flips the alias); ``rollback`` goes back to the
stage's previous deploy as the store recorded it. ``status --remote`` reads the aliases and
their versions from Lambda, so it shows the truth even when someone changed AWS by hand.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.base import (
    TAG_BASE,
    TAG_BASE_CREATED,
    TAG_PYTHON_BUILD,
    base_age_days,
    choose_base,
    deployed_python,
)
from lambdaserve.deploy.deployer import AWSFactory, DeployOptions, connect
from lambdaserve.deploy.names import TAG_MODEL, TAG_PROJECT, TAG_STAGE, Names, project_name
from lambdaserve.errors import LambdaserveError
from lambdaserve.store.records import Deployment
from lambdaserve.store.store import Store

_DESCRIPTION = re.compile(r"lambdaserve (?P<model>\S+) v(?P<version>\d+) sha256:(?P<sha>[0-9a-f]+)")


def deployed(store: Store, project: str, model: str, stage: str) -> list[Deployment]:
    """The successful deploys of a model's stage, oldest first."""
    return [d for d in store.deployments(project, model) if d.stage == stage and d.status == "deployed"]


def last_deploys(store: Store, project: str) -> dict[tuple[str, str], Deployment]:
    """What each (model, stage) of the project last got from a deploy here, destroyed ones left out."""
    latest: dict[tuple[str, str], Deployment] = {}
    for d in store.deployments(project):
        if d.status == "destroyed":
            latest = {k: v for k, v in latest.items() if d.model not in ("*", k[0])}
        elif d.status == "deployed":
            latest[(d.model, d.stage)] = d
    return latest


def deployed_endpoint(store: Store, project: str | None, model: str, stage: str) -> Deployment:
    """The last deploy of a model's stage that is still up, as recorded here: its URL, region."""
    name = project_name(project, store.root)
    latest = last_deploys(store, name)
    found = latest.get((model, stage))
    if found is None or not found.url:
        there = ", ".join(f"{m}@{s}" for m, s in sorted(latest)) or "nothing"
        raise LambdaserveError(
            f"{model!r} was never deployed to the stage {stage!r} of project {name} from {store.root}"
            f" (deployed from here: {there}).",
            f"Deploy it first (lambdaserve deploy {model} --stage {stage}), pass --project or "
            "--state-dir for another project, or give the endpoint's URL as TARGET.",
        )
    return found


def promote_options(
    store: Store, options: DeployOptions, version: int, canary_weight: float | None
) -> DeployOptions:
    """A deploy of ``version`` to the stage: alone, or as a canary beside what it serves now."""
    project = project_name(options.project, store.root)
    history = deployed(store, project, options.model, options.stage)
    if canary_weight is None:
        return replace(options, version=version, canary_version=None, canary_weight=0.0)
    if not history:
        raise LambdaserveError(
            f"The stage {options.stage!r} of {options.model!r} is not deployed: a canary shares its traffic.",
            f"Deploy a version first: lambdaserve deploy {options.model} --stage {options.stage}",
        )
    serving = history[-1].version
    if serving == version:
        raise LambdaserveError(
            f"The stage {options.stage!r} of {options.model!r} already serves version {version} on AWS.",
            "A canary is another version: push one and canary that.",
        )
    return replace(options, version=serving, canary_version=version, canary_weight=canary_weight)


def rollback_options(store: Store, options: DeployOptions) -> DeployOptions:
    """A deploy of what the stage served before its last deploy."""
    project = project_name(options.project, store.root)
    history = deployed(store, project, options.model, options.stage)
    if not history:
        raise LambdaserveError(f"The stage {options.stage!r} of {options.model!r} was never deployed.")
    now = history[-1]
    earlier = [
        d
        for d in history
        if (d.version, d.canary_version, d.canary_weight)
        != (now.version, now.canary_version, now.canary_weight)
    ]
    if not earlier:
        raise LambdaserveError(
            f"The stage {options.stage!r} of {options.model!r} never served anything else on AWS.",
            f"Destroy it (lambdaserve destroy {options.model}) or deploy another version.",
        )
    before = earlier[-1]
    return replace(
        options,
        version=before.version,
        canary_version=before.canary_version,
        canary_weight=before.canary_weight,
        region=options.region or before.region,
    )


def remote_status(
    store: Store, project: str | None, region: str | None, profile: str | None, factory: AWSFactory = AWS
) -> dict[str, Any]:
    """What AWS runs for the project: per model, its stages, versions, image, base and URLs."""
    name = project_name(project, store.root)
    aws = connect(store, name, region, profile, factory)
    names = Names(name, aws.account(), aws.region)
    apis = [
        a
        for a in aws.pages("apigateway", "get_rest_apis", "items")
        if a.get("tags", {}).get(TAG_PROJECT) == name
    ]
    by_stage = {a["tags"][TAG_STAGE]: a["id"] for a in apis if TAG_STAGE in a.get("tags", {})}
    legacy = next(
        (a["id"] for a in apis if a["name"] == names.legacy_rest_api and TAG_STAGE not in a["tags"]), None
    )
    models = []
    for function in aws.pages("lambda", "list_functions", "Functions"):
        tags = aws.call("lambda", "list_tags", Resource=function["FunctionArn"]).get("Tags", {})
        if tags.get(TAG_PROJECT) != name:
            continue
        model = tags.get(TAG_MODEL, "")
        versions = {
            v["Version"]: v
            for v in aws.pages(
                "lambda", "list_versions_by_function", "Versions", FunctionName=function["FunctionName"]
            )
        }
        stages = []
        for alias in aws.pages("lambda", "list_aliases", "Aliases", FunctionName=function["FunctionName"]):
            weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
            api_id = by_stage.get(alias["Name"]) or legacy
            stages.append(
                {
                    "stage": alias["Name"],
                    "lambda_version": alias["FunctionVersion"],
                    "version": _model_version(versions.get(alias["FunctionVersion"])),
                    "canary": [
                        {"lambda_version": v, "version": _model_version(versions.get(v)), "weight": w * 100}
                        for v, w in weights.items()
                    ],
                    "url": names.endpoint(api_id, alias["Name"], model) if api_id else None,
                    "layout": "per-stage API" if alias["Name"] in by_stage else "one API per project (old)",
                }
            )
        code = aws.call("lambda", "get_function", FunctionName=function["FunctionName"]).get("Code", {})
        base = tags.get(TAG_BASE)
        python = deployed_python(tags)
        models.append(
            {
                "model": model,
                "function": function["FunctionName"],
                "memory_mb": function.get("MemorySize"),
                "timeout_s": function.get("Timeout"),
                "architecture": (function.get("Architectures") or ["x86_64"])[0],
                "image": code.get("ImageUri"),
                "image_digest": (code.get("ResolvedImageUri") or "").rpartition("@")[2] or None,
                "base": base,
                "base_created": tags.get(TAG_BASE_CREATED),
                "base_age_days": base_age_days(tags.get(TAG_BASE_CREATED, "")),
                "python_build": tags.get(TAG_PYTHON_BUILD),
                "base_why": choose_base(python).why() if python else None,
                "stages": sorted(stages, key=lambda s: s["stage"]),
            }
        )
    return {
        "project": name,
        "region": aws.region,
        "account": names.account,
        "apis": dict(sorted(by_stage.items())),
        "legacy_api": legacy,
        "models": sorted(models, key=lambda m: m["model"]),
    }


def remote_api_key(
    store: Store,
    project: str | None,
    region: str | None,
    profile: str | None,
    stage: str,
    factory: AWSFactory = AWS,
) -> dict[str, Any]:
    """The stage's API key on AWS, with its value (one read: apigateway GET /apikeys/{id})."""
    name = project_name(project, store.root)
    aws = connect(store, name, region, profile, factory)
    names = Names(name, aws.account(), aws.region)
    for key in aws.pages(
        "apigateway", "get_api_keys", "items", nameQuery=names.api_key(stage), includeValues=True
    ):
        if key["name"] == names.api_key(stage) and key.get("tags", {}).get(TAG_PROJECT) == name:
            return {
                "stage": stage,
                "id": key["id"],
                "name": key["name"],
                "value": key.get("value"),
                "enabled": key.get("enabled"),
            }
    raise LambdaserveError(
        f"The stage {stage!r} of project {name} has no API key in {aws.region}.",
        f"Deploy a model to it first: lambdaserve deploy MODEL --stage {stage}",
    )


def _model_version(version: dict[str, Any] | None) -> int | None:
    match = _DESCRIPTION.match((version or {}).get("Description", ""))
    return int(match.group("version")) if match else None


_STREAM_VERSION = re.compile(r"\[(\$LATEST|\d+)\]")  # Lambda's streams: 2026/12/03/[7]<id>


def remote_reports(
    aws: AWS, names: Names, model: str, stage: str | None, since_ms: int, limit: int = 10_000
) -> tuple[list[str], list[str] | None]:
    """The function's REPORT lines in CloudWatch Logs since ``since_ms`` (newest ``limit``),
    and, for a stage, the Lambda versions its alias routes to: only their streams count
    (a stream's name holds the version that wrote it)."""
    group = names.log_group(model)
    function = names.function(model)
    versions: list[str] | None = None
    if stage is not None:
        alias = aws.find("lambda", "get_alias", FunctionName=function, Name=stage)
        if alias is None:
            raise LambdaserveError(
                f"The function {function} has no stage {stage!r} in {aws.region}.",
                f"Deploy it (lambdaserve deploy {model} --stage {stage}), or leave out --stage to "
                "price from every version's REPORT lines.",
            )
        weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        versions = [alias["FunctionVersion"], *weights]
    if aws.find("logs", "describe_log_streams", logGroupName=group, limit=1) is None:
        raise LambdaserveError(
            f"There is no log group {group} in {aws.region}: the function has not run there yet.",
            f"Deploy the model (lambdaserve deploy {model} --stage STAGE) and send it requests "
            f"(lambdaserve loadtest {model} --remote --stage STAGE), or price from here without --remote.",
        )
    lines: collections.deque[str] = collections.deque(maxlen=limit)
    for event in aws.pages(
        "logs", "filter_log_events", "events", logGroupName=group, startTime=since_ms, filterPattern="REPORT"
    ):
        if versions is not None:
            found = _STREAM_VERSION.search(event.get("logStreamName", ""))
            if found is None or found.group(1) not in versions:
                continue
        lines.append(event["message"])
    return list(lines), versions


def remote_logs(
    aws: AWS,
    names: Names,
    model: str,
    since_ms: int,
    follow: bool,
    until: Callable[[], bool] = lambda: False,
    poll_seconds: float = 2.0,
) -> Iterator[dict[str, Any]]:
    """The function's CloudWatch Logs events from ``since_ms``; with ``follow``, new ones as they come."""
    group = names.log_group(model)
    if aws.find("logs", "describe_log_streams", logGroupName=group, limit=1) is None:
        raise LambdaserveError(
            f"There is no log group {group} in {aws.region}.",
            f"Deploy the model first (lambdaserve deploy {model} --stage STAGE), then invoke it.",
        )
    seen: set[str] = set()
    start = since_ms
    while True:
        for event in aws.pages("logs", "filter_log_events", "events", logGroupName=group, startTime=start):
            if event["eventId"] in seen:
                continue
            seen.add(event["eventId"])
            start = max(start, event["timestamp"])
            yield event
        if not follow or until():
            return
        time.sleep(poll_seconds)  # CloudWatch Logs has no push API; the console's tail polls too
