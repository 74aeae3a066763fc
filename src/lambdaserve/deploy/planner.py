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

from lambdaserve.deploy.api_plan import integration_uri, plan_api, plan_permission, plan_usage_plan
from lambdaserve.deploy.current import Current
from lambdaserve.deploy.lambda_plan import (
    function_arn,
    plan_alias,
    plan_function,
    plan_keep_warm,
    version_description,
)
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.plan import Call, Plan, PushImage, Ref, Wait
from lambdaserve.deploy.spec import Desired

# Re-exported: the planner is where callers (and the CloudFormation export) look for these.
__all__ = ["function_arn", "integration_uri", "plan_deploy", "read_policy", "version_description"]

BASIC_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
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
    api_id = plan_api(plan, desired, current)
    plan_permission(plan, desired, current, api_id)
    plan_usage_plan(plan, desired, current, api_id)
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
