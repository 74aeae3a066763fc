"""AWS's errors, as the user reads them: what went wrong and what to do."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from lambdaserve.deploy.awsclient import AWS, iam_action
from lambdaserve.deploy.image import check_wheels, image_context
from lambdaserve.errors import LambdaserveError


class Steps:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def detail(self, line: str) -> None: ...


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


def test_requirements_without_a_wheel_for_the_base_image_are_refused_before_a_build() -> None:
    # numpy 2.4 has wheels for glibc 2.27 and later: none for Amazon Linux 2 (Python 3.11's base),
    # some for Amazon Linux 2023 (Python 3.12's). Asks the package index (CI reaches PyPI).
    with pytest.raises(LambdaserveError, match=r"glibc 2\.26.*numpy==2\.4\.1") as refused:
        check_wheels(image_context(["numpy==2.4.1"], "3.11", with_boto3=False), Steps())
    assert "Python 3.12 or later" in (refused.value.hint or "")
    steps = Steps()
    check_wheels(image_context(["numpy==2.4.1"], "3.12", with_boto3=False), steps)
    assert steps.steps == [
        "Checking that every requirement has a wheel for public.ecr.aws/lambda/python:3.12 (glibc 2.34)"
    ]
