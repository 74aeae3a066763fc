"""The symbolic values a pickle scan pushes instead of real objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ScanError(Exception):
    """The stream is not a pickle this scanner can follow."""


@dataclass(frozen=True)
class Global:
    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class PickledCall:
    func: Any
    args: Any
    state: Any = None


class Opaque:
    """A value the scan does not model: out-of-band buffers, persistent ids, big bytes."""


OPAQUE = Opaque()


def global_key(value: Any) -> tuple[str, str] | None:
    return (value.module, value.name) if isinstance(value, Global) else None
