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

from lambdaserve.gateway.core import Gateway
from lambdaserve.gateway.http import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
HOUSEKEEPING_S = 0.5


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
            await admin(scope, receive, _with_request_id(send))
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
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
            body=bytes(body),
            query=parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {},
            source_ip=client[0] if client else "127.0.0.1",
        )
        response = await gateway.handle(request)
        raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        raw_headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    return app


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
