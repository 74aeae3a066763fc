"""The IAM permissions the identity running ``deploy``, ``destroy``, ``status`` and ``logs --remote`` needs.

``iam_action`` names the IAM action behind each boto3 operation the engine calls (where it
is not simply the operation's name), and ``IMPLIED`` the actions AWS checks on top of it
(creating with tags needs the tagging action; creating a function from an image needs the
image's pull actions and ``iam:PassRole``). ``deployer_policy`` is the least-privilege
policy, scoped to the project's resource names; a test checks that it grants every action
the engine's source can call and every call a deploy, promote and destroy made.

What cannot be scoped: API Gateway's ids are made by AWS, so its actions cover the
region's REST APIs, usage plans and keys; a few listings and ECR's login token are
account-wide by AWS's design.
"""

from __future__ import annotations

import re
from typing import Any

from lambdaserve.deploy.names import APIGATEWAY_LOGS_ROLE

# IAM action names that are not the operation's name.
_RENAMED = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "PutPublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("s3", "PutBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("s3", "DeleteObjects"): "s3:DeleteObjectVersion",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
}
# API Gateway's management actions are HTTP verbs on resource paths.
_APIGATEWAY_VERBS = {
    "create": "POST",
    "put": "PUT",
    "tag": "PUT",
    "update": "PATCH",
    "delete": "DELETE",
    "untag": "DELETE",
}
# Waiters poll a describe call.
_WAITERS = {
    ("lambda", "function_active_v2"): "GetFunction",
    ("lambda", "function_updated_v2"): "GetFunction",
    ("iam", "role_exists"): "GetRole",
}
# What AWS checks beyond the operation's own action.
IMAGE_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
IMPLIED: dict[tuple[str, str], tuple[str, ...]] = {
    ("iam", "create_role"): ("iam:TagRole",),
    ("lambda", "create_function"): ("lambda:TagResource", "iam:PassRole", *IMAGE_PULL),
    ("lambda", "update_function_code"): IMAGE_PULL,
    ("lambda", "update_function_configuration"): ("iam:PassRole",),
    ("logs", "create_log_group"): ("logs:TagResource", "logs:TagLogGroup"),
    ("ecr", "create_repository"): ("ecr:TagResource",),
    ("events", "put_rule"): ("events:TagResource",),
    ("apigateway", "update_account"): ("iam:PassRole",),
}
# Pushing an image goes through the builder, not boto3: these are its calls to ECR.
PUSH_ACTIONS = (
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
)
# Allowed to every identity, whatever its policies say.
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}


def pascal(operation: str) -> str:
    return "".join(part.title() for part in operation.split("_")) if "_" in operation else operation


def iam_action(service: str, operation: str) -> str:
    """The IAM action that allows ``operation`` (snake_case, PascalCase, or a waiter) of ``service``."""
    if (service, operation) in _WAITERS:
        operation = _WAITERS[(service, operation)]
    if service == "apigateway":
        verb = re.sub(r"([a-z])([A-Z])", r"\1_\2", operation).lower().split("_")[0]
        return f"apigateway:{_APIGATEWAY_VERBS.get(verb, 'GET')}"
    action = pascal(operation)
    return _RENAMED.get((service, action), f"{service}:{action}")


def actions_for(service: str, operation: str) -> tuple[str, ...]:
    """Every action AWS checks for one call."""
    snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", operation).lower()
    return (iam_action(service, operation), *IMPLIED.get((service, snake), ()))


def deployer_policy(project: str, region: str = "*", account: str = "*") -> dict[str, Any]:
    """The least-privilege IAM policy for deploying, inspecting and destroying ``project``."""
    lambda_arn = f"arn:aws:lambda:{region}:{account}"
    logs_arn = f"arn:aws:logs:{region}:{account}:log-group"
    roles = f"arn:aws:iam::{account}:role/lambdaserve-{project}-*"
    apigateway = f"arn:aws:apigateway:{region}::"

    def statement(sid: str, actions: list[str], resources: list[str], **condition: Any) -> dict[str, Any]:
        found: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Action": sorted(set(actions)),
            "Resource": resources if len(resources) > 1 else resources[0],
        }
        if condition:
            found["Condition"] = condition
        return found

    return {
        "Version": "2012-10-17",
        "Statement": [
            statement(
                "AccountWideListingsAndLogin",
                [
                    "ecr:GetAuthorizationToken",
                    "lambda:ListFunctions",
                    "lambda:GetAccountSettings",
                    "iam:ListRoles",
                    "logs:DescribeLogGroups",
                    "events:ListRules",
                ],
                ["*"],
            ),
            statement(
                "ModelBucket",
                [
                    "s3:CreateBucket",
                    "s3:ListBucket",
                    "s3:ListBucketVersions",
                    "s3:GetBucketVersioning",
                    "s3:PutBucketVersioning",
                    "s3:GetEncryptionConfiguration",
                    "s3:PutEncryptionConfiguration",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:PutBucketPublicAccessBlock",
                    "s3:GetBucketTagging",
                    "s3:PutBucketTagging",
                    "s3:DeleteBucket",
                ],
                [f"arn:aws:s3:::lambdaserve-{project}-*"],
            ),
            statement(
                "ModelFiles",
                ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObjectVersion"],
                [f"arn:aws:s3:::lambdaserve-{project}-*/*"],
            ),
            statement(
                "ImageRepository",
                [
                    "ecr:CreateRepository",
                    "ecr:DescribeRepositories",
                    "ecr:DescribeImages",
                    "ecr:PutImageScanningConfiguration",
                    "ecr:GetRepositoryPolicy",
                    "ecr:SetRepositoryPolicy",
                    "ecr:GetLifecyclePolicy",
                    "ecr:PutLifecyclePolicy",
                    "ecr:ListTagsForResource",
                    "ecr:TagResource",
                    "ecr:DeleteRepository",
                    "ecr:GetDownloadUrlForLayer",
                    *PUSH_ACTIONS[1:],
                ],
                [f"arn:aws:ecr:{region}:{account}:repository/lambdaserve-{project}"],
            ),
            statement(
                "FunctionRoles",
                [
                    "iam:CreateRole",
                    "iam:GetRole",
                    "iam:TagRole",
                    "iam:ListRoleTags",
                    "iam:GetRolePolicy",
                    "iam:PutRolePolicy",
                    "iam:ListRolePolicies",
                    "iam:DeleteRolePolicy",
                    "iam:ListAttachedRolePolicies",
                    "iam:DetachRolePolicy",
                    "iam:DeleteRole",
                ],
                [roles],
            ),
            statement(
                "PassFunctionRoles",
                ["iam:PassRole"],
                [roles],
                StringEquals={"iam:PassedToService": "lambda.amazonaws.com"},
            ),
            statement(
                "ApiGatewayLogsRole",
                ["iam:GetRole", "iam:CreateRole", "iam:TagRole", "iam:AttachRolePolicy", "iam:PassRole"],
                [f"arn:aws:iam::{account}:role/{APIGATEWAY_LOGS_ROLE}"],
            ),
            statement(
                "Functions",
                [
                    "lambda:CreateFunction",
                    "lambda:GetFunction",
                    "lambda:GetFunctionConfiguration",
                    "lambda:UpdateFunctionCode",
                    "lambda:UpdateFunctionConfiguration",
                    "lambda:PublishVersion",
                    "lambda:ListVersionsByFunction",
                    "lambda:CreateAlias",
                    "lambda:UpdateAlias",
                    "lambda:GetAlias",
                    "lambda:ListAliases",
                    "lambda:AddPermission",
                    "lambda:RemovePermission",
                    "lambda:GetPolicy",
                    "lambda:GetFunctionConcurrency",
                    "lambda:PutFunctionConcurrency",
                    "lambda:DeleteFunctionConcurrency",
                    "lambda:GetProvisionedConcurrencyConfig",
                    "lambda:PutProvisionedConcurrencyConfig",
                    "lambda:DeleteProvisionedConcurrencyConfig",
                    "lambda:ListTags",
                    "lambda:TagResource",
                    "lambda:DeleteFunction",
                ],
                [f"{lambda_arn}:function:{project}-*"],
            ),
            statement(
                "LogGroups",
                [
                    "logs:CreateLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:ListTagsLogGroup",
                    "logs:ListTagsForResource",
                    "logs:TagLogGroup",
                    "logs:TagResource",
                    "logs:DescribeLogStreams",
                    "logs:FilterLogEvents",
                    "logs:DeleteLogGroup",
                ],
                [
                    f"{logs_arn}:/aws/lambda/{project}-*",
                    f"{logs_arn}:/aws/apigateway/lambdaserve-{project}/*",
                ],
            ),
            statement(
                "KeepWarmRules",
                [
                    "events:PutRule",
                    "events:DescribeRule",
                    "events:PutTargets",
                    "events:ListTargetsByRule",
                    "events:RemoveTargets",
                    "events:DeleteRule",
                    "events:ListTagsForResource",
                    "events:TagResource",
                ],
                [f"arn:aws:events:{region}:{account}:rule/lambdaserve-{project}-*"],
            ),
            statement(
                "ApiGateway",
                [
                    "apigateway:GET",
                    "apigateway:POST",
                    "apigateway:PUT",
                    "apigateway:PATCH",
                    "apigateway:DELETE",
                ],
                [
                    f"{apigateway}/restapis",
                    f"{apigateway}/restapis/*",
                    f"{apigateway}/usageplans",
                    f"{apigateway}/usageplans/*",
                    f"{apigateway}/apikeys",
                    f"{apigateway}/apikeys/*",
                    f"{apigateway}/tags/*",
                    f"{apigateway}/account",
                ],
            ),
        ],
    }


def granted(policy: dict[str, Any]) -> set[str]:
    """Every action the policy's statements name."""
    return {action for statement in policy["Statement"] for action in statement["Action"]}
