"""The planner's Lambda part: the function, its published versions, the stage's alias, keep-warm.

Pure, as the rest of the planner. A Lambda version freezes the function's configuration, so
each release (a model version with its settings) gets its own published version, found again
by its description; ``$LATEST`` is updated only on the way to publishing one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lambdaserve.deploy.current import Current, FunctionState
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.plan import Call, Fmt, Plan, Ref, Wait
from lambdaserve.deploy.spec import KEEP_WARM_SCHEDULE, Desired, Release
from lambdaserve.runtime.variables import MODEL, REFERENCE

WARM_EVENT = {"lambdaserve": "warm"}
KEEP_WARM_SID = "lambdaserve-keep-warm"

Value = str | Ref | Fmt


def function_arn(names: Names, model: str) -> str:
    return f"arn:aws:lambda:{names.region}:{names.account}:function:{names.function(model)}"


def version_description(desired: Desired, release: Release, role_arn: str) -> str:
    """Names the model version and the settings a published Lambda version froze."""
    frozen: list[object] = [
        release.image_uri,
        role_arn,
        desired.function.memory_mb,
        desired.function.timeout_s,
    ]
    if desired.function.architecture != "x86_64":  # x86_64 went unnamed before arm64 was offered
        frozen.append(desired.function.architecture)
    settings = json.dumps(frozen, sort_keys=True)
    return f"{release.description()} config:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def plan_function(
    plan: Plan, desired: Desired, current: Current, role_arn: str, object_versions: dict[str, str | Ref]
) -> dict[int, Value]:
    """Publish a Lambda version for each release that has none; return release -> Lambda version."""
    names, model = desired.names, desired.model
    name = names.function(model)
    settings = desired.function
    state: FunctionState | None = current.function
    # What $LATEST holds as the plan goes: updates below change it for later releases.
    latest: dict[str, Any] | None = None
    if state is not None:
        latest = {
            "image": state.image_uri,
            "architecture": state.architecture,
            "role": state.role,
            "memory": state.memory_mb,
            "timeout": state.timeout_s,
            "environment": state.environment,
        }
    versions: dict[int, Value] = {}
    for release in desired.releases():
        description = version_description(desired, release, role_arn)
        if state is not None and description in state.versions:
            versions[release.version] = state.versions[description]
            continue
        environment = _environment(release, names, object_versions)
        if latest is None:
            plan.add(
                Call(
                    "lambda",
                    "create_function",
                    {
                        "FunctionName": name,
                        "PackageType": "Image",
                        "Code": {"ImageUri": release.image_uri},
                        "Role": role_arn,
                        "MemorySize": settings.memory_mb,
                        "Timeout": settings.timeout_s,
                        "Environment": {"Variables": environment},
                        "Architectures": [settings.architecture],
                        "Description": f"lambdaserve model {model}",
                        "Tags": desired.function_tags(),
                    },
                    f"Create the function {name} ({settings.memory_mb} MB, {settings.timeout_s} s, "
                    f"{settings.architecture})",
                )
            )
            plan.add(
                Wait(
                    "lambda",
                    "function_active_v2",
                    {"FunctionName": name},
                    "Wait until the function is active",
                )
            )
        else:
            if (latest["image"], latest["architecture"]) != (release.image_uri, settings.architecture):
                plan.add(
                    Call(
                        "lambda",
                        "update_function_code",
                        {
                            "FunctionName": name,
                            "ImageUri": release.image_uri,
                            "Architectures": [settings.architecture],
                        },
                        f"Point the function at the image {release.image_uri.rsplit(':', 1)[-1]} "
                        f"({settings.architecture})",
                    )
                )
                plan.add(Wait("lambda", "function_updated_v2", {"FunctionName": name}, "Wait for the update"))
            wanted = {"role": role_arn, "memory": settings.memory_mb, "timeout": settings.timeout_s}
            if {k: latest[k] for k in wanted} != wanted or latest["environment"] != environment:
                plan.add(
                    Call(
                        "lambda",
                        "update_function_configuration",
                        {
                            "FunctionName": name,
                            "Role": role_arn,
                            "MemorySize": settings.memory_mb,
                            "Timeout": settings.timeout_s,
                            "Environment": {"Variables": environment},
                        },
                        f"Configure the function for {model} version {release.version}",
                    )
                )
                plan.add(Wait("lambda", "function_updated_v2", {"FunctionName": name}, "Wait for the update"))
        latest = {
            "image": release.image_uri,
            "architecture": settings.architecture,
            "role": role_arn,
            "memory": settings.memory_mb,
            "timeout": settings.timeout_s,
            "environment": environment,
        }
        output = f"publish-{release.version}"
        plan.add(
            Call(
                "lambda",
                "publish_version",
                {"FunctionName": name, "Description": description},
                f"Publish a Lambda version for {model} version {release.version}",
                output,
            )
        )
        versions[release.version] = Ref(output, ("Version",))
    wanted_tags = desired.function_tags()
    if state is not None and any(state.tags.get(k) != v for k, v in wanted_tags.items()):
        plan.add(
            Call(
                "lambda",
                "tag_resource",
                {"Resource": function_arn(names, model), "Tags": wanted_tags},
                "Tag the function (project, model, and the base image its image was built on)",
            )
        )
    reserved = settings.reserved_concurrency
    current_reserved = state.reserved_concurrency if state else None
    if reserved != current_reserved:
        if reserved is None:
            plan.add(
                Call(
                    "lambda",
                    "delete_function_concurrency",
                    {"FunctionName": name},
                    "Remove reserved concurrency",
                )
            )
        else:
            plan.add(
                Call(
                    "lambda",
                    "put_function_concurrency",
                    {"FunctionName": name, "ReservedConcurrentExecutions": reserved},
                    f"Reserve {reserved} concurrent executions",
                )
            )
    return versions


def _environment(release: Release, names: Names, object_versions: dict[str, str | Ref]) -> dict[str, Value]:
    variables: dict[str, Value] = dict(release.environment())
    for key, _, what in release.objects(names):
        location = f"s3://{names.bucket}/{key}?versionId="
        version = object_versions[key]
        # The object may be uploaded by this plan: then its version is known only when the upload answers.
        value = location + version if isinstance(version, str) else Fmt(location + "{v}", (("v", version),))
        variables[MODEL if what == "model" else REFERENCE] = value
    return dict(sorted(variables.items()))


def plan_alias(plan: Plan, desired: Desired, current: Current, versions: dict[int, Value]) -> None:
    names, model, stage = desired.names, desired.model, desired.stage
    name = names.function(model)
    params: dict[str, Any] = {
        "FunctionName": name,
        "Name": stage,
        "FunctionVersion": versions[desired.release.version],
    }
    routing: dict[str, Any] = {}
    if desired.canary is not None and desired.canary_weight > 0:
        canary = versions[desired.canary.version]
        routing = {"AdditionalVersionWeights": {canary: round(desired.canary_weight / 100, 4)}}
    alias = current.function.alias if current.function else None
    what = f"version {desired.release.version}"
    if routing and desired.canary is not None:
        what += f", canary version {desired.canary.version} at {desired.canary_weight:g}%"
    if alias is None:
        call_params = {**params, "RoutingConfig": routing} if routing else params
        plan.add(Call("lambda", "create_alias", call_params, f"Create the alias {stage} -> {what}"))
    else:
        now = (
            alias.get("FunctionVersion"),
            alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}),
        )
        wanted_weights = routing.get("AdditionalVersionWeights", {})
        if now != (params["FunctionVersion"], wanted_weights):
            plan.add(
                Call(
                    "lambda",
                    "update_alias",
                    {**params, "RoutingConfig": {"AdditionalVersionWeights": wanted_weights}},
                    f"Point the alias {stage} at {what}",
                )
            )
    wanted_provisioned = desired.function.provisioned_concurrency or None
    now_provisioned = current.function.provisioned_concurrency if current.function else None
    if wanted_provisioned != now_provisioned:
        if wanted_provisioned is None:
            plan.add(
                Call(
                    "lambda",
                    "delete_provisioned_concurrency_config",
                    {"FunctionName": name, "Qualifier": stage},
                    f"Remove provisioned concurrency from {stage}",
                )
            )
        else:
            plan.add(
                Call(
                    "lambda",
                    "put_provisioned_concurrency_config",
                    {
                        "FunctionName": name,
                        "Qualifier": stage,
                        "ProvisionedConcurrentExecutions": wanted_provisioned,
                    },
                    f"Keep {wanted_provisioned} of {stage} initialised (allocation takes minutes)",
                )
            )


def plan_keep_warm(plan: Plan, desired: Desired, current: Current) -> None:
    names, model, stage = desired.names, desired.model, desired.stage
    rule = names.keep_warm_rule(model, stage)
    alias_arn = f"{function_arn(names, model)}:{stage}"
    policy = current.function.alias_policy if current.function else set()
    if desired.function.keep_warm:
        rule_ok = current.keep_warm_rule is not None and current.keep_warm_rule.get("ScheduleExpression") == (
            KEEP_WARM_SCHEDULE
        )
        if not rule_ok:
            plan.add(
                Call(
                    "events",
                    "put_rule",
                    {
                        "Name": rule,
                        "ScheduleExpression": KEEP_WARM_SCHEDULE,
                        "State": "ENABLED",
                        "Description": f"lambdaserve: keep {model} ({stage}) warm",
                        "Tags": [{"Key": k, "Value": v} for k, v in names.tags(model).items()],
                    },
                    f"Keep {stage} warm: invoke it every 5 minutes",
                )
            )
        if [t.get("Arn") for t in current.keep_warm_targets] != [alias_arn]:
            target = {"Id": "alias", "Arn": alias_arn, "Input": json.dumps(WARM_EVENT)}
            plan.add(Call("events", "put_targets", {"Rule": rule, "Targets": [target]}, "Target the alias"))
        if KEEP_WARM_SID not in policy:
            plan.add(
                Call(
                    "lambda",
                    "add_permission",
                    {
                        "FunctionName": names.function(model),
                        "Qualifier": stage,
                        "StatementId": KEEP_WARM_SID,
                        "Action": "lambda:InvokeFunction",
                        "Principal": "events.amazonaws.com",
                        "SourceArn": f"arn:aws:events:{names.region}:{names.account}:rule/{rule}",
                    },
                    "Let the schedule invoke the alias",
                )
            )
    elif current.keep_warm_rule is not None:
        if current.keep_warm_targets:
            ids = [t["Id"] for t in current.keep_warm_targets]
            plan.add(Call("events", "remove_targets", {"Rule": rule, "Ids": ids}, "Stop keeping warm"))
        plan.add(Call("events", "delete_rule", {"Name": rule}, f"Delete the rule {rule}"))
        if KEEP_WARM_SID in policy:
            plan.add(
                Call(
                    "lambda",
                    "remove_permission",
                    {"FunctionName": names.function(model), "Qualifier": stage, "StatementId": KEEP_WARM_SID},
                    "Remove the schedule's permission",
                )
            )
