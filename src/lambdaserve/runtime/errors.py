"""Errors the handler turns into responses, and the one INIT raises.

Each request error carries the status and the exact body the caller gets. Bodies that
API Gateway or Lambda themselves produce use their ``{"message": ...}`` shape; the
handler's own use ``{"error": ...}`` with a sentence that says how to fix the input.
"""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request the caller can fix: answered with a 4xx, never logged as a failure."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class BadRequest(RequestError):
    """The body is not JSON, or not a shape any model takes (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class UnprocessableInput(RequestError):
    """Well-formed input that this model cannot use: wrong columns, wrong width (422)."""

    def __init__(self, message: str) -> None:
        super().__init__(422, message)


class PayloadTooLarge(RequestError):
    """Over Lambda's 6 MB invocation payload limit (413, Lambda's own body)."""

    def __init__(self) -> None:
        super().__init__(413, "Request Too Long")

    @property
    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class ModelLoadError(Exception):
    """INIT could not produce a working model. The message names the cause and the fix."""
