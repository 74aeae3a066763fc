"""API Gateway's own error responses, with AWS's exact status codes and bodies.

One class per gateway response type (see "Gateway response types" in API Gateway's
developer guide). ``x-amzn-ErrorType`` is set where API Gateway sets it.
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    message = "Internal server error"
    error_type: str | None = "InternalServerErrorException"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.message)
        self.detail = detail  # for our logs only; never sent to the caller


class MissingAuthenticationToken(GatewayError):
    """An unknown path or method (API Gateway answers this for any route it does not have)."""

    status = 403
    message = "Missing Authentication Token"
    error_type = "MissingAuthenticationTokenException"


class Forbidden(GatewayError):
    """A missing, unknown or revoked API key on a route that requires one."""

    status = 403
    message = "Forbidden"
    error_type = "ForbiddenException"


class TooManyRequests(GatewayError):
    """The usage plan's throttle (token bucket) has no token for this request."""

    status = 429
    message = "Too Many Requests"
    error_type = "TooManyRequestsException"


class LimitExceeded(GatewayError):
    """The usage plan's quota for the current period is used up."""

    status = 429
    message = "Limit Exceeded"
    error_type = "LimitExceededException"


class RequestTooLong(GatewayError):
    """A body over API Gateway's 10 MB, or an event over Lambda's 6 MB payload limit."""

    status = 413
    message = "Request Too Long"
    error_type = None


class HeadersTooLarge(GatewayError):
    """The request line and headers over API Gateway's 10,240 bytes.

    AWS documents the limit, not its answer; lambdaserve answers HTTP's 431 (not confirmed
    against AWS: see docs/emulation.md).
    """

    status = 431
    message = "Request Header Fields Too Large"
    error_type = None


class BadGateway(GatewayError):
    """The function failed: a crash, an unhandled error, a malformed response, a kill."""

    status = 502


class FunctionThrottled(GatewayError):
    """Lambda refused the invocation (reserved concurrency used up): API Gateway says 500."""

    status = 500


class EndpointTimeout(GatewayError):
    """The integration did not answer within API Gateway's timeout (29 s by default)."""

    status = 504
    message = "Endpoint request timed out"
    error_type = None
