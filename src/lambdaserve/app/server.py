"""Run the gateway under uvicorn: bind first (a clear error for a busy port), announce
once uvicorn really listens, shut down cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from lambdaserve.apigateway.gateway import Gateway
from lambdaserve.app.asgi import create_app


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_ready()


def run_server(gateway: Gateway, sock: socket.socket, admin_token: str, on_ready: Callable[[], None]) -> None:
    """Serve ``gateway`` on the bound socket until Ctrl-C or SIGTERM."""
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
