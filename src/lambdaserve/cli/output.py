"""How commands talk to people and to scripts.

Human output goes through rich; ``--json`` prints one JSON object on stdout instead
(one per line for streams). Progress and errors always go to stderr, so stdout stays
clean for pipes. A ``LambdaserveError`` becomes a message and a hint on stderr and exit
code 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from rich.status import Status  # err.status() imports it when a spinner is shown

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, hint: str | None = None, *, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)
    if hint:
        err.print(f"[yellow]How to fix:[/] {hint}", markup=True, highlight=False)
    return typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {message}")


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn LambdaserveError into a clean message and a non-zero exit; with ``--json``, the
    error is also the one JSON object on stdout: ``{"error": ..., "hint": ...}``."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except LambdaserveError as exc:
            if kwargs.get("as_json"):
                print_json({"error": exc.message, "hint": exc.hint})
            raise fail(exc.message, exc.hint) from None
        except KeyboardInterrupt:
            raise fail("Interrupted.", code=130) from None

    return wrapper


def parse_json_option(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise LambdaserveError(
            f"{option} is not valid JSON ({exc.msg} at column {exc.colno}).",
            f"Quote it for the shell, e.g. {option} '[\"some text\"]' or {option} '[[5.1, 3.5, 1.4, 0.2]]'.",
        ) from None


class RichProgress:
    """Progress on stderr: milestones stay on screen, tool output scrolls in a spinner."""

    def __init__(self, status: Status | None) -> None:
        self.status = status

    def step(self, message: str) -> None:
        err.print(f"[cyan]•[/] {message}")
        if self.status:
            self.status.update(message)

    def detail(self, line: str) -> None:
        if self.status:
            self.status.update(f"[dim]{line[:100]}[/]")
        else:
            err.print(f"  [dim]{line}[/]")


@contextmanager
def progress() -> Iterator[RichProgress]:
    if err.is_terminal:
        with err.status("Working...") as status:
            yield RichProgress(status)
    else:
        yield RichProgress(None)
