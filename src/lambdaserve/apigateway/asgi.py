"""The API Gateway front as ASGI: a thin adapter around ``Gateway.handle``, no framework.

The body is read only once the route, the headers' size, the declared length and the key
have passed (``Gateway.refuse_early``), and a body that streams in without a declared length
is counted as it comes; the answer is written back as it is. ``lambdaserve.app`` composes
this with the console and the Invoke API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from lambdaserve.apigateway.gateway import MAX_BODY_BYTES, Gateway
from lambdaserve.apigateway.http import Request, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def serve_request(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """One HTTP request to a stage's route (or any path API Gateway would answer itself)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    client = scope.get("client")
    request = Request(
        method=scope["method"],
        path=scope["path"],
        headers=headers,
        query=parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {},
        source_ip=client[0] if client else "127.0.0.1",
    )
    # Route, size and key are checked before the body is read: a 300 MB body without a key
    # gets its answer at once, and the connection is closed rather than drained.
    refused = gateway.refuse_early(request, declared_length(headers))
    if refused is not None:
        await respond(send, refused, close=True)
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:  # a chunked (or undeclared) body, counted as it comes
            await respond(send, gateway.too_long(request), close=True)
            return
        if not message.get("more_body"):
            break
    request.body = bytes(body)
    await respond(send, await gateway.handle(request))


def declared_length(headers: dict[str, str]) -> int | None:
    """The body's declared length, or None when it is not declared (chunked) or unreadable."""
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def respond(send: Send, response: Response, *, close: bool = False) -> None:
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
    raw_headers.append((b"content-length", str(len(response.body)).encode()))
    if close:  # the body was not read: the connection cannot carry another request
        raw_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": response.body})
