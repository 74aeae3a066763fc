"""Bind the server's port first: a busy port is a clear error before anything starts."""

from __future__ import annotations

import socket

from lambdaserve.errors import LambdaserveError


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
