"""The error every user-facing failure becomes: a message, and how to fix it.

The CLI prints these to stderr without a traceback and exits non-zero; anything else
that escapes is a bug and is reported as one.
"""

from __future__ import annotations


class LambdaserveError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message
