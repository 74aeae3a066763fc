"""API Gateway REST API proxy events, as AWS builds them for a Lambda integration.

``rest_proxy_event`` makes the event a POST to ``/{stage}/{model}/predict`` would
produce: the same keys, the same nesting and the same null fields, so a handler cannot
tell the local gateway from API Gateway. Field by field it follows the "Lambda proxy
integration input format" of API Gateway's developer guide.

It lives in the runtime so that an execution environment can build the event itself:
the local gateway sends only the request's parts (``compact``), and the environment
expands them (``expand``) into exactly the event the gateway would have built. That
keeps the gateway's single event loop free of the work that scales with each request.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
import uuid
from typing import Any

ACCOUNT_ID = "123456789012"
LOCAL_API_ID = "local"


def rest_proxy_event(
    body: str | bytes | None,
    *,
    model: str,
    stage: str = "test",
    route: str = "predict",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    source_ip: str = "127.0.0.1",
    api_key: str | None = None,
    api_key_id: str | None = None,
    request_id: str | None = None,
    api_id: str = LOCAL_API_ID,
    domain_name: str = "127.0.0.1",
    resource: str | None = None,
    path: str | None = None,
    path_parameters: dict[str, str] | None = None,
    extended_request_id: str | None = None,
    stage_variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    request_id = request_id or str(uuid.uuid4())
    path = path or f"/{model}/{route}"
    resource = resource or path
    headers = dict(headers or {"Content-Type": "application/json"})
    is_base64 = isinstance(body, bytes)
    text = base64.b64encode(body).decode("ascii") if isinstance(body, bytes) else body
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters,
        "stageVariables": stage_variables or None,
        "requestContext": {
            "resourceId": _resource_id(resource),
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": extended_request_id or new_apigw_id(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": domain_name.split(".", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": headers.get("User-Agent") or headers.get("user-agent"),
                "user": None,
                "apiKey": api_key,
                "apiKeyId": api_key_id,
            },
            "domainName": domain_name,
            "apiId": api_id,
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def new_apigw_id() -> str:
    """An id as API Gateway gives each request: ``x-amz-apigw-id`` on the answer, and
    ``requestContext.extendedRequestId`` in the event (16 characters of base64)."""
    return base64.b64encode(secrets.token_bytes(11)).decode("ascii")


COMPACT = "lambdaserve.http"


def compact(body: str | bytes | None, **fields: Any) -> dict[str, Any]:
    """The request's parts, for an environment to turn into the full event with ``expand``."""
    if isinstance(body, bytes):
        fields["binary"] = base64.b64encode(body).decode("ascii")
        body = None
    return {COMPACT: {"body": body, **fields}}


def expand(event: Any, tail: bytes = b"") -> Any:
    """The full REST proxy event for a ``compact`` one; any other event as it is.

    ``tail``: the raw bytes that came after the frame the event was in; a compact event
    whose text body travelled there names its slice in ``bodyAt`` (see ``raw_bodies``).
    """
    if not (isinstance(event, dict) and COMPACT in event and len(event) == 1):
        return event
    fields = dict(event[COMPACT])
    body: str | bytes | None = fields.pop("body")
    binary = fields.pop("binary", None)
    if binary is not None:
        body = base64.b64decode(binary)
    at = fields.pop("bodyAt", None)
    if at is not None:
        body = tail[at[0] : at[1]].decode("utf-8")
    return rest_proxy_event(body, **fields)


def raw_bodies(events: list[Any]) -> tuple[list[Any], bytes]:
    """Compact events with their text bodies taken out, and those bodies as UTF-8 bytes one
    after another (``bodyAt`` names each slice): sent after the frame's JSON, a body is
    neither escaped into it nor parsed out of it again (a 28 KB body of 16 posts cost the
    gateway 66 µs of ``json.dumps`` and the environment 39 µs of ``json.loads``)."""
    tail = bytearray()
    sent = []
    for event in events:
        fields = event.get(COMPACT) if isinstance(event, dict) and len(event) == 1 else None
        body = fields.get("body") if isinstance(fields, dict) else None
        if isinstance(body, str) and fields is not None:
            try:
                raw = body.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: JSON escapes it, UTF-8 cannot
                sent.append(event)
                continue
            start = len(tail)
            tail += raw
            event = {COMPACT: {**fields, "body": None, "bodyAt": [start, len(tail)]}}
        sent.append(event)
    return sent, bytes(tail)


@functools.lru_cache(maxsize=256)
def _resource_id(resource: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, resource).hex[:6]
