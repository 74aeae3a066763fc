"""The deployer's IAM policy grants every action the engine can call, scoped to the project.

The calls are read from the engine's source (every ``Call``, ``Wait`` and ``aws.call /
find / pages / wait`` with a service and operation), so a call added later without its
permission fails here; test_deploy_aws.py checks the calls a real deploy, promote and
destroy made against the same policy.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from lambdaserve.deploy import permissions
from lambdaserve.deploy.permissions import (
    ALWAYS_ALLOWED,
    PUSH_ACTIONS,
    actions_for,
    deployer_policy,
    granted,
    iam_action,
)

DEPLOY = Path(permissions.__file__).resolve().parent
CALLERS = {"call", "find", "pages", "wait"}


def engine_calls() -> set[tuple[str, str]]:
    """(service, operation) of every AWS call written in deploy/."""
    found: set[tuple[str, str]] = set()
    for path in DEPLOY.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            function = node.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
            if name not in {"Call", "Wait", *CALLERS}:
                continue
            service, operation = (getattr(arg, "value", None) for arg in node.args[:2])
            if isinstance(service, str) and isinstance(operation, str):
                found.add((service, operation))
    return found


def test_the_source_scan_finds_the_engine_calls() -> None:
    calls = engine_calls()
    # A sample from each service, to be sure the scan reads the source as it is written.
    for call in [
        ("lambda", "create_function"),
        ("lambda", "function_updated_v2"),
        ("apigateway", "create_rest_api"),
        ("apigateway", "delete_stage"),
        ("ecr", "set_repository_policy"),
        ("s3", "head_bucket"),
        ("iam", "put_role_policy"),
        ("logs", "filter_log_events"),
        ("events", "put_targets"),
    ]:
        assert call in calls
    assert len(calls) > 80


def test_the_policy_grants_every_action_the_engine_can_call_and_the_image_push() -> None:
    policy = deployer_policy("shop", "eu-west-1", "123456789012")
    needed = {action for call in engine_calls() for action in actions_for(*call)} | set(PUSH_ACTIONS)
    assert needed - granted(policy) - ALWAYS_ALLOWED == set()


def test_creating_with_tags_needs_the_tagging_actions_and_an_image_function_needs_the_pull() -> None:
    assert actions_for("iam", "create_role") == ("iam:CreateRole", "iam:TagRole")
    assert set(actions_for("lambda", "create_function")) >= {
        "lambda:TagResource",
        "iam:PassRole",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    }
    assert "logs:TagResource" in actions_for("logs", "create_log_group")
    assert "ecr:TagResource" in actions_for("ecr", "create_repository")
    assert "events:TagResource" in actions_for("events", "put_rule")


@pytest.mark.parametrize(
    ("service", "operation", "action"),
    [
        ("s3", "head_object", "s3:GetObject"),
        ("s3", "list_object_versions", "s3:ListBucketVersions"),
        ("apigateway", "tag_resource", "apigateway:PUT"),
        ("apigateway", "update_account", "apigateway:PATCH"),
        ("apigateway", "get_account", "apigateway:GET"),
        ("apigateway", "DeleteStage", "apigateway:DELETE"),
        ("lambda", "function_active_v2", "lambda:GetFunction"),
        ("iam", "role_exists", "iam:GetRole"),
    ],
)
def test_operations_map_to_the_iam_actions_aws_checks(service: str, operation: str, action: str) -> None:
    assert iam_action(service, operation) == action


def test_the_policy_is_scoped_to_the_project_resources() -> None:
    policy = deployer_policy("shop", "eu-west-1", "123456789012")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["Functions"]["Resource"] == "arn:aws:lambda:eu-west-1:123456789012:function:shop-*"
    assert by_sid["FunctionRoles"]["Resource"] == "arn:aws:iam::123456789012:role/lambdaserve-shop-*"
    assert by_sid["PassFunctionRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }
    assert by_sid["ModelFiles"]["Resource"] == "arn:aws:s3:::lambdaserve-shop-*/*"
    assert (
        by_sid["ImageRepository"]["Resource"]
        == "arn:aws:ecr:eu-west-1:123456789012:repository/lambdaserve-shop"
    )
    # Only listings and ECR's login token are account-wide
    assert by_sid["AccountWideListingsAndLogin"]["Resource"] == "*"
    assert [s["Sid"] for s in policy["Statement"] if s["Resource"] == "*"] == ["AccountWideListingsAndLogin"]
    assert "*" not in {a for s in policy["Statement"] for a in s["Action"] if a.endswith(":*")}
    assert json.loads(json.dumps(policy)) == policy  # plain JSON, ready for aws iam create-policy
