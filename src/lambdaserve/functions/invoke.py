"""One invocation in a fresh execution environment, as ``sam local invoke`` does it.

Used by ``lambdaserve invoke`` and by the package step's smoke test: choose the Python
environment for the target, start a worker (INIT), invoke it, and hand back the
result with Lambda's log lines. Failures that the user can act on become
``LambdaserveError`` with the cause and the fix.
"""

from __future__ import annotations

from typing import Any

from lambdaserve.functions.pythons import Progress, PythonEnvironment, resolve_environment
from lambdaserve.functions.target import Target, explain_failure
from lambdaserve.functions.worker import ExecutionEnvironment, InitFailed, Invocation


def open_environment(
    target: Target,
    *,
    env_mode: str = "auto",
    progress: Progress | None = None,
    memory_mb: int = 256,
    timeout_s: float = 10.0,
    version: str | None = None,
) -> tuple[ExecutionEnvironment, PythonEnvironment]:
    python = resolve_environment(target.requirements, target.python, env_mode, progress)
    environment = ExecutionEnvironment(
        python,
        target.handler_env(version),
        function_name=target.name,
        memory_mb=memory_mb,
        timeout_s=timeout_s,
    )
    return environment, python


def start(environment: ExecutionEnvironment, python: PythonEnvironment, target: Target) -> float:
    """INIT the environment; a failure becomes an error that says what to do."""
    try:
        return environment.start()
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
) -> tuple[Invocation, PythonEnvironment]:
    environment, python = open_environment(
        target, env_mode=env_mode, progress=progress, memory_mb=memory_mb, timeout_s=timeout_s
    )
    with environment:
        start(environment, python, target)
        return environment.invoke(event), python
