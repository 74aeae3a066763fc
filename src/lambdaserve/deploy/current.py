"""What AWS has now, for one model's stage: read with describe calls only, never a write.

The planner compares this with the desired state. Everything is read fresh on every
deploy, so a deploy that stopped half way is simply continued by the next one.

Besides the stage's own REST API, the reader looks for the one REST API per project that
lambdaserve made before APIs were per stage (``LegacyAPI``): the next deploy of a stage
moves that stage, with every model it served, to an API of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.names import APIGATEWAY_LOGS_ROLE, TAG_PROJECT, TAG_STAGE, Names

ROUTES = ("predict", "predict_proba", "explain")


@dataclass
class BucketState:
    tags: dict[str, str]
    versioning: bool
    encrypted: bool
    public_access_blocked: bool


@dataclass
class RepositoryState:
    uri: str
    scan_on_push: bool
    policy: dict[str, Any] | None  # the repository policy, parsed
    lifecycle: dict[str, Any] | None  # the lifecycle policy, parsed


@dataclass
class FunctionState:
    image_uri: str
    role: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    versions: dict[str, str]  # version description -> version number
    reserved_concurrency: int | None
    alias: dict[str, Any] | None
    alias_policy: set[str]  # statement ids of the stage alias's resource policy
    provisioned_concurrency: int | None
    architecture: str = "x86_64"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class APIState:
    id: str
    root_id: str
    resources: dict[str, dict[str, Any]]  # path ("/news/predict") -> resource, with resourceMethods
    stage: dict[str, Any] | None  # with its tags, variables and accessLogSettings
    stage_deployment: str | None  # description of the stage's deployment


@dataclass
class LegacyAPI:
    """The project's one REST API of earlier lambdaserve versions, where every stage carried every model.

    ``members`` are the models that the stage being deployed served there (those with a Lambda
    alias of the stage's name), with their routes; ``member_policies`` the statement ids on
    each of those aliases.
    """

    id: str
    stages: list[str]
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    member_policies: dict[str, set[str]] = field(default_factory=dict)

    def serves(self, stage: str) -> bool:
        return stage in self.stages


@dataclass
class Current:
    bucket: BucketState | None = None
    objects: dict[str, str] = field(default_factory=dict)  # bundle key -> S3 object version
    repository: RepositoryState | None = None
    image_tags: set[str] = field(default_factory=set)  # the wanted image tags ECR has
    role: dict[str, Any] | None = None
    role_managed_policies: set[str] = field(default_factory=set)
    role_inline_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_group: dict[str, Any] | None = None
    function: FunctionState | None = None
    unreserved_concurrency: int | None = None  # the account's; None where it cannot be read
    keep_warm_rule: dict[str, Any] | None = None
    keep_warm_targets: list[dict[str, Any]] = field(default_factory=list)
    api: APIState | None = None
    legacy_api: LegacyAPI | None = None
    usage_plan: dict[str, Any] | None = None
    usage_plan_keys: set[str] = field(default_factory=set)
    api_key: dict[str, Any] | None = None
    access_log_group: dict[str, Any] | None = None
    cloudwatch_role_arn: str | None = None  # API Gateway's account setting, read when access logs are on
    apigateway_logs_role: bool = False  # lambdaserve's role for that setting exists


def read_current(
    aws: AWS,
    names: Names,
    model: str,
    stage: str,
    bundle_keys: list[str],
    *,
    access_logs: bool = False,
) -> Current:
    """What AWS has for ``model``'s ``stage``; ``bundle_keys`` are the S3 keys its releases need."""
    current = Current()
    current.bucket = _bucket(aws, names.bucket)
    if current.bucket is not None:
        for key in bundle_keys:
            head = aws.find("s3", "head_object", Bucket=names.bucket, Key=key)
            if head is not None and head.get("VersionId"):
                current.objects[key] = head["VersionId"]
    current.repository = _repository(aws, names)
    role = aws.find("iam", "get_role", RoleName=names.role(model))
    if role is not None:
        current.role = role["Role"]
        attached = aws.call("iam", "list_attached_role_policies", RoleName=names.role(model))
        current.role_managed_policies = {p["PolicyArn"] for p in attached.get("AttachedPolicies", [])}
        for policy_name in (names.role_policy(), names.log_policy()):
            inline = aws.find("iam", "get_role_policy", RoleName=names.role(model), PolicyName=policy_name)
            if inline is not None:
                document = inline["PolicyDocument"]
                current.role_inline_policies[policy_name] = (
                    json.loads(document) if isinstance(document, str) else document
                )
    current.log_group = _log_group(aws, names.log_group(model))
    current.function = _function(aws, names, model, stage)
    settings = aws.find("lambda", "get_account_settings")  # moto has no such call: None there
    if settings is not None:
        current.unreserved_concurrency = settings.get("AccountLimit", {}).get(
            "UnreservedConcurrentExecutions"
        )
    rule = aws.find("events", "describe_rule", Name=names.keep_warm_rule(model, stage))
    if rule is not None:
        current.keep_warm_rule = rule
        targets = aws.call("events", "list_targets_by_rule", Rule=names.keep_warm_rule(model, stage))
        current.keep_warm_targets = targets.get("Targets", [])
    apis = [a for a in aws.pages("apigateway", "get_rest_apis", "items") if _tagged(a, names)]
    own = next((a for a in apis if a["name"] == names.rest_api(stage) and _stage_of(a) == stage), None)
    if own is not None:
        current.api = _api(aws, own["id"], stage)
    legacy = next((a for a in apis if a["name"] == names.legacy_rest_api and _stage_of(a) is None), None)
    if legacy is not None:
        current.legacy_api = _legacy_api(aws, names, legacy["id"], stage)
    current.usage_plan = next(
        (
            p
            for p in aws.pages("apigateway", "get_usage_plans", "items")
            if p["name"] == names.usage_plan(stage)
        ),
        None,
    )
    if current.usage_plan is not None:
        keys = aws.pages("apigateway", "get_usage_plan_keys", "items", usagePlanId=current.usage_plan["id"])
        current.usage_plan_keys = {k["id"] for k in keys}
    current.api_key = next(
        (
            k
            for k in aws.pages("apigateway", "get_api_keys", "items", nameQuery=names.api_key(stage))
            if k["name"] == names.api_key(stage)
        ),
        None,
    )
    current.access_log_group = _log_group(aws, names.access_log_group(stage))
    if access_logs:
        account = aws.find("apigateway", "get_account") or {}
        current.cloudwatch_role_arn = account.get("cloudwatchRoleArn")
        if not current.cloudwatch_role_arn:
            current.apigateway_logs_role = (
                aws.find("iam", "get_role", RoleName=APIGATEWAY_LOGS_ROLE) is not None
            )
    return current


def read_image_tags(aws: AWS, names: Names, uris: list[str]) -> set[str]:
    """Which of these images of the project's repository ECR has, by tag."""
    found: set[str] = set()
    prefix = names.image_uri("")
    for uri in uris:
        if not uri.startswith(prefix):
            continue
        tag = uri[len(prefix) :]
        images = aws.find(
            "ecr", "describe_images", repositoryName=names.repository, imageIds=[{"imageTag": tag}]
        )
        if images and images.get("imageDetails"):
            found.add(tag)
    return found


def _tagged(api: dict[str, Any], names: Names) -> bool:
    return bool(api.get("tags", {}).get(TAG_PROJECT) == names.project)


def _stage_of(api: dict[str, Any]) -> str | None:
    stage = api.get("tags", {}).get(TAG_STAGE)
    return str(stage) if stage is not None else None


def _bucket(aws: AWS, bucket: str) -> BucketState | None:
    if aws.find("s3", "head_bucket", Bucket=bucket) is None:
        return None
    tagging = aws.find("s3", "get_bucket_tagging", Bucket=bucket) or {}
    versioning = aws.call("s3", "get_bucket_versioning", Bucket=bucket)
    encryption = aws.find("s3", "get_bucket_encryption", Bucket=bucket)
    block = aws.find("s3", "get_public_access_block", Bucket=bucket)
    settings = (block or {}).get("PublicAccessBlockConfiguration", {})
    return BucketState(
        tags={t["Key"]: t["Value"] for t in tagging.get("TagSet", [])},
        versioning=versioning.get("Status") == "Enabled",
        encrypted=bool(encryption and encryption["ServerSideEncryptionConfiguration"].get("Rules")),
        public_access_blocked=bool(settings) and all(settings.values()),
    )


def _repository(aws: AWS, names: Names) -> RepositoryState | None:
    found = aws.find("ecr", "describe_repositories", repositoryNames=[names.repository])
    if not found:
        return None
    repository = found["repositories"][0]
    policy = aws.find("ecr", "get_repository_policy", repositoryName=names.repository)
    lifecycle = aws.find("ecr", "get_lifecycle_policy", repositoryName=names.repository)
    return RepositoryState(
        uri=repository["repositoryUri"],
        scan_on_push=bool(repository.get("imageScanningConfiguration", {}).get("scanOnPush")),
        policy=json.loads(policy["policyText"]) if policy else None,
        lifecycle=json.loads(lifecycle["lifecyclePolicyText"]) if lifecycle else None,
    )


def _log_group(aws: AWS, name: str) -> dict[str, Any] | None:
    groups = aws.call("logs", "describe_log_groups", logGroupNamePrefix=name)
    return next((g for g in groups.get("logGroups", []) if g["logGroupName"] == name), None)


def _function(aws: AWS, names: Names, model: str, stage: str) -> FunctionState | None:
    name = names.function(model)
    found = aws.find("lambda", "get_function", FunctionName=name)
    if found is None:
        return None
    config = found["Configuration"]
    versions = {
        v.get("Description", ""): v["Version"]
        for v in aws.pages("lambda", "list_versions_by_function", "Versions", FunctionName=name)
        if v["Version"] != "$LATEST"
    }
    concurrency = aws.call("lambda", "get_function_concurrency", FunctionName=name)
    alias = aws.find("lambda", "get_alias", FunctionName=name, Name=stage)
    policy: set[str] = set()
    provisioned = None
    if alias is not None:
        policy = _alias_policy(aws, name, stage)
        config_answer = aws.find(
            "lambda", "get_provisioned_concurrency_config", FunctionName=name, Qualifier=stage
        )
        if config_answer is not None:
            provisioned = config_answer.get("RequestedProvisionedConcurrentExecutions")
    return FunctionState(
        image_uri=found.get("Code", {}).get("ImageUri", ""),
        role=config["Role"],
        memory_mb=config["MemorySize"],
        timeout_s=config["Timeout"],
        environment=config.get("Environment", {}).get("Variables", {}),
        versions=versions,
        reserved_concurrency=concurrency.get("ReservedConcurrentExecutions"),
        alias={k: v for k, v in alias.items() if k != "ResponseMetadata"} if alias else None,
        alias_policy=policy,
        provisioned_concurrency=provisioned,
        architecture=(config.get("Architectures") or ["x86_64"])[0],
        tags=dict(found.get("Tags") or {}),
    )


def _alias_policy(aws: AWS, function: str, stage: str) -> set[str]:
    answer = aws.find("lambda", "get_policy", FunctionName=function, Qualifier=stage)
    if answer is None:
        return set()
    return {s.get("Sid", "") for s in json.loads(answer["Policy"]).get("Statement", [])}


def _api(aws: AWS, api_id: str, stage: str) -> APIState:
    resources = {
        r["path"]: r
        for r in aws.pages("apigateway", "get_resources", "items", restApiId=api_id, embed=["methods"])
    }
    found_stage = aws.find("apigateway", "get_stage", restApiId=api_id, stageName=stage)
    deployment = None
    if found_stage is not None and found_stage.get("deploymentId"):
        answer = aws.find(
            "apigateway", "get_deployment", restApiId=api_id, deploymentId=found_stage["deploymentId"]
        )
        deployment = (answer or {}).get("description")
    return APIState(
        id=api_id,
        root_id=resources["/"]["id"],
        resources=resources,
        stage=found_stage,
        stage_deployment=deployment,
    )


def _legacy_api(aws: AWS, names: Names, api_id: str, stage: str) -> LegacyAPI:
    stages = [s["stageName"] for s in aws.call("apigateway", "get_stages", restApiId=api_id).get("item", [])]
    legacy = LegacyAPI(id=api_id, stages=sorted(stages))
    if stage not in stages:
        return legacy
    paths = {r["path"] for r in aws.pages("apigateway", "get_resources", "items", restApiId=api_id)}
    for path in sorted(paths):
        if path.count("/") != 1 or path == "/":
            continue
        model = path[1:]
        function = names.function(model)
        # The stage served the model there only if the model has an alias of the stage's name.
        if aws.find("lambda", "get_alias", FunctionName=function, Name=stage) is None:
            continue
        legacy.members[model] = tuple(r for r in ROUTES if f"{path}/{r}" in paths)
        legacy.member_policies[model] = _alias_policy(aws, function, stage)
    return legacy
