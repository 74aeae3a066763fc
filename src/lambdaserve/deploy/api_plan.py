"""The planner's API Gateway part: routes, the stage's deployment, the permission, usage plan, key.

Pure, as the rest of the planner. One REST API serves every model of the project; each
method integrates with ``function:${stageVariables.lambdaAlias}``, so one integration serves
every stage, and each stage's ``lambdaAlias`` variable is its own name. A stage serves a
snapshot (deployment) of the API, made again only when the routes change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lambdaserve.deploy.current import Current
from lambdaserve.deploy.lambda_plan import Value, function_arn
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.plan import Call, Fmt, Plan, Ref, fmt
from lambdaserve.deploy.spec import Desired

APIGATEWAY_SID = "lambdaserve-apigateway-{api}"


def integration_uri(names: Names, model: str) -> str:
    # One integration for every stage: the stage variable picks the alias of the stage's name.
    return (
        f"arn:aws:apigateway:{names.region}:lambda:path/2015-03-31/functions/"
        f"{function_arn(names, model)}:${{stageVariables.lambdaAlias}}/invocations"
    )


def plan_api(plan: Plan, desired: Desired, current: Current) -> Value:
    names, model, stage = desired.names, desired.model, desired.stage
    api = current.api
    changed = False
    api_id: Value
    parent: Value
    if api is None:
        plan.add(
            Call(
                "apigateway",
                "create_rest_api",
                {
                    "name": names.rest_api,
                    "description": f"lambdaserve project {names.project}",
                    "endpointConfiguration": {"types": ["REGIONAL"]},
                    "apiKeySource": "HEADER",
                    "tags": names.tags(),
                },
                f"Create the REST API {names.rest_api}",
                "api",
            )
        )
        api_id, parent = Ref("api", ("id",)), Ref("api", ("rootResourceId",))
        resources: dict[str, dict[str, Any]] = {}
        changed = True
    else:
        api_id, parent, resources = api.id, api.root_id, api.resources
    model_path = f"/{model}"
    if model_path in resources:
        model_id: Value = resources[model_path]["id"]
    else:
        plan.add(
            Call(
                "apigateway",
                "create_resource",
                {"restApiId": api_id, "parentId": parent, "pathPart": model},
                f"Add the resource {model_path}",
                f"resource-{model}",
            )
        )
        model_id = Ref(f"resource-{model}", ("id",))
    uri = integration_uri(names, model)
    for route in desired.routes:
        path = f"{model_path}/{route}"
        resource = resources.get(path)
        if resource is None:
            output = f"resource-{model}-{route}"
            plan.add(
                Call(
                    "apigateway",
                    "create_resource",
                    {"restApiId": api_id, "parentId": model_id, "pathPart": route},
                    f"Add the resource {path}",
                    output,
                )
            )
            resource_id: Value = Ref(output, ("id",))
            method: dict[str, Any] = {}
        else:
            resource_id = resource["id"]
            method = resource.get("resourceMethods", {}).get("POST", {})
        if not method:
            plan.add(
                Call(
                    "apigateway",
                    "put_method",
                    {
                        "restApiId": api_id,
                        "resourceId": resource_id,
                        "httpMethod": "POST",
                        "authorizationType": "NONE",
                        "apiKeyRequired": True,
                    },
                    f"POST {path}, API key required",
                )
            )
        elif not method.get("apiKeyRequired"):
            changed = True
            patch = [{"op": "replace", "path": "/apiKeyRequired", "value": "true"}]
            plan.add(
                Call(
                    "apigateway",
                    "update_method",
                    {
                        "restApiId": api_id,
                        "resourceId": resource_id,
                        "httpMethod": "POST",
                        "patchOperations": patch,
                    },
                    f"Require an API key on POST {path}",
                )
            )
        integration = method.get("methodIntegration", {})
        if integration.get("type") != "AWS_PROXY" or integration.get("uri") != uri:
            plan.add(
                Call(
                    "apigateway",
                    "put_integration",
                    {
                        "restApiId": api_id,
                        "resourceId": resource_id,
                        "httpMethod": "POST",
                        "type": "AWS_PROXY",
                        "integrationHttpMethod": "POST",
                        "uri": uri,
                    },
                    f"Send POST {path} to the function's alias of the stage (Lambda proxy)",
                )
            )
            changed = True
    # A stage serves a snapshot (deployment) of the API: a new one is made when the routes change.
    paths = {p for p in resources if p.count("/") == 2} | {f"{model_path}/{r}" for r in desired.routes}
    snapshot = "lambdaserve routes " + hashlib.sha256(json.dumps(sorted(paths)).encode()).hexdigest()[:16]
    stage_state = api.stage if api else None
    if stage_state is None or changed or (api is not None and api.stage_deployment != snapshot):
        plan.add(stage_deployment(api_id, stage, snapshot, f"Deploy the API to the stage {stage}"))
    elif (stage_state.get("variables") or {}).get("lambdaAlias") != stage:
        patch = [{"op": "replace", "path": "/variables/lambdaAlias", "value": stage}]
        plan.add(
            Call(
                "apigateway",
                "update_stage",
                {"restApiId": api_id, "stageName": stage, "patchOperations": patch},
                f"Route the stage {stage} to the alias {stage}",
            )
        )
    return api_id


def stage_deployment(api_id: Value, stage: str, description: str, label: str) -> Call:
    """A new snapshot of the API served by ``stage``, which invokes the alias of its own name."""
    return Call(
        "apigateway",
        "create_deployment",
        {
            "restApiId": api_id,
            "stageName": stage,
            "description": description,
            "variables": {"lambdaAlias": stage},
        },
        label,
    )


def plan_permission(plan: Plan, desired: Desired, current: Current, api_id: Value) -> None:
    names, model, stage = desired.names, desired.model, desired.stage
    policy = current.function.alias_policy if current.function else set()
    if isinstance(api_id, str) and APIGATEWAY_SID.format(api=api_id) in policy:
        return
    ref = api_id if isinstance(api_id, Ref) else None
    sid: Value = fmt(APIGATEWAY_SID, api=ref) if ref else APIGATEWAY_SID.format(api=api_id)
    source = f"arn:aws:execute-api:{names.region}:{names.account}:{{api}}/{stage}/POST/{model}/*"
    source_arn: Value = fmt(source, api=ref) if ref else source.format(api=api_id)
    plan.add(
        Call(
            "lambda",
            "add_permission",
            {
                "FunctionName": names.function(model),
                "Qualifier": stage,
                "StatementId": sid,
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": source_arn,
            },
            f"Let the API's stage {stage} invoke the alias {stage} (and nothing else may)",
        )
    )


def plan_usage_plan(plan: Plan, desired: Desired, current: Current, api_id: Value) -> None:
    names, stage, settings = desired.names, desired.stage, desired.plan
    usage_plan = current.usage_plan
    plan_id: Value
    if usage_plan is None:
        params: dict[str, Any] = {
            "name": names.usage_plan(stage),
            "description": f"lambdaserve: callers of the stage {stage}",
            "apiStages": [{"apiId": api_id, "stage": stage}],
            "tags": names.tags(),
        }
        if settings.throttle():
            params["throttle"] = settings.throttle()
        if settings.quota():
            params["quota"] = settings.quota()
        plan.add(
            Call(
                "apigateway",
                "create_usage_plan",
                params,
                f"Create the usage plan {names.usage_plan(stage)}",
                "plan",
            )
        )
        plan_id = Ref("plan", ("id",))
    else:
        plan_id = usage_plan["id"]
        patch = _usage_plan_patch(usage_plan, desired, api_id)
        if patch:
            plan.add(
                Call(
                    "apigateway",
                    "update_usage_plan",
                    {"usagePlanId": plan_id, "patchOperations": patch},
                    f"Update the usage plan {names.usage_plan(stage)}",
                )
            )
    key_id: Value
    if current.api_key is None:
        plan.add(
            Call(
                "apigateway",
                "create_api_key",
                {"name": names.api_key(stage), "enabled": True, "tags": names.tags()},
                f"Create the API key {names.api_key(stage)}",
                "key",
            )
        )
        key_id = Ref("key", ("id",))
    else:
        key_id = current.api_key["id"]
    if not isinstance(key_id, str) or key_id not in current.usage_plan_keys:
        plan.add(
            Call(
                "apigateway",
                "create_usage_plan_key",
                {"usagePlanId": plan_id, "keyId": key_id, "keyType": "API_KEY"},
                "Put the key on the usage plan",
            )
        )


def _usage_plan_patch(usage_plan: dict[str, Any], desired: Desired, api_id: Value) -> list[dict[str, Any]]:
    """PATCH operations that bring a usage plan to the wanted stage, throttle and quota."""
    settings, stage = desired.plan, desired.stage
    patch: list[dict[str, Any]] = []
    stages = {(s.get("apiId"), s.get("stage")) for s in usage_plan.get("apiStages", [])}
    if (api_id, stage) not in stages:
        value = Fmt("{api}:" + stage, (("api", api_id),)) if isinstance(api_id, Ref) else f"{api_id}:{stage}"
        patch.append({"op": "add", "path": "/apiStages", "value": value})
    throttle = settings.throttle()
    deployed = usage_plan.get("throttle")
    if deployed:
        deployed = {
            "rateLimit": float(deployed.get("rateLimit", 0)),
            "burstLimit": int(deployed.get("burstLimit", 0)),
        }
    if throttle != (deployed or None):
        if throttle is None:
            patch.append({"op": "remove", "path": "/throttle"})
        else:
            for field in ("rateLimit", "burstLimit"):
                patch.append({"op": "replace", "path": f"/throttle/{field}", "value": str(throttle[field])})
    quota = settings.quota()
    deployed_quota = usage_plan.get("quota")
    if deployed_quota:
        deployed_quota = {"limit": deployed_quota.get("limit"), "period": deployed_quota.get("period")}
    if quota != (deployed_quota or None):
        if quota is None:
            patch.append({"op": "remove", "path": "/quota"})
        else:
            patch.append({"op": "replace", "path": "/quota/limit", "value": str(quota["limit"])})
            patch.append({"op": "replace", "path": "/quota/period", "value": quota["period"]})
    return patch
