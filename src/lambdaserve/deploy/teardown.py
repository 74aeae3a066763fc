"""``lambdaserve destroy``: find what a project (or one model) has on AWS by its tags, and plan its removal.

Every resource deploy creates carries ``lambdaserve:project`` (and ``lambdaserve:model``
where it belongs to one model). Resources are found service by service, by listing and
reading tags: the Resource Groups Tagging API would miss IAM roles and API Gateway keys,
and a name alone could match something lambdaserve did not make.

Removing one model removes its function (with its versions, aliases, provisioned
concurrency and permissions), role, log group, keep-warm rules, its routes in each stage's
API (the stage is redeployed without them; a stage left with no model goes, with its API,
usage plan and key) and its bundles in S3. When it was the last model, or with ``--all``,
every stage's API, usage plan, key and access log, the ECR repository and the bucket (every
object version) go as well. The project's one REST API of the old layout is handled the
same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lambdaserve.deploy.api_plan import stage_deployment
from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.names import TAG_MODEL, TAG_PROJECT, TAG_STAGE, Names
from lambdaserve.deploy.plan import Call, Plan


@dataclass
class APIFound:
    """One of the project's REST APIs: a stage's own (``stage``), or the old layout's one (None)."""

    id: str
    name: str
    stage: str | None
    stages: list[str]  # the API's deployed stages
    resources: list[dict[str, Any]]

    @property
    def models(self) -> set[str]:
        return {r["pathPart"] for r in self.resources if r.get("pathPart") and r["path"].count("/") == 1}

    def model_resources(self, model: str) -> list[tuple[str, str]]:
        """(id, path) of the model's resources, deepest first."""
        own = [r for r in self.resources if r["path"] == f"/{model}" or r["path"].startswith(f"/{model}/")]
        own.sort(key=lambda r: -r["path"].count("/"))
        return [(r["id"], r["path"]) for r in own]


@dataclass
class Inventory:
    """What carries the project's tags, per kind of resource."""

    functions: list[dict[str, Any]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    log_groups: list[str] = field(default_factory=list)
    access_logs: dict[str, str] = field(default_factory=dict)  # stage -> its access log group
    rules: list[str] = field(default_factory=list)
    apis: list[APIFound] = field(default_factory=list)
    usage_plans: list[dict[str, Any]] = field(default_factory=list)
    api_keys: list[dict[str, Any]] = field(default_factory=list)
    repository: str | None = None
    bucket: str | None = None
    whole_project: bool = False  # nothing of the project stays: remove its shared resources too


def _ours(tags: dict[str, str], project: str, model: str | None) -> bool:
    return tags.get(TAG_PROJECT) == project and (model is None or tags.get(TAG_MODEL) == model)


def find_resources(aws: AWS, names: Names, model: str | None = None) -> Inventory:
    """Everything of the project (of one model, when given) that carries lambdaserve's tags."""
    project = names.project
    found = Inventory()
    project_models = set()
    for function in aws.pages("lambda", "list_functions", "Functions"):
        tags = aws.call("lambda", "list_tags", Resource=function["FunctionArn"]).get("Tags", {})
        if _ours(tags, project, None):
            project_models.add(tags.get(TAG_MODEL))
        if _ours(tags, project, model):
            found.functions.append({"name": function["FunctionName"], "model": tags.get(TAG_MODEL)})
    found.whole_project = model is None or project_models <= {model}
    for role in aws.pages("iam", "list_roles", "Roles"):
        if not role["RoleName"].startswith("lambdaserve-"):
            continue
        listed = aws.call("iam", "list_role_tags", RoleName=role["RoleName"]).get("Tags", [])
        if _ours({t["Key"]: t["Value"] for t in listed}, project, model):
            found.roles.append(role["RoleName"])
    for group in aws.pages("logs", "describe_log_groups", "logGroups", logGroupNamePrefix="/aws/lambda/"):
        tags = aws.call("logs", "list_tags_log_group", logGroupName=group["logGroupName"]).get("tags", {})
        if _ours(tags, project, model):
            found.log_groups.append(group["logGroupName"])
    prefix = names.access_log_group("")
    for group in aws.pages("logs", "describe_log_groups", "logGroups", logGroupNamePrefix=prefix):
        tags = aws.call("logs", "list_tags_log_group", logGroupName=group["logGroupName"]).get("tags", {})
        if _ours(tags, project, None) and TAG_STAGE in tags:
            found.access_logs[tags[TAG_STAGE]] = group["logGroupName"]
    for rule in aws.pages("events", "list_rules", "Rules", NamePrefix=f"lambdaserve-{project}-"):
        listed = aws.call("events", "list_tags_for_resource", ResourceARN=rule["Arn"]).get("Tags", [])
        if _ours({t["Key"]: t["Value"] for t in listed}, project, model):
            found.rules.append(rule["Name"])
    for api in aws.pages("apigateway", "get_rest_apis", "items"):
        tags = api.get("tags", {})
        stage = tags.get(TAG_STAGE)
        wanted = names.rest_api(stage) if stage is not None else names.legacy_rest_api
        if api["name"] != wanted or not _ours(tags, project, None):
            continue
        resources = list(aws.pages("apigateway", "get_resources", "items", restApiId=api["id"]))
        stages = [s["stageName"] for s in aws.call("apigateway", "get_stages", restApiId=api["id"])["item"]]
        found.apis.append(APIFound(api["id"], api["name"], stage, sorted(stages), resources))
    if model is not None:
        found.whole_project = found.whole_project and all(api.models <= {model} for api in found.apis)
    found.usage_plans = [
        p
        for p in aws.pages("apigateway", "get_usage_plans", "items")
        if _ours(p.get("tags", {}), project, None)
    ]
    found.api_keys = [
        k for k in aws.pages("apigateway", "get_api_keys", "items") if _ours(k.get("tags", {}), project, None)
    ]
    if found.whole_project:
        repositories = aws.find("ecr", "describe_repositories", repositoryNames=[names.repository])
        if repositories:
            arn = repositories["repositories"][0]["repositoryArn"]
            listed = aws.call("ecr", "list_tags_for_resource", resourceArn=arn).get("tags", [])
            if _ours({t["Key"]: t["Value"] for t in listed}, project, None):
                found.repository = names.repository
    if aws.find("s3", "head_bucket", Bucket=names.bucket) is not None:
        tagging = aws.find("s3", "get_bucket_tagging", Bucket=names.bucket) or {}
        if _ours({t["Key"]: t["Value"] for t in tagging.get("TagSet", [])}, project, None):
            found.bucket = names.bucket
    return found


def plan_teardown(aws: AWS, names: Names, found: Inventory, model: str | None) -> Plan:
    """The calls that remove what ``found`` lists (object versions are listed here, at plan time)."""
    plan = Plan()
    whole = found.whole_project
    for rule in found.rules:
        targets = aws.call("events", "list_targets_by_rule", Rule=rule).get("Targets", [])
        if targets:
            ids = [t["Id"] for t in targets]
            plan.add(
                Call("events", "remove_targets", {"Rule": rule, "Ids": ids}, f"Remove the targets of {rule}")
            )
        plan.add(Call("events", "delete_rule", {"Name": rule}, f"Delete the rule {rule}"))
    # APIs first: a stage whose API goes takes its usage plan and key with it.
    gone_apis = [api for api in found.apis if whole or api.models <= {model}]
    for api in found.apis:
        if api in gone_apis or model not in api.models:
            continue
        for resource_id, path in api.model_resources(model or ""):
            plan.add(
                Call(
                    "apigateway",
                    "delete_resource",
                    {"restApiId": api.id, "resourceId": resource_id},
                    f"Remove {path} from the API {api.name}",
                )
            )
        for stage in api.stages:
            plan.add(
                stage_deployment(
                    api.id,
                    stage,
                    f"lambdaserve: without {model}",
                    f"Redeploy the stage {stage} without /{model}",
                )
            )
    gone_ids = {api.id for api in gone_apis}
    gone_keys: list[dict[str, Any]] = []
    gone_stages = {api.stage for api in gone_apis if api.stage is not None}
    for usage_plan in found.usage_plans:
        stages = [(s["apiId"], s["stage"]) for s in usage_plan.get("apiStages", [])]
        detached = [f"{api}:{stage}" for api, stage in stages if api in gone_ids]
        goes = (
            whole
            or usage_plan.get("tags", {}).get(TAG_STAGE) in gone_stages
            or (bool(stages) and len(detached) == len(stages))
        )
        if detached:
            # API Gateway refuses to delete an API that a usage plan still names.
            patch = [{"op": "remove", "path": "/apiStages", "value": value} for value in detached]
            plan.add(
                Call(
                    "apigateway",
                    "update_usage_plan",
                    {"usagePlanId": usage_plan["id"], "patchOperations": patch},
                    f"Detach the usage plan {usage_plan['name']} from the APIs that go",
                )
            )
        if goes:
            plan.add(
                Call(
                    "apigateway",
                    "delete_usage_plan",
                    {"usagePlanId": usage_plan["id"]},
                    f"Delete the usage plan {usage_plan['name']}",
                )
            )
            # The stage's key has the plan's name.
            gone_keys.extend(key for key in found.api_keys if key["name"] == usage_plan["name"])
    if whole:
        gone_keys = found.api_keys
    for key in gone_keys:
        plan.add(
            Call("apigateway", "delete_api_key", {"apiKey": key["id"]}, f"Delete the API key {key['name']}")
        )
    for api in gone_apis:
        what = f"the stage {api.stage}" if api.stage else f"its stages {', '.join(api.stages) or '(none)'}"
        plan.add(
            Call(
                "apigateway",
                "delete_rest_api",
                {"restApiId": api.id},
                f"Delete the REST API {api.name} and {what}",
            )
        )
    for function in found.functions:
        plan.add(
            Call(
                "lambda",
                "delete_function",
                {"FunctionName": function["name"]},
                f"Delete the function {function['name']} (its versions, aliases and permissions)",
            )
        )
    stage_logs = [
        group for stage, group in sorted(found.access_logs.items()) if whole or stage in gone_stages
    ]
    for group in [*found.log_groups, *stage_logs]:
        plan.add(Call("logs", "delete_log_group", {"logGroupName": group}, f"Delete the log group {group}"))
    for role in found.roles:
        attached = aws.call("iam", "list_attached_role_policies", RoleName=role).get("AttachedPolicies", [])
        for policy in attached:
            plan.add(
                Call(
                    "iam",
                    "detach_role_policy",
                    {"RoleName": role, "PolicyArn": policy["PolicyArn"]},
                    f"Detach {policy['PolicyName']} from {role}",
                )
            )
        for policy_name in aws.call("iam", "list_role_policies", RoleName=role).get("PolicyNames", []):
            plan.add(
                Call(
                    "iam",
                    "delete_role_policy",
                    {"RoleName": role, "PolicyName": policy_name},
                    f"Delete the policy {policy_name} of {role}",
                )
            )
        plan.add(Call("iam", "delete_role", {"RoleName": role}, f"Delete the role {role}"))
    if whole and found.repository:
        plan.add(
            Call(
                "ecr",
                "delete_repository",
                {"repositoryName": found.repository, "force": True},
                f"Delete the ECR repository {found.repository} and its images",
            )
        )
    if found.bucket:
        prefix = "" if whole else names.bundle_prefix(model or "")
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for v in aws.pages("s3", "list_object_versions", kind, Bucket=found.bucket, Prefix=prefix)
        ]
        for start in range(0, len(objects), 1000):  # DeleteObjects takes 1,000 keys at most
            chunk = objects[start : start + 1000]
            plan.add(
                Call(
                    "s3",
                    "delete_objects",
                    {"Bucket": found.bucket, "Delete": {"Objects": chunk, "Quiet": True}},
                    f"Delete {len(chunk)} object versions from {found.bucket}",
                )
            )
        if whole:
            plan.add(
                Call("s3", "delete_bucket", {"Bucket": found.bucket}, f"Delete the bucket {found.bucket}")
            )
    return plan
