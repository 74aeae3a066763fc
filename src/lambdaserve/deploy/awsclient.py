"""The one module that imports boto3: AWS calls, waiters, and AWS errors made readable.

Everything else in ``deploy/`` names calls as (service, operation, parameters) and hands
them here. An error becomes a LambdaserveError that says what to do: no credentials,
a refused call (naming the IAM action to grant), an unknown region, AWS out of reach.
``AWS_ENDPOINT_URL`` (boto3's own setting) points every client elsewhere, e.g. at moto's
server in the tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lambdaserve.deploy.permissions import iam_action, pascal
from lambdaserve.errors import LambdaserveError

__all__ = ["AWS", "error_code", "iam_action"]

ROLE_PROPAGATION_S = 60.0
# Error codes that mean "there is no such thing", by service: describe calls return None.
NOT_FOUND = {
    "NoSuchEntity",  # IAM
    "ResourceNotFoundException",  # Lambda, Logs, Events
    "RepositoryNotFoundException",
    "ImageNotFoundException",
    "NotFoundException",  # API Gateway
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchTagSet",
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "ProvisionedConcurrencyConfigNotFoundException",
    "RepositoryPolicyNotFoundException",
    "LifecyclePolicyNotFoundException",
    "404",
}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
}
# Answers that mean "another change to this resource is under way": retried with backoff.
CONFLICT = {"ConflictException", "ResourceConflictException", "ResourceInUseException"}
CONFLICT_RETRY_S = 60.0


class AWS:
    """boto3 clients for one region, and the calls the deployer makes through them."""

    def __init__(self, region: str | None = None, profile: str | None = None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise LambdaserveError(
                "The AWS commands need boto3, which is not installed.",
                "Install lambdaserve's AWS extra: pip install 'lambdaserve[aws]'.",
            ) from None
        try:
            self.session = boto3.session.Session(region_name=region, profile_name=profile)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
            raise LambdaserveError(
                f"AWS configuration: {exc}", "Check --profile and ~/.aws/config."
            ) from None
        if not self.session.region_name:
            raise LambdaserveError(
                "No AWS region is set.",
                "Pass --region (e.g. --region eu-west-1), or set AWS_REGION or a region in ~/.aws/config.",
            )
        if self.session.region_name not in self.session.get_available_regions("lambda"):
            raise LambdaserveError(
                f"{self.session.region_name!r} is not an AWS region that has Lambda.",
                "Check --region / AWS_REGION (e.g. eu-west-1, us-east-1).",
            )
        self.region: str = self.session.region_name
        self._config = Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_extra="lambdaserve")
        self._clients: dict[str, Any] = {}
        self._account: str | None = None
        self.sleep = time.sleep  # tests give a clock of their own

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, config=self._config)
        return self._clients[service]

    def account(self) -> str:
        """The account the credentials belong to (one STS call, then remembered)."""
        if self._account is None:
            self._account = str(self.call("sts", "get_caller_identity")["Account"])
        return self._account

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS call; a file path as ``Body`` is streamed from disk.

        Two answers are retried for up to a minute, backing off: a role made seconds ago
        that Lambda says "cannot be assumed" (IAM is eventually consistent), and a conflict
        with a change still under way (Lambda's ``ResourceConflictException`` while a
        function updates, API Gateway's ``ConflictException``). botocore itself retries
        throttling and network errors.
        """
        delay, waited = 1.0, 0.0
        while True:
            try:
                return self._call(service, operation, params)
            except Exception as exc:
                limit = ROLE_PROPAGATION_S if _role_not_ready(exc) else CONFLICT_RETRY_S
                if not (_role_not_ready(exc) or error_code(exc) in CONFLICT) or waited >= limit:
                    raise self.explain(exc, service, operation) from None
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, 8.0)

    def _call(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("Body")
        if isinstance(body, Path):
            with body.open("rb") as stream:
                return dict(getattr(self.client(service), operation)(**{**params, "Body": stream}))
        return dict(getattr(self.client(service), operation)(**params))

    def find(self, service: str, operation: str, **params: Any) -> dict[str, Any] | None:
        """A describe call that answers None when the thing does not exist."""
        try:
            return dict(getattr(self.client(service), operation)(**params))
        except Exception as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise self.explain(exc, service, operation) from None

    def pages(self, service: str, operation: str, key: str, **params: Any) -> Iterable[Any]:
        """The items under ``key`` of every page of a listing."""
        try:
            for page in self.client(service).get_paginator(operation).paginate(**params):
                yield from page.get(key, [])
        except Exception as exc:
            raise self.explain(exc, service, operation) from None

    def wait(self, service: str, waiter: str, **params: Any) -> None:
        """A boto3 waiter (it polls at AWS's recommended pace: no fixed sleeps here)."""
        try:
            self.client(service).get_waiter(waiter).wait(**params)
        except Exception as exc:
            raise self.explain(exc, service, waiter) from None

    def explain(self, exc: Exception, service: str, operation: str) -> LambdaserveError:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
            WaiterError,
        )

        action = pascal(operation)
        if isinstance(exc, NoCredentialsError):
            return LambdaserveError(
                "No AWS credentials were found.",
                "Run `aws configure`, set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
            )
        if isinstance(exc, NoRegionError):
            return LambdaserveError("No AWS region is set.", "Pass --region or set AWS_REGION.")
        if isinstance(exc, EndpointConnectionError):
            return LambdaserveError(
                f"AWS cannot be reached ({exc}).",
                "Check the network, the region, and AWS_ENDPOINT_URL if you set it.",
            )
        if isinstance(exc, WaiterError):
            reason = exc.last_response.get("Configuration", {}).get("StateReason") or exc.last_response.get(
                "StateReason"
            )
            return LambdaserveError(
                f"Waiting for {service} ({operation}) failed: {reason or exc}",
                "Rerun the command: it picks up where this one stopped.",
            )
        if isinstance(exc, ClientError):
            code = error_code(exc)
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            if code in DENIED or "not authorized" in message:
                return LambdaserveError(
                    f"AWS refused {service} {action}: {message}",
                    f"Grant the IAM action {iam_action(service, action)} to the identity that runs "
                    "lambdaserve (`lambdaserve iam-policy` prints the whole policy it needs).",
                )
            if code in (
                "PermanentRedirect",
                "AuthorizationHeaderMalformed",
                "IllegalLocationConstraintException",
            ):
                return LambdaserveError(
                    f"{service} {action}: the resource is in another region than {self.region} ({message}).",
                    "Pass the --region the project was deployed to.",
                )
            return LambdaserveError(f"AWS {service} {action} failed ({code}): {message}")
        return LambdaserveError(f"AWS {service} {action} failed: {exc}")


def _role_not_ready(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    message = str(response.get("Error", {}).get("Message", ""))
    return error_code(exc) == "InvalidParameterValueException" and "cannot be assumed" in message


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(status or "")
    return ""
