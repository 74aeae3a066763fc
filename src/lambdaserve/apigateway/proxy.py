"""What API Gateway answers with: the function's proxy response turned into HTTP (or its
500/502 when there is none), and the gateway's own error bodies."""

from __future__ import annotations

import base64
import binascii

from lambdaserve.apigateway.errors import BadGateway, FunctionThrottled, GatewayError
from lambdaserve.apigateway.http import Response
from lambdaserve.functions.function import Outcome


def error_response(exc: GatewayError) -> Response:
    response = Response.json(exc.status, {"message": exc.message})
    if exc.error_type:
        response.headers["x-amzn-ErrorType"] = exc.error_type
    return response


def proxy_to_http(outcome: Outcome) -> Response:
    """The function's proxy response as HTTP, or API Gateway's 500/502 when there is none."""
    if outcome.status == "throttled":
        raise FunctionThrottled("reserved concurrency exhausted")
    if outcome.status != "ok":
        raise BadGateway(f"function {outcome.status}: {outcome.error}")
    payload = outcome.payload
    if not isinstance(payload, dict):
        raise BadGateway("Malformed Lambda proxy response: not an object")
    status = payload.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise BadGateway("Malformed Lambda proxy response: no valid statusCode")
    # One header per name, whatever its case (HTTP names are case-insensitive): values from
    # multiValueHeaders win over the same name in headers, as API Gateway merges them.
    named: dict[str, tuple[str, str]] = {}
    for name, value in (payload.get("headers") or {}).items():
        named[str(name).lower()] = (str(name), str(value))
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        named[str(name).lower()] = (str(name), ", ".join(str(v) for v in values))
    named.setdefault("content-type", ("Content-Type", "application/json"))
    headers = dict(named.values())
    body = payload.get("body")
    if body is None:
        raw = b""
    elif payload.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(str(body))
        except (binascii.Error, ValueError):
            raise BadGateway("Malformed Lambda proxy response: invalid base64 body") from None
    else:
        raw = str(body).encode("utf-8")
    return Response(status, headers, raw)
