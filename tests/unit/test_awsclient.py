"""AWS's errors, as the user reads them: what went wrong and what to do."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from lambdaserve.deploy.awsclient import AWS, iam_action
from lambdaserve.errors import LambdaserveError


def denied(operation: str) -> ClientError:
    error = {
        "Error": {
            "Code": "AccessDeniedException",
            "Message": "User: arn:aws:iam::1:user/ci is not authorized",
        }
    }
    return ClientError(error, operation)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("service", "operation", "action"),
    [
        ("lambda", "create_function", "lambda:CreateFunction"),
        ("apigateway", "create_rest_api", "apigateway:POST"),
        ("apigateway", "update_usage_plan", "apigateway:PATCH"),
        ("apigateway", "get_rest_apis", "apigateway:GET"),
        ("apigateway", "tag_resource", "apigateway:PUT"),
        ("apigateway", "delete_stage", "apigateway:DELETE"),
        ("ecr", "set_repository_policy", "ecr:SetRepositoryPolicy"),
        ("s3", "head_object", "s3:GetObject"),
        ("s3", "put_bucket_encryption", "s3:PutEncryptionConfiguration"),
        ("iam", "create_role", "iam:CreateRole"),
    ],
)
def test_a_refused_call_names_the_iam_action_to_grant(service: str, operation: str, action: str) -> None:
    aws = AWS("eu-west-1")
    error = aws.explain(denied(operation), service, operation)
    assert action in (error.hint or "")
    assert "refused" in error.message


def test_missing_credentials_and_an_unknown_region_say_how_to_fix_them() -> None:
    aws = AWS("eu-west-1")
    assert "aws configure" in (aws.explain(NoCredentialsError(), "sts", "get_caller_identity").hint or "")
    with pytest.raises(LambdaserveError, match="not an AWS region"):
        AWS("eu-middle-9")
    assert iam_action("lambda", "PublishVersion") == "lambda:PublishVersion"


class FlakyClient:
    """A Lambda client whose function is still updating for the first ``busy`` calls."""

    def __init__(self, busy: int, code: str = "ResourceConflictException") -> None:
        self.busy, self.code, self.calls = busy, code, 0

    def update_function_configuration(self, **params: object) -> dict[str, object]:
        self.calls += 1
        if self.calls <= self.busy:
            error = {"Error": {"Code": self.code, "Message": "An update is in progress for resource"}}
            raise ClientError(error, "UpdateFunctionConfiguration")  # type: ignore[arg-type]
        return {"FunctionName": params["FunctionName"]}


def test_a_conflict_with_a_change_under_way_is_retried_with_backoff() -> None:
    # GIVEN a function whose last update is still running for three answers
    aws = AWS("eu-west-1")
    slept: list[float] = []
    aws.sleep = slept.append
    client = FlakyClient(busy=3)
    aws._clients["lambda"] = client
    # WHEN it is configured
    answer = aws.call("lambda", "update_function_configuration", FunctionName="f")
    # THEN the call is sent again, backing off, until Lambda takes it
    assert answer == {"FunctionName": "f"}
    assert (client.calls, slept) == (4, [1.0, 2.0, 4.0])


def test_a_conflict_that_lasts_is_reported_after_a_minute() -> None:
    aws = AWS("eu-west-1")
    slept: list[float] = []
    aws.sleep = slept.append
    aws._clients["apigateway"] = FlakyClient(busy=100, code="ConflictException")
    with pytest.raises(LambdaserveError, match="ConflictException"):
        aws.call("apigateway", "update_function_configuration", FunctionName="f")
    assert sum(slept) >= 60


def test_other_errors_are_not_retried() -> None:
    aws = AWS("eu-west-1")
    aws.sleep = lambda seconds: pytest.fail("slept")
    aws._clients["lambda"] = FlakyClient(busy=1, code="InvalidParameterValueException")
    with pytest.raises(LambdaserveError, match="InvalidParameterValueException"):
        aws.call("lambda", "update_function_configuration", FunctionName="f")
