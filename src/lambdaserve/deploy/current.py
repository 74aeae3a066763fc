"""What AWS has now, for one model's stage: read with describe calls only, never a write.

The planner compares this with the desired state. Everything is read fresh on every
deploy, so a deploy that stopped half way is simply continued by the next one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.spec import Desired


@dataclass
class BucketState:
    tags: dict[str, str]
    versioning: bool
    encrypted: bool
    public_access_blocked: bool


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


@dataclass
class APIState:
    id: str
    root_id: str
    resources: dict[str, dict[str, Any]]  # path ("/news/predict") -> resource, with resourceMethods
    stage: dict[str, Any] | None
    stage_deployment: str | None  # description of the stage's deployment


@dataclass
class Current:
    bucket: BucketState | None = None
    objects: dict[str, str] = field(default_factory=dict)  # bundle key -> S3 object version
    repository: dict[str, Any] | None = None
    image_tags: set[str] = field(default_factory=set)  # the wanted image tags ECR has
    role: dict[str, Any] | None = None
    role_managed_policies: set[str] = field(default_factory=set)
    role_inline_policy: dict[str, Any] | None = None
    log_group: dict[str, Any] | None = None
    function: FunctionState | None = None
    keep_warm_rule: dict[str, Any] | None = None
    keep_warm_targets: list[dict[str, Any]] = field(default_factory=list)
    api: APIState | None = None
    usage_plan: dict[str, Any] | None = None
    usage_plan_keys: set[str] = field(default_factory=set)
    api_key: dict[str, Any] | None = None


def read_current(aws: AWS, desired: Desired) -> Current:
    names, model, stage = desired.names, desired.model, desired.stage
    current = Current()
    current.bucket = _bucket(aws, names.bucket)
    if current.bucket is not None:
        for release in desired.releases():
            key = names.bundle_key(model, release.sha256, release.suffix)
            head = aws.find("s3", "head_object", Bucket=names.bucket, Key=key)
            if head is not None and head.get("VersionId"):
                current.objects[key] = head["VersionId"]
    repositories = aws.find("ecr", "describe_repositories", repositoryNames=[names.repository])
    if repositories:
        current.repository = repositories["repositories"][0]
        for release in desired.releases():
            tag = release.image_uri.rsplit(":", 1)[-1]
            if release.image_uri.startswith(current.repository["repositoryUri"] + ":"):
                images = aws.find(
                    "ecr", "describe_images", repositoryName=names.repository, imageIds=[{"imageTag": tag}]
                )
                if images and images.get("imageDetails"):
                    current.image_tags.add(tag)
    role = aws.find("iam", "get_role", RoleName=names.role(model))
    if role is not None:
        current.role = role["Role"]
        attached = aws.call("iam", "list_attached_role_policies", RoleName=names.role(model))
        current.role_managed_policies = {p["PolicyArn"] for p in attached.get("AttachedPolicies", [])}
        inline = aws.find(
            "iam", "get_role_policy", RoleName=names.role(model), PolicyName=names.role_policy()
        )
        if inline is not None:
            document = inline["PolicyDocument"]
            current.role_inline_policy = json.loads(document) if isinstance(document, str) else document
    groups = aws.call("logs", "describe_log_groups", logGroupNamePrefix=names.log_group(model))
    current.log_group = next(
        (g for g in groups.get("logGroups", []) if g["logGroupName"] == names.log_group(model)), None
    )
    current.function = _function(aws, names, model, stage)
    rule = aws.find("events", "describe_rule", Name=names.keep_warm_rule(model, stage))
    if rule is not None:
        current.keep_warm_rule = rule
        targets = aws.call("events", "list_targets_by_rule", Rule=names.keep_warm_rule(model, stage))
        current.keep_warm_targets = targets.get("Targets", [])
    current.api = _api(aws, names, stage)
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
            for k in aws.pages(
                "apigateway", "get_api_keys", "items", nameQuery=names.api_key(stage), includeValues=True
            )
            if k["name"] == names.api_key(stage)
        ),
        None,
    )
    return current


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
        answer = aws.find("lambda", "get_policy", FunctionName=name, Qualifier=stage)
        if answer is not None:
            policy = {s.get("Sid", "") for s in json.loads(answer["Policy"]).get("Statement", [])}
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
    )


def _api(aws: AWS, names: Names, stage: str) -> APIState | None:
    api = next(
        (a for a in aws.pages("apigateway", "get_rest_apis", "items") if a["name"] == names.rest_api), None
    )
    if api is None:
        return None
    resources = {
        r["path"]: r
        for r in aws.pages("apigateway", "get_resources", "items", restApiId=api["id"], embed=["methods"])
    }
    found_stage = aws.find("apigateway", "get_stage", restApiId=api["id"], stageName=stage)
    deployment = None
    if found_stage is not None and found_stage.get("deploymentId"):
        answer = aws.find(
            "apigateway", "get_deployment", restApiId=api["id"], deploymentId=found_stage["deploymentId"]
        )
        deployment = (answer or {}).get("description")
    return APIState(
        id=api["id"],
        root_id=resources["/"]["id"],
        resources=resources,
        stage=found_stage,
        stage_deployment=deployment,
    )
