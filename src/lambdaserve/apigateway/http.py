"""Requests and responses as the gateway core sees them: no server, no framework."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    query: dict[str, list[str]] = field(default_factory=dict)
    source_ip: str = "127.0.0.1"


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, data: object, headers: dict[str, str] | None = None) -> Response:
        """A JSON answer, compact as API Gateway writes its own: ``{"message":"Forbidden"}``."""
        body = json.dumps(data, separators=(",", ":")).encode()
        return cls(status, {"Content-Type": "application/json", **(headers or {})}, body)
