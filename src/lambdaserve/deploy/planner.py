"""The planner: desired state + what AWS has -> the ordered calls that close the gap.

Pure: no AWS call is made here, so ``deploy --dry-run`` costs nothing and the same inputs
always give the same plan. Each resource is compared setting by setting and only what
differs is written; when nothing differs the plan is empty, so a second deploy with no
change makes no call that writes.

A new model version becomes a new S3 object (bundles are stored by content hash), a
new published Lambda version (its description names the model version, its content
hash and a hash of the function's settings, which is how a rerun recognises it) and an
alias update; the image is rebuilt only when the requirements or the runtime changed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lambdaserve.deploy.current import Current, FunctionState
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.plan import Call, Fmt, Plan, PushImage, Ref, Wait, fmt
from lambdaserve.deploy.spec import KEEP_WARM_SCHEDULE, Desired, Release

BASIC_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
WARM_EVENT = {"lambdaserve": "warm"}
APIGATEWAY_SID = "lambdaserve-apigateway-{api}"
KEEP_WARM_SID = "lambdaserve-keep-warm"

Value = str | Ref | Fmt


def plan_deploy(desired: Desired, current: Current) -> Plan:
    plan = Plan()
    names = desired.names
    _plan_bucket(plan, names, current)
    object_versions = _plan_bundles(plan, desired, current)
    _plan_image(plan, desired, current)
    role_arn = _plan_role(plan, desired, current)
    _plan_log_group(plan, desired, current)
    versions = _plan_function(plan, desired, current, role_arn, object_versions)
    _plan_alias(plan, desired, current, versions)
    _plan_keep_warm(plan, desired, current)
    api_id = _plan_api(plan, desired, current)
    _plan_permission(plan, desired, current, api_id)
    _plan_usage_plan(plan, desired, current, api_id)
    return plan


def function_arn(names: Names, model: str) -> str:
    return f"arn:aws:lambda:{names.region}:{names.account}:function:{names.function(model)}"


def integration_uri(names: Names, model: str) -> str:
    # One integration for every stage: the stage variable picks the alias of the stage's name.
    return (
        f"arn:aws:apigateway:{names.region}:lambda:path/2015-03-31/functions/"
        f"{function_arn(names, model)}:${{stageVariables.lambdaAlias}}/invocations"
    )


def version_description(desired: Desired, release: Release, role_arn: str) -> str:
    """Names the model version and the settings a published Lambda version froze."""
    settings = json.dumps(
        [release.image_uri, role_arn, desired.function.memory_mb, desired.function.timeout_s], sort_keys=True
    )
    return f"{release.description()} config:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def _plan_bucket(plan: Plan, names: Names, current: Current) -> None:
    bucket = names.bucket
    state = current.bucket
    if state is None:
        params: dict[str, Any] = {"Bucket": bucket}
        if names.region != "us-east-1":  # us-east-1 refuses a LocationConstraint naming itself
            params["CreateBucketConfiguration"] = {"LocationConstraint": names.region}
        plan.add(Call("s3", "create_bucket", params, f"Create the S3 bucket {bucket}"))
    if state is None or not state.versioning:
        plan.add(
            Call(
                "s3",
                "put_bucket_versioning",
                {"Bucket": bucket, "VersioningConfiguration": {"Status": "Enabled"}},
                "Turn on versioning (every model file keeps its object version)",
            )
        )
    if state is None or not state.encrypted:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        plan.add(
            Call(
                "s3",
                "put_bucket_encryption",
                {"Bucket": bucket, "ServerSideEncryptionConfiguration": {"Rules": [rule]}},
                "Turn on default encryption",
            )
        )
    if state is None or not state.public_access_blocked:
        block = dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        )
        plan.add(
            Call(
                "s3",
                "put_public_access_block",
                {"Bucket": bucket, "PublicAccessBlockConfiguration": block},
                "Block public access",
            )
        )
    tags = {**(state.tags if state else {}), **names.tags()}
    if state is None or state.tags != tags:
        tag_set = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        plan.add(
            Call(
                "s3",
                "put_bucket_tagging",
                {"Bucket": bucket, "Tagging": {"TagSet": tag_set}},
                "Tag the bucket",
            )
        )


def _plan_bundles(plan: Plan, desired: Desired, current: Current) -> dict[int, str | Ref]:
    names = desired.names
    versions: dict[int, str | Ref] = {}
    for release in desired.releases():
        key = names.bundle_key(release.model, release.sha256, release.suffix)
        if key in current.objects:
            versions[release.version] = current.objects[key]
            continue
        output = f"upload-{release.version}"
        plan.add(
            Call(
                "s3",
                "put_object",
                {
                    "Bucket": names.bucket,
                    "Key": key,
                    "Body": release.file,
                    "Metadata": {"sha256": release.sha256, "model-version": str(release.version)},
                },
                f"Upload {release.model} version {release.version} to s3://{names.bucket}/{key}",
                output,
            )
        )
        versions[release.version] = Ref(output, ("VersionId",))
    return versions


def _plan_image(plan: Plan, desired: Desired, current: Current) -> None:
    names = desired.names
    if not any(r.image_uri.startswith(names.image_uri("")) for r in desired.releases()):
        plan.notes.append(f"The image {desired.image_uri} is yours (--image-uri): it is used as it is.")
        return
    if current.repository is None:
        plan.add(
            Call(
                "ecr",
                "create_repository",
                {
                    "repositoryName": names.repository,
                    "imageScanningConfiguration": {"scanOnPush": True},
                    # Tags are content hashes: a tag never needs to move.
                    "imageTagMutability": "IMMUTABLE",
                    "tags": [{"Key": k, "Value": v} for k, v in names.tags().items()],
                },
                f"Create the ECR repository {names.repository} (scan on push)",
            )
        )
    elif not current.repository.get("imageScanningConfiguration", {}).get("scanOnPush"):
        plan.add(
            Call(
                "ecr",
                "put_image_scanning_configuration",
                {"repositoryName": names.repository, "imageScanningConfiguration": {"scanOnPush": True}},
                "Turn on scan on push",
            )
        )
    for uri in dict.fromkeys(r.image_uri for r in desired.releases()):
        tag = uri.rsplit(":", 1)[-1]
        if not uri.startswith(names.image_uri("")):
            plan.notes.append(f"The image {uri} is yours (--image-uri): it is used as it is.")
        elif tag in current.image_tags:
            plan.notes.append(f"The image {tag} is in ECR already: nothing to build.")
        else:
            plan.add(PushImage(uri, f"Build the image {tag} and push it to ECR"))


def _plan_role(plan: Plan, desired: Desired, current: Current) -> str:
    names, model = desired.names, desired.model
    role = names.role(model)
    arn = f"arn:aws:iam::{names.account}:role/{role}"
    if current.role is None:
        plan.add(
            Call(
                "iam",
                "create_role",
                {
                    "RoleName": role,
                    "AssumeRolePolicyDocument": json.dumps(TRUST_POLICY),
                    "Description": f"lambdaserve: the function of model {model}",
                    "Tags": [{"Key": k, "Value": v} for k, v in names.tags(model).items()],
                },
                f"Create the IAM role {role}",
            )
        )
        plan.add(Wait("iam", "role_exists", {"RoleName": role}, "Wait for the role"))
    if BASIC_EXECUTION_POLICY not in current.role_managed_policies:
        plan.add(
            Call(
                "iam",
                "attach_role_policy",
                {"RoleName": role, "PolicyArn": BASIC_EXECUTION_POLICY},
                "Let the function write its logs (AWSLambdaBasicExecutionRole)",
            )
        )
    policy = read_policy(names, model)
    if current.role_inline_policy != policy:
        plan.add(
            Call(
                "iam",
                "put_role_policy",
                {"RoleName": role, "PolicyName": names.role_policy(), "PolicyDocument": json.dumps(policy)},
                f"Let the function read s3://{names.bucket}/{names.bundle_prefix(model)} and nothing else",
            )
        )
    return arn


def read_policy(names: Names, model: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": f"arn:aws:s3:::{names.bucket}/{names.bundle_prefix(model)}*",
            }
        ],
    }


def _plan_log_group(plan: Plan, desired: Desired, current: Current) -> None:
    names, model = desired.names, desired.model
    group = names.log_group(model)
    if current.log_group is None:
        plan.add(
            Call(
                "logs",
                "create_log_group",
                {"logGroupName": group, "tags": names.tags(model)},
                f"Create the log group {group}",
            )
        )
    if (
        current.log_group is None
        or current.log_group.get("retentionInDays") != desired.function.log_retention_days
    ):
        plan.add(
            Call(
                "logs",
                "put_retention_policy",
                {"logGroupName": group, "retentionInDays": desired.function.log_retention_days},
                f"Keep logs {desired.function.log_retention_days} days",
            )
        )


def _plan_function(
    plan: Plan, desired: Desired, current: Current, role_arn: str, object_versions: dict[int, str | Ref]
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
        key = names.bundle_key(model, release.sha256, release.suffix)
        environment = _environment(release, names.bucket, key, object_versions[release.version])
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
                        "Architectures": ["x86_64"],
                        "Description": f"lambdaserve model {model}",
                        "Tags": names.tags(model),
                    },
                    f"Create the function {name} ({settings.memory_mb} MB, {settings.timeout_s} s)",
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
            if latest["image"] != release.image_uri:
                plan.add(
                    Call(
                        "lambda",
                        "update_function_code",
                        {"FunctionName": name, "ImageUri": release.image_uri},
                        f"Point the function at the image {release.image_uri.rsplit(':', 1)[-1]}",
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


def _environment(release: Release, bucket: str, key: str, object_version: str | Ref) -> dict[str, Value]:
    variables: dict[str, Value] = dict(release.environment())
    location = f"s3://{bucket}/{key}?versionId="
    # The object may be uploaded by this plan: then its version is known only when the upload answers.
    variables["LAMBDASERVE_MODEL"] = (
        location + object_version
        if isinstance(object_version, str)
        else Fmt(location + "{v}", (("v", object_version),))
    )
    return dict(sorted(variables.items()))


def _plan_alias(plan: Plan, desired: Desired, current: Current, versions: dict[int, Value]) -> None:
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


def _plan_keep_warm(plan: Plan, desired: Desired, current: Current) -> None:
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


def _plan_api(plan: Plan, desired: Desired, current: Current) -> Value:
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
        plan.add(
            Call(
                "apigateway",
                "create_deployment",
                {
                    "restApiId": api_id,
                    "stageName": stage,
                    "description": snapshot,
                    "variables": {"lambdaAlias": stage},
                },
                f"Deploy the API to the stage {stage}",
            )
        )
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


def _plan_permission(plan: Plan, desired: Desired, current: Current, api_id: Value) -> None:
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


def _plan_usage_plan(plan: Plan, desired: Desired, current: Current, api_id: Value) -> None:
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
    settings, stage = desired.plan, desired.stage
    patch: list[dict[str, Any]] = []
    stages = {(s.get("apiId"), s.get("stage")) for s in usage_plan.get("apiStages", [])}
    if (api_id, stage) not in stages:
        patch.append({"op": "add", "path": "/apiStages", "value": Fmt("{api}:" + stage, (("api", api_id),))
                      if isinstance(api_id, Ref) else f"{api_id}:{stage}"})  # fmt: skip
    throttle, now_throttle = settings.throttle(), usage_plan.get("throttle")
    if throttle != (now_throttle and {"rateLimit": float(now_throttle.get("rateLimit", 0)),
                                      "burstLimit": int(now_throttle.get("burstLimit", 0))}):  # fmt: skip
        if throttle is None:
            patch.append({"op": "remove", "path": "/throttle"})
        else:
            patch.append(
                {"op": "replace", "path": "/throttle/rateLimit", "value": str(throttle["rateLimit"])}
            )
            patch.append(
                {"op": "replace", "path": "/throttle/burstLimit", "value": str(throttle["burstLimit"])}
            )
    quota, now_quota = settings.quota(), usage_plan.get("quota")
    if quota != (now_quota and {"limit": now_quota.get("limit"), "period": now_quota.get("period")}):
        if quota is None:
            patch.append({"op": "remove", "path": "/quota"})
        else:
            patch.append({"op": "replace", "path": "/quota/limit", "value": str(quota["limit"])})
            patch.append({"op": "replace", "path": "/quota/period", "value": quota["period"]})
    return patch
