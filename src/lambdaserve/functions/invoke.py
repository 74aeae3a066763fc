"""One function version run outside ``serve``: what ``lambdaserve invoke`` and the package
step's smoke test use, as ``sam local invoke`` does it.

It is the same local Lambda ``serve`` runs (``function.Function``: INIT once in a template,
an environment forked from it, the same frames, limits and log lines), driven from
synchronous code on an event loop of its own. The log stream is kept in memory
(``CollectedLines``) instead of the state directory, so a command can print it: INIT's
output, then START, the handler's lines, END and REPORT. Failures that the user can act on
become ``LambdaserveError`` with the cause and the fix.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from lambdaserve.functions.function import Function, Outcome
from lambdaserve.functions.logbook import CollectedLines
from lambdaserve.functions.metrics import Metrics
from lambdaserve.functions.processes import EnvironmentServer, InitFailed
from lambdaserve.functions.pythons import Progress, PythonEnvironment, resolve_environment
from lambdaserve.functions.settings import FunctionSettings
from lambdaserve.functions.target import Target, explain_failure

T = TypeVar("T")


class LocalFunction:
    """A function version with at most one execution environment, as Lambda runs a function
    invoked once at a time: ``start()`` runs INIT, ``invoke()`` forks an environment when
    there is none (after a timeout, a memory kill or a crash, the next call gets a new one)."""

    def __init__(
        self,
        python: PythonEnvironment,
        env: dict[str, str],
        *,
        function_name: str,
        version: str = "$LATEST",
        memory_mb: int = 256,
        timeout_s: float = 10.0,
        cwd: str | None = None,
    ) -> None:
        self.logs = CollectedLines()
        self._loop = asyncio.new_event_loop()
        self._server = EnvironmentServer()
        self._run(self._server.start())
        settings = FunctionSettings(
            memory_mb=memory_mb, timeout_s=timeout_s, provisioned=0, max_environments=1, mode="lambda"
        )
        self.function = Function(
            function_name, version, python, env, settings, self._server, self.logs, Metrics(), cwd
        )
        self._closed = False

    def __enter__(self) -> LocalFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> float:
        """Run INIT; its duration in ms. Raises ``InitFailed`` (its lines are in ``logs``)."""
        self._run(self.function.start(0))
        template = self.function.template
        return template.init_ms if template is not None else 0.0

    @property
    def init_memory_mb(self) -> int:
        """Max Memory Used once INIT was done."""
        template = self.function.template
        return template.init_memory_mb if template is not None else 0

    def describe(self) -> dict[str, Any]:
        """What the model says of itself: ``has_proba``, ``feature_names``, ``classes``..."""
        return self._run(self.function.describe())

    def invoke(self, event: Any, request_id: str | None = None) -> Outcome:
        """One invocation; ``logs`` of the outcome holds the stream written since the last
        call (INIT's output first, on the first call)."""
        request_id = request_id or str(uuid.uuid4())
        outcome = self._run(self.function.invoke(event, request_id))
        outcome.logs = self.logs.take()
        if outcome.error is not None:
            outcome.error = {**outcome.error, "requestId": request_id}  # as Lambda's error body
        return outcome

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.function.stop())
            self._run(self._server.close())
            self._run(_cancel_the_rest())  # the memory watcher, a template's reader
        finally:
            self._loop.close()

    def _run(self, work: Awaitable[T]) -> T:
        return self._loop.run_until_complete(work)


async def _cancel_the_rest() -> None:
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


def open_function(
    target: Target,
    *,
    env_mode: str = "auto",
    progress: Progress | None = None,
    memory_mb: int = 256,
    timeout_s: float = 10.0,
    version: str | None = None,
) -> tuple[LocalFunction, PythonEnvironment]:
    """The target as a local function, in the Python environment ``env_mode`` chooses."""
    python = resolve_environment(target.requirements, target.python, env_mode, progress)
    function = LocalFunction(
        python,
        target.handler_env(version),
        function_name=target.name,
        memory_mb=memory_mb,
        timeout_s=timeout_s,
    )
    return function, python


def start(function: LocalFunction, python: PythonEnvironment, target: Target) -> float:
    """INIT the function; a failure becomes an error that says what to do."""
    try:
        return function.start()
    except InitFailed as exc:
        raise explain_failure(exc.error, target, python) from None


def invoke_once(
    target: Target,
    event: Any,
    *,
    env_mode: str = "auto",
    progress: Progress | None = None,
    memory_mb: int = 256,
    timeout_s: float = 10.0,
    version: str | None = None,
) -> tuple[Outcome, PythonEnvironment]:
    """``version``: the model version the handler reports (default: the file's hash prefix)."""
    function, python = open_function(
        target,
        env_mode=env_mode,
        progress=progress,
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        version=version,
    )
    with function:
        start(function, python, target)
        return function.invoke(event), python
