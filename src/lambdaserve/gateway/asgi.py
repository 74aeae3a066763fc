"""The ASGI application uvicorn serves: a thin adapter around ``Gateway.handle``.

Prediction routes take the fast path: the body is read, handed to the core, and the
answer written back, with no framework in between. Everything under ``/_/`` (admin API,
metrics, health, OpenAPI, console) and the Lambda Invoke API go to a Starlette app. The
lifespan starts the gateway and its housekeeping (every half second: pick up changes made
by the CLI, write usage counts and logs, reap idle environments).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from lambdaserve.gateway.core import MAX_BODY_BYTES, Gateway
from lambdaserve.gateway.http import Request, Response
from lambdaserve.gateway.invoke_api import payload_too_large
from lambdaserve.runtime.events import MAX_PAYLOAD_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
HOUSEKEEPING_S = 0.5
UPLOADS = "/_/api/uploads"
MAX_ADMIN_BODY_BYTES = 1024 * 1024  # keys, plans, stages, sign-in: small JSON and forms


def create_app(gateway: Gateway, admin_token: str, *, on_ready: Callable[[], None] | None = None) -> ASGIApp:
    from lambdaserve.gateway.admin import create_admin_app

    admin = create_admin_app(gateway, admin_token)
    housekeeping: list[asyncio.Task[None]] = []

    async def keep_house() -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            gateway.housekeeping()

    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await gateway.start()
                    housekeeping.append(asyncio.get_running_loop().create_task(keep_house()))
                    if on_ready:
                        on_ready()
                except Exception as exc:  # reported by uvicorn, which then exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in housekeeping:
                    task.cancel()
                with contextlib.suppress(Exception):
                    await gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(("/_/", "/2015-03-31/")) or path in ("/", "/_"):
            if path != UPLOADS:  # uploads stream to disk within --max-upload-mb, checked as they come
                invoke = path.startswith("/2015-03-31/")
                limit = MAX_PAYLOAD_BYTES if invoke else MAX_ADMIN_BODY_BYTES
                buffered = await read_body(scope, receive, limit)
                if buffered is None:
                    too_long = payload_too_large(limit) if invoke else admin_body_too_large(limit)
                    await respond(send, too_long, close=True)
                    return
                receive = replay(buffered)
            await admin(scope, receive, _with_request_id(send))
            return
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        client = scope.get("client")
        request = Request(
            method=scope["method"],
            path=path,
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

    return app


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is (or says it will be) over ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


def replay(body: bytes) -> Receive:
    """A ``receive`` that hands the already-read body on, then waits for the client to go."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a disconnect would come here; Starlette never asks twice
        return {"type": "http.disconnect"}

    return receive


def admin_body_too_large(limit: int) -> Response:
    return Response.json(
        413, {"error": f"The body is over {limit // 1024} KB; the admin API takes small JSON."}
    )


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


def _with_request_id(send: Send) -> Send:
    """Every response carries x-amzn-RequestId, as API Gateway's do (unless it has one)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            if not any(name.lower() == b"x-amzn-requestid" for name, _ in headers):
                headers.append((b"x-amzn-requestid", str(uuid.uuid4()).encode()))
            message["headers"] = headers
        await send(message)

    return sending
