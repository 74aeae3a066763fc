"""The ASGI application uvicorn serves: the API Gateway front, the console and the Invoke API.

Prediction routes take the front's fast path (``apigateway.asgi``). Everything under
``/_/`` (admin API, metrics, health, OpenAPI, console) and the Lambda Invoke API go to the
console's Starlette app, their bodies bounded first (1 MB; 6 MB for the Invoke API; uploads
stream to disk within --max-upload-mb). The lifespan starts the gateway and its
housekeeping (every half second: pick up changes made by the CLI, write usage counts and
logs, reap idle environments).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

from lambdaserve.apigateway.asgi import ASGIApp, Message, Receive, Scope, Send, respond, serve_request
from lambdaserve.apigateway.gateway import Gateway
from lambdaserve.apigateway.http import Response
from lambdaserve.apigateway.invoke_api import payload_too_large
from lambdaserve.console.admin_api import create_admin_app
from lambdaserve.runtime.events import MAX_PAYLOAD_BYTES

HOUSEKEEPING_S = 0.5
UPLOADS = "/_/api/uploads"
MAX_ADMIN_BODY_BYTES = 1024 * 1024  # keys, plans, stages, sign-in: small JSON and forms


def create_app(gateway: Gateway, admin_token: str, *, on_ready: Callable[[], None] | None = None) -> ASGIApp:
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
        await serve_request(gateway, scope, receive, send)

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
