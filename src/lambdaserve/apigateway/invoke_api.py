"""The Lambda Invoke API, so AWS's own clients work locally:

    boto3.client("lambda", endpoint_url="http://127.0.0.1:8000").invoke(
        FunctionName="news", Qualifier="test", Payload=json.dumps({"body": [...]}))

``POST /2015-03-31/functions/{name}/invocations``. ``Qualifier`` is a stage (alias), a
version number or ``$LATEST`` (the newest version); ``FunctionName`` may be a name or an
ARN. ``X-Amz-Invocation-Type``: RequestResponse (default), Event (202, runs in the
background) or DryRun (204). ``X-Amz-Log-Type: Tail`` returns the last 4 KB of the
invocation's log, base64-encoded, in ``X-Amz-Log-Result``. A function error answers 200
with ``X-Amz-Function-Error: Unhandled`` and Lambda's error payload, as Lambda does.

Lambda authenticates this API with SigV4; locally any signature is accepted, so keep the
server on loopback (the default) when this matters.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from lambdaserve.apigateway.gateway import Gateway
from lambdaserve.apigateway.http import Response as HTTPResponse
from lambdaserve.runtime.apigw import ACCOUNT_ID
from lambdaserve.runtime.events import MAX_PAYLOAD_BYTES

REGION = "us-east-1"


def _error(status: int, error_type: str, message: str, request_id: str, **extra: str) -> Response:
    return Response(
        json.dumps({"Type": "User", "message": message, **extra}, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id},
    )


def payload_too_large(limit: int) -> HTTPResponse:
    """Lambda's answer to a payload over its 6 MB, as the gateway's front sends it before reading it."""
    body = {
        "Type": "User",
        "message": f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
    }
    return HTTPResponse.json(413, body, {"x-amzn-ErrorType": "RequestEntityTooLargeException"})


async def invoke_function(gateway: Gateway, request: HTTPRequest) -> Response:
    request_id = str(uuid.uuid4())
    name = request.path_params["function"]
    qualifier = request.query_params.get("Qualifier")
    if name.startswith("arn:"):
        parts = name.split(":")
        name = parts[6] if len(parts) > 6 else name
        qualifier = qualifier or (parts[7] if len(parts) > 7 else None)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}" + (f":{qualifier}" if qualifier else "")
    version = _resolve(gateway, name, qualifier)
    if version is None:
        return _error(404, "ResourceNotFoundException", f"Function not found: {arn}", request_id)
    raw = await request.body()
    if len(raw) > MAX_PAYLOAD_BYTES:
        return _error(
            413,
            "RequestEntityTooLargeException",
            f"{len(raw)} byte payload is too large for the RequestResponse invocation type "
            f"({MAX_PAYLOAD_BYTES} bytes)",
            request_id,
        )
    try:
        event: Any = json.loads(raw) if raw else {}
    except RecursionError:
        return _error(
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json: too deeply nested",
            request_id,
        )
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and Python's integer digit limit
        return _error(
            400,
            "InvalidRequestContentException",
            f"Could not parse request body into json: {exc}",
            request_id,
        )
    invocation_type = request.headers.get("x-amz-invocation-type", "RequestResponse")
    headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": version}
    if invocation_type == "DryRun":
        return Response(status_code=204, headers=headers)
    function = await gateway.lambdas.function(name, version)
    if invocation_type == "Event":
        task = asyncio.get_running_loop().create_task(function.invoke(event, request_id))
        task.add_done_callback(lambda _task: None)
        return Response(status_code=202, headers=headers)
    outcome = await function.invoke(event, request_id)
    if outcome.status == "throttled":
        return _error(
            429,
            "TooManyRequestsException",
            "Rate Exceeded.",
            request_id,
            Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
        )
    if request.headers.get("x-amz-log-type") == "Tail":
        tail = "\n".join(outcome.logs).encode()[-4096:]
        headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
    if outcome.status != "ok":
        headers["X-Amz-Function-Error"] = "Unhandled"
        return Response(json.dumps(outcome.error or {}), media_type="application/json", headers=headers)
    return Response(json.dumps(outcome.payload), media_type="application/json", headers=headers)


def _resolve(gateway: Gateway, name: str, qualifier: str | None) -> str | None:
    if name in gateway.handlers:
        return "$LATEST" if qualifier in (None, "$LATEST", gateway.settings.stage) else None
    versions = sorted(v for (model, v) in gateway.catalog.versions if model == name)
    if not versions:
        return None
    if qualifier in (None, "$LATEST"):
        return str(versions[-1])
    if qualifier.isdigit():
        return qualifier if int(qualifier) in versions else None
    alias = gateway.routes.get((name, qualifier))
    if alias is None:
        return None
    if alias.canary_version is not None and gateway.rng() * 100 < alias.canary_weight:
        return str(alias.canary_version)
    return str(alias.version)
