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

import json
from typing import Any

from lambdaserve.deploy.api_plan import (
    access_log_arn,
    integration_uri,
    plan_api,
    plan_legacy_move,
    plan_permissions,
    plan_usage_plan,
)
from lambdaserve.deploy.current import Current
from lambdaserve.deploy.lambda_plan import (
    function_arn,
    plan_alias,
    plan_function,
    plan_keep_warm,
    version_description,
)
from lambdaserve.deploy.names import APIGATEWAY_LOGS_ROLE, Names
from lambdaserve.deploy.plan import Call, Plan, PushImage, Ref, Wait
from lambdaserve.deploy.spec import Desired

# Re-exported: the planner is where callers (and the CloudFormation export) look for these.
__all__ = [
    "access_log_arn",
    "function_arn",
    "integration_uri",
    "log_policy",
    "plan_deploy",
    "read_policy",
    "repository_policy",
    "version_description",
]

# Earlier lambdaserve versions attached this; its logs:* on every log group is more than a function needs.
BASIC_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
APIGATEWAY_LOGS_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
UNTAGGED_IMAGE_DAYS = 14
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
APIGATEWAY_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def plan_deploy(desired: Desired, current: Current) -> Plan:
    plan = Plan()
    names = desired.names
    _plan_bucket(plan, names, current)
    object_versions = _plan_bundles(plan, desired, current)
    _plan_image(plan, desired, current)
    role_arn = _plan_role(plan, desired, current)
    _plan_log_group(plan, desired, current)
    versions = plan_function(plan, desired, current, role_arn, object_versions)
    plan_alias(plan, desired, current, versions)
    plan_keep_warm(plan, desired, current)
    _plan_access_logs(plan, desired, current)
    api_id = plan_api(plan, desired, current)
    plan_permissions(plan, desired, current, api_id)
    plan_usage_plan(plan, desired, current, api_id)
    plan_legacy_move(plan, desired, current)
    return plan


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


def _plan_bundles(plan: Plan, desired: Desired, current: Current) -> dict[str, str | Ref]:
    """Upload what the releases' functions read (model files, reference statistics) where S3
    lacks it; S3 key -> its object version."""
    names = desired.names
    versions: dict[str, str | Ref] = {}
    for release in desired.releases():
        for key, file, what in release.objects(names):
            if key in versions:
                continue
            if key in current.objects:
                versions[key] = current.objects[key]
                continue
            output = f"upload-{release.version}" if what == "model" else f"upload-{what}-{release.version}"
            plan.add(
                Call(
                    "s3",
                    "put_object",
                    {
                        "Bucket": names.bucket,
                        "Key": key,
                        "Body": file,
                        "Metadata": {"sha256": release.sha256, "model-version": str(release.version)},
                    },
                    f"Upload {release.model} version {release.version}"
                    + (" (its reference statistics)" if what == "reference" else "")
                    + f" to s3://{names.bucket}/{key}",
                    output,
                )
            )
            versions[key] = Ref(output, ("VersionId",))
    return versions


def _plan_image(plan: Plan, desired: Desired, current: Current) -> None:
    names = desired.names
    ours = [r.image_uri for r in desired.releases() if r.image_uri.startswith(names.image_uri(""))]
    for uri in dict.fromkeys(r.image_uri for r in desired.releases()):
        if uri not in ours:
            plan.notes.append(f"The image {uri} is yours (--image-uri): it is used as it is.")
    if not ours:
        return
    repository = current.repository
    if repository is None:
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
    elif not repository.scan_on_push:
        plan.add(
            Call(
                "ecr",
                "put_image_scanning_configuration",
                {"repositoryName": names.repository, "imageScanningConfiguration": {"scanOnPush": True}},
                "Turn on scan on push",
            )
        )
    policy = repository_policy(names)
    if repository is None or repository.policy != policy:
        plan.add(
            Call(
                "ecr",
                "set_repository_policy",
                {"repositoryName": names.repository, "policyText": json.dumps(policy)},
                "Let the project's functions (and only they) pull from the repository",
            )
        )
    lifecycle = lifecycle_policy()
    if repository is None or repository.lifecycle != lifecycle:
        plan.add(
            Call(
                "ecr",
                "put_lifecycle_policy",
                {"repositoryName": names.repository, "lifecyclePolicyText": json.dumps(lifecycle)},
                f"Expire untagged images after {UNTAGGED_IMAGE_DAYS} days",
            )
        )
    for uri in dict.fromkeys(ours):
        tag = uri.rsplit(":", 1)[-1]
        if tag in current.image_tags:
            plan.notes.append(f"The image {tag} is in ECR already: nothing to build.")
        else:
            plan.add(PushImage(uri, f"Build the image {tag} and push it to ECR"))


def repository_policy(names: Names) -> dict[str, Any]:
    """Lambda pulls the image with the service's own identity: the repository must allow it."""
    functions = f"arn:aws:lambda:{names.region}:{names.account}:function:{names.project}-*"
    return {"Version": "2012-10-17", "Statement": [lambda_pull_statement(functions)]}


def lambda_pull_statement(functions: Any) -> dict[str, Any]:
    """Lambda may pull the repository's images, for the functions ``functions`` matches only."""
    return {
        "Sid": "LambdaECRImageRetrievalPolicy",
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"StringLike": {"aws:sourceArn": functions}},
    }


def lifecycle_policy() -> dict[str, Any]:
    """Tagged images are releases (rollback targets) and stay; untagged ones are leftovers."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": "lambdaserve: untagged images are never served",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": UNTAGGED_IMAGE_DAYS,
                },
                "action": {"type": "expire"},
            }
        ]
    }


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
    for name, policy in (
        (names.role_policy(), read_policy(names, model)),
        (names.log_policy(), log_policy(names, model)),
    ):
        if current.role_inline_policies.get(name) != policy:
            what = (
                f"read s3://{names.bucket}/{names.bundle_prefix(model)}"
                if name == names.role_policy()
                else f"write to {names.log_group(model)}"
            )
            plan.add(
                Call(
                    "iam",
                    "put_role_policy",
                    {"RoleName": role, "PolicyName": name, "PolicyDocument": json.dumps(policy)},
                    f"Let the function {what} and nothing else",
                )
            )
    if BASIC_EXECUTION_POLICY in current.role_managed_policies:
        plan.add(
            Call(
                "iam",
                "detach_role_policy",
                {"RoleName": role, "PolicyArn": BASIC_EXECUTION_POLICY},
                "Detach AWSLambdaBasicExecutionRole (logs on every group): the function writes only its own",
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


def log_policy(names: Names, model: str) -> dict[str, Any]:
    """The function writes its own log group's streams and nothing else (the group is made by deploy)."""
    group = f"arn:aws:logs:{names.region}:{names.account}:log-group:{names.log_group(model)}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{group}:*", f"{group}:log-stream:*"],
            }
        ],
    }


def _plan_log_group(plan: Plan, desired: Desired, current: Current) -> None:
    names, model = desired.names, desired.model
    retention = desired.function.log_retention_days
    plan_log_group(plan, names.log_group(model), names.tags(model), retention, current.log_group, "")


def plan_log_group(
    plan: Plan, group: str, tags: dict[str, str], retention: int, now: dict[str, Any] | None, what: str
) -> None:
    """A log group with its tags and retention; ``now`` is the group as AWS has it, if it does."""
    if now is None:
        plan.add(
            Call(
                "logs",
                "create_log_group",
                {"logGroupName": group, "tags": tags},
                f"Create the log group {group}{what}",
            )
        )
    if now is None or now.get("retentionInDays") != retention:
        plan.add(
            Call(
                "logs",
                "put_retention_policy",
                {"logGroupName": group, "retentionInDays": retention},
                f"Keep {group} {retention} days",
            )
        )


def _plan_access_logs(plan: Plan, desired: Desired, current: Current) -> None:
    """The stage's access log group, and API Gateway's account-wide role for writing to CloudWatch Logs."""
    if not desired.access_logs:
        return
    names, stage = desired.names, desired.stage
    retention = desired.function.log_retention_days
    group, now = names.access_log_group(stage), current.access_log_group
    plan_log_group(plan, group, names.tags(stage=stage), retention, now, " for the stage's access log")
    if current.cloudwatch_role_arn:
        return
    # API Gateway writes every API's logs of the region with one role set on the account; it is
    # shared by whatever else logs there, so it carries no project tag and destroy leaves it.
    role_arn = f"arn:aws:iam::{names.account}:role/{APIGATEWAY_LOGS_ROLE}"
    if current.apigateway_logs_role:
        plan.add(apigateway_account_role(names, role_arn))
        return
    plan.add(
        Call(
            "iam",
            "create_role",
            {
                "RoleName": APIGATEWAY_LOGS_ROLE,
                "AssumeRolePolicyDocument": json.dumps(APIGATEWAY_TRUST_POLICY),
                "Description": "lambdaserve: API Gateway writes access logs to CloudWatch Logs",
                "Tags": [{"Key": "lambdaserve:shared", "Value": "true"}],
            },
            f"Create the IAM role {APIGATEWAY_LOGS_ROLE} for API Gateway's logs (account-wide)",
        )
    )
    plan.add(
        Call(
            "iam",
            "attach_role_policy",
            {"RoleName": APIGATEWAY_LOGS_ROLE, "PolicyArn": APIGATEWAY_LOGS_POLICY},
            "Let it write to CloudWatch Logs (AmazonAPIGatewayPushToCloudWatchLogs)",
        )
    )
    plan.add(Wait("iam", "role_exists", {"RoleName": APIGATEWAY_LOGS_ROLE}, "Wait for the role"))
    plan.add(apigateway_account_role(names, role_arn))


def apigateway_account_role(names: Names, role_arn: str) -> Call:
    return Call(
        "apigateway",
        "update_account",
        {"patchOperations": [{"op": "replace", "path": "/cloudwatchRoleArn", "value": role_arn}]},
        f"Set API Gateway's CloudWatch Logs role of {names.region} (the account had none)",
    )
