"""The planner's API Gateway part: the stage's REST API, its routes and deployment, the usage plan, the key.

Pure, as the rest of the planner. Each stage has a REST API of its own, holding the routes
of the models deployed to that stage and nothing else: a model that is not deployed to a
stage gets API Gateway's 403 ``Missing Authentication Token`` there, as on the local
gateway, and one model's deploy never touches another stage. Each method integrates with
the alias of the stage's name. A stage serves a snapshot (deployment) of its API, made
again only when the routes change.

Earlier lambdaserve versions made one REST API per project, whose every stage carried
every model. The first deploy of a stage moves it: the stage's new API gets the routes of
every model the stage served there, the usage plan (and so the key callers hold) is moved
to it, and only then is the stage removed from the old API, which goes when its last stage
has moved.
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
from lambdaserve.runtime.capture import STAGE_VARIABLE as CAPTURE_VARIABLE

APIGATEWAY_SID = "lambdaserve-apigateway-{api}"
# The access log's fields (API Gateway's $context variables), one JSON object per request.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "apiKeyId": "$context.identity.apiKeyId",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "responseLatency": "$context.responseLatency",
        "errorMessage": "$context.error.message",
    },
    separators=(",", ":"),
)


def integration_uri(names: Names, model: str, stage: str) -> str:
    """The method's integration: the model's alias of the stage's name."""
    return (
        f"arn:aws:apigateway:{names.region}:lambda:path/2015-03-31/functions/"
        f"{function_arn(names, model)}:{stage}/invocations"
    )


def stage_members(desired: Desired, current: Current) -> dict[str, tuple[str, ...]]:
    """The models whose routes the stage's API must hold: this one, and on a move, every model it served."""
    members = {desired.model: desired.routes}
    legacy = current.legacy_api
    # Until the old API's stage is gone (a move cut short is finished by the next run).
    if legacy is not None and legacy.serves(desired.stage):
        for model, routes in legacy.members.items():
            members.setdefault(model, routes)
    return dict(sorted(members.items()))


def plan_api(plan: Plan, desired: Desired, current: Current) -> Value:
    names, stage = desired.names, desired.stage
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
                    "name": names.rest_api(stage),
                    "description": f"lambdaserve project {names.project}, stage {stage}",
                    "endpointConfiguration": {"types": ["REGIONAL"]},
                    "apiKeySource": "HEADER",
                    "tags": names.tags(stage=stage),
                },
                f"Create the REST API {names.rest_api(stage)}",
                "api",
            )
        )
        api_id, parent = Ref("api", ("id",)), Ref("api", ("rootResourceId",))
        resources: dict[str, dict[str, Any]] = {}
        changed = True
    else:
        api_id, parent, resources = api.id, api.root_id, api.resources
    paths = {path: resource for path, resource in resources.items() if path.count("/") == 2}
    wanted: dict[str, str] = {}
    for model, routes in stage_members(desired, current).items():
        uri = integration_uri(names, model, stage)
        changed |= _plan_routes(plan, api_id, parent, resources, model, routes, uri)
        wanted.update({f"/{model}/{route}": uri for route in routes})
    # A stage serves a snapshot (deployment) of the API: a new one is made when the routes change.
    served = {path: _uri(resource) for path, resource in paths.items()} | wanted
    digest = hashlib.sha256(json.dumps(sorted(served.items())).encode()).hexdigest()[:16]
    snapshot = f"lambdaserve routes {digest}"
    stage_state = api.stage if api else None
    if stage_state is None or changed or (api is not None and api.stage_deployment != snapshot):
        plan.add(stage_deployment(api_id, stage, snapshot, f"Deploy the API to the stage {stage}"))
    _plan_stage_settings(plan, desired, current, api_id)
    return api_id


def _uri(resource: dict[str, Any]) -> str:
    method = resource.get("resourceMethods", {}).get("POST", {})
    return str(method.get("methodIntegration", {}).get("uri", ""))


def _plan_routes(
    plan: Plan,
    api_id: Value,
    parent: Value,
    resources: dict[str, dict[str, Any]],
    model: str,
    routes: tuple[str, ...],
    uri: str,
) -> bool:
    """Resources, methods and integrations for one model's routes; whether any changed."""
    changed = False
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
    for route in routes:
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
        where = {"restApiId": api_id, "resourceId": resource_id, "httpMethod": "POST"}
        if not method:
            changed = True
            plan.add(
                Call(
                    "apigateway",
                    "put_method",
                    {**where, "authorizationType": "NONE", "apiKeyRequired": True},
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
                    {**where, "patchOperations": patch},
                    f"Require an API key on POST {path}",
                )
            )
        integration = method.get("methodIntegration", {})
        if integration.get("type") != "AWS_PROXY" or integration.get("uri") != uri:
            changed = True
            plan.add(
                Call(
                    "apigateway",
                    "put_integration",
                    {**where, "type": "AWS_PROXY", "integrationHttpMethod": "POST", "uri": uri},
                    f"Send POST {path} to {model}'s alias of the stage (Lambda proxy)",
                )
            )
    return changed


def stage_deployment(api_id: Value, stage: str, description: str, label: str) -> Call:
    """A new snapshot of the API, served by ``stage``."""
    return Call(
        "apigateway",
        "create_deployment",
        {"restApiId": api_id, "stageName": stage, "description": description},
        label,
    )


def stage_arn(names: Names, api_id: Value, stage: str) -> Value:
    template = f"arn:aws:apigateway:{names.region}::/restapis/{{api}}/stages/{stage}"
    return fmt(template, api=api_id) if isinstance(api_id, Ref) else template.format(api=api_id)


def access_log_arn(names: Names, stage: str) -> str:
    return f"arn:aws:logs:{names.region}:{names.account}:log-group:{names.access_log_group(stage)}"


def capture_value(rate: float) -> str:
    """A capture rate as the stage variable holds it: "0.1"."""
    return f"{rate:g}"


def _plan_capture(plan: Plan, desired: Desired, stage_state: dict[str, Any], api_id: Value) -> None:
    """The stage variable ``lambdaserveCapture``: a stage update, effective at once, no redeploy."""
    if desired.capture is None:
        return
    stage = desired.stage
    deployed = (stage_state.get("variables") or {}).get(CAPTURE_VARIABLE)
    where = {"restApiId": api_id, "stageName": stage}
    path = f"/variables/{CAPTURE_VARIABLE}"
    if desired.capture > 0 and deployed != capture_value(desired.capture):
        patch = [{"op": "replace", "path": path, "value": capture_value(desired.capture)}]
        plan.add(
            Call(
                "apigateway",
                "update_stage",
                {**where, "patchOperations": patch},
                f"Capture {desired.capture * 100:g}% of the stage's requests (stage variable "
                f"{CAPTURE_VARIABLE}: records in the functions' logs)",
            )
        )
    elif desired.capture <= 0 and deployed is not None:
        patch = [{"op": "remove", "path": path}]
        plan.add(
            Call(
                "apigateway",
                "update_stage",
                {**where, "patchOperations": patch},
                f"Stop capturing the stage's requests (remove the stage variable {CAPTURE_VARIABLE})",
            )
        )


def _plan_stage_settings(plan: Plan, desired: Desired, current: Current, api_id: Value) -> None:
    """The stage's tags, its capture rate, and its access log."""
    names, stage = desired.names, desired.stage
    stage_state = (current.api.stage if current.api else None) or {}
    tags = names.tags(stage=stage)
    if any(stage_state.get("tags", {}).get(k) != v for k, v in tags.items()):
        plan.add(
            Call(
                "apigateway",
                "tag_resource",
                {"resourceArn": stage_arn(names, api_id, stage), "tags": tags},
                f"Tag the stage {stage}",
            )
        )
    _plan_capture(plan, desired, stage_state, api_id)
    settings = stage_state.get("accessLogSettings") or {}
    destination = access_log_arn(names, stage)
    if desired.access_logs and (
        settings.get("destinationArn") != destination or settings.get("format") != ACCESS_LOG_FORMAT
    ):
        patch = [
            {"op": "replace", "path": "/accessLogSettings/destinationArn", "value": destination},
            {"op": "replace", "path": "/accessLogSettings/format", "value": ACCESS_LOG_FORMAT},
        ]
        plan.add(
            Call(
                "apigateway",
                "update_stage",
                {"restApiId": api_id, "stageName": stage, "patchOperations": patch},
                f"Write the stage's access log to {names.access_log_group(stage)}",
            )
        )
    elif not desired.access_logs and settings:
        patch = [{"op": "remove", "path": "/accessLogSettings"}]
        plan.add(
            Call(
                "apigateway",
                "update_stage",
                {"restApiId": api_id, "stageName": stage, "patchOperations": patch},
                "Stop the stage's access log (its log group is kept)",
            )
        )


def plan_permissions(plan: Plan, desired: Desired, current: Current, api_id: Value) -> None:
    """Let the stage's API invoke each member's alias of the stage, and nothing else invoke it through it."""
    names, stage = desired.names, desired.stage
    for model in stage_members(desired, current):
        if model == desired.model:
            policy = current.function.alias_policy if current.function else set()
        else:
            policy = current.legacy_api.member_policies.get(model, set()) if current.legacy_api else set()
        if isinstance(api_id, str) and APIGATEWAY_SID.format(api=api_id) in policy:
            continue
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
                f"Let the API of {stage} invoke {model}'s alias {stage} (and nothing else may)",
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
            "tags": names.tags(stage=stage),
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
        patch = _usage_plan_patch(usage_plan, desired, current, api_id)
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
                {"name": names.api_key(stage), "enabled": True, "tags": names.tags(stage=stage)},
                f"Create the API key {names.api_key(stage)} (its value is shown once)",
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


def _usage_plan_patch(
    usage_plan: dict[str, Any], desired: Desired, current: Current, api_id: Value
) -> list[dict[str, Any]]:
    """PATCH operations that bring a usage plan to the wanted stage, throttle and quota."""
    settings, stage = desired.plan, desired.stage
    patch: list[dict[str, Any]] = []
    stages = {(s.get("apiId"), s.get("stage")) for s in usage_plan.get("apiStages", [])}
    if (api_id, stage) not in stages:
        value = Fmt("{api}:" + stage, (("api", api_id),)) if isinstance(api_id, Ref) else f"{api_id}:{stage}"
        patch.append({"op": "add", "path": "/apiStages", "value": value})
    legacy = current.legacy_api
    if legacy is not None and (legacy.id, stage) in stages:
        # The key callers hold moves with the plan: it now opens the stage's own API.
        patch.append({"op": "remove", "path": "/apiStages", "value": f"{legacy.id}:{stage}"})
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


def plan_legacy_move(plan: Plan, desired: Desired, current: Current) -> None:
    """Take the stage off the project's old one-API layout, once its own API serves it."""
    legacy, stage = current.legacy_api, desired.stage
    if legacy is None or not legacy.serves(stage):
        return
    names = desired.names
    sid = APIGATEWAY_SID.format(api=legacy.id)
    for model, policy in sorted(legacy.member_policies.items()):
        if sid in policy:
            plan.add(
                Call(
                    "lambda",
                    "remove_permission",
                    {"FunctionName": names.function(model), "Qualifier": stage, "StatementId": sid},
                    f"Remove the old API's permission on {model}'s alias {stage}",
                )
            )
    plan.add(
        Call(
            "apigateway",
            "delete_stage",
            {"restApiId": legacy.id, "stageName": stage},
            f"Remove the stage {stage} from the old one-API layout ({names.legacy_rest_api})",
        )
    )
    if legacy.stages == [stage]:
        plan.add(
            Call(
                "apigateway",
                "delete_rest_api",
                {"restApiId": legacy.id},
                f"Delete the old REST API {names.legacy_rest_api}: every stage has an API of its own now",
            )
        )
    plan.notes.append(
        f"The stage {stage} moves from the project's one REST API ({legacy.id}) to its own, with "
        f"{', '.join(legacy.members) or 'no model'} from there: its URL changes (printed at the end); "
        "the API key and usage plan stay the same."
    )
