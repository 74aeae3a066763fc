"""Run the gateway under uvicorn: bind first (a clear error for a busy port), announce
once uvicorn really listens, shut down cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from lambdaserve.errors import LambdaserveError
from lambdaserve.gateway.asgi import create_app
from lambdaserve.gateway.core import Gateway, GatewaySettings
from lambdaserve.store import Store


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_ready()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LambdaserveError(
            f"Cannot listen on {host}:{port}: {exc.strerror}.",
            "Another server may be using the port: choose another with --port, or stop it.",
        ) from None
    return sock


def run_server(
    store: Store,
    settings: GatewaySettings,
    host: str,
    port: int,
    admin_token: str,
    on_ready: Callable[[], None],
) -> None:
    sock = bind(host, port)
    gateway = Gateway(store, settings)
    app: Any = create_app(gateway, admin_token)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    _Server(config, on_ready).run(sockets=[sock])
