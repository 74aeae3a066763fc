"""The local Lambda service: the function versions a server runs, made when first needed.

A function version is a model version from the store (its Python environment resolved
from the bundle's pins, built once and cached) or a user's own handler (``serve
--handler``). ``LambdaService`` makes each one once, however many requests ask for it at
the same moment, starts INIT ahead of requests where it is told to (``warm``, the
console's ``start_init`` while an upload is still being checked), and stops the ones no
stage routes to any more. It knows nothing of HTTP, keys or stages: the front
(``apigateway``) asks it for a function and invokes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lambdaserve.bundle.pins import installed_version
from lambdaserve.bundle.reference import reference_file
from lambdaserve.functions.function import Function
from lambdaserve.functions.logbook import LogBook
from lambdaserve.functions.metrics import Metrics
from lambdaserve.functions.processes import EnvironmentServer
from lambdaserve.functions.pythons import PythonEnvironment, SilentProgress, resolve_environment
from lambdaserve.functions.settings import FunctionSettings
from lambdaserve.runtime.variables import handler_variables
from lambdaserve.store import ModelVersion, Store
from lambdaserve.store.catalog import Catalog

UNUSED_FUNCTION_S = 60.0  # a version no stage routes to is stopped after this long unused


@dataclass(frozen=True)
class HandlerSpec:
    """A user's own Lambda handler served as a function (``serve --handler``)."""

    name: str
    handler: str
    task_root: str


class LambdaService:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        settings: FunctionSettings,
        logs: LogBook,
        metrics: Metrics,
        *,
        env_mode: str = "auto",
        handlers: Iterable[HandlerSpec] = (),
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.logs = logs
        self.metrics = metrics
        self.env_mode = env_mode
        self.handlers = {spec.name: spec for spec in handlers}
        self.on_event = on_event
        self.server = EnvironmentServer()
        self.functions: dict[tuple[str, str], Function] = {}
        self._creating: dict[tuple[str, str], asyncio.Task[Function]] = {}
        self._warming: set[asyncio.Task[None]] = set()
        self._pythons: dict[tuple[str, tuple[str, ...]], PythonEnvironment] = {}

    # -- lifecycle ---------------------------------------------------------------------
    def prepare(self, warm: Iterable[tuple[str, str]]) -> None:
        """Before the event loop: start INIT of the versions to warm, so it overlaps start-up."""
        for name, version in warm:
            self.functions[(name, version)] = function = self._build(
                name, version, self._python_sync(name, version)
            )
            function.spawn_template()

    async def start(self, warm: Iterable[tuple[str, str]]) -> None:
        await self.server.start()
        for name, version in warm:
            asyncio.get_running_loop().create_task(self.warm(name, version))

    async def warm(self, name: str, version: str) -> None:
        """INIT a function version and make its first environment before any request."""
        function = await self.function(name, version)
        with contextlib.suppress(Exception):  # an INIT failure is logged; requests will report it
            await function.start(environments=max(1, self.settings.provisioned))

    def warm_later(self, name: str, version: str) -> None:
        """Start INIT of a version now, in the background (the console, after a publish)."""

        async def warming() -> None:
            with contextlib.suppress(Exception):  # reported to requests and in the log, as in warm()
                await self.warm(name, version)

        task = asyncio.get_running_loop().create_task(warming())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def close(self) -> None:
        for function in list(self.functions.values()):
            await function.stop()
        self.functions.clear()
        await self.server.close()

    def settled(self, name: str, version: str) -> bool:
        """Whether a version's INIT has run: it can take requests at once (or has failed)."""
        function = self.functions.get((name, version))
        return function is not None and function.settled

    def environments(self, name: str, versions: Iterable[str]) -> int:
        """How many environments these versions of a function have now."""
        return sum(len(f.environments) for v in versions if (f := self.functions.get((name, v))))

    def reap(self, now: float, routed: set[tuple[str, str]]) -> None:
        """Reap idle environments; stop versions not in ``routed`` once unused for a while."""
        for key, function in list(self.functions.items()):
            function.reap(now)
            if key not in routed and not function.busy and now - function.last_used > UNUSED_FUNCTION_S:
                del self.functions[key]
                asyncio.get_running_loop().create_task(function.stop())

    # -- functions ---------------------------------------------------------------------
    async def function(self, name: str, version: str) -> Function:
        """The function version, made (and its Python environment resolved) on first use."""
        key = (name, version)
        function = self.functions.get(key)
        if function is not None:
            return function
        if key not in self._creating:
            self._creating[key] = asyncio.get_running_loop().create_task(self._create(name, version))
        try:
            return await asyncio.shield(self._creating[key])
        finally:
            self._creating.pop(key, None)

    async def start_init(self, record: ModelVersion) -> Function:
        """A function for a version about to be published, its INIT started now.

        The console starts INIT while the upload is still being checked, so that the first
        request after publishing finds the version ready. The function serves nothing
        until ``adopt`` registers it (once the version really exists with this number).
        """
        python = await asyncio.to_thread(self._python_for, record)
        function = self._build(record.model, str(record.version), python, record)
        if self.settings.runtime == "default":  # runtime clients run INIT per environment
            function.spawn_template()
        return function

    def adopt(self, function: Function) -> bool:
        """Register a function made by ``start_init``; False (and it stops) if one exists."""
        key = (function.name, function.version)
        if key in self.functions or key in self._creating:
            asyncio.get_running_loop().create_task(function.stop())
            return False
        self.functions[key] = function
        return True

    async def _create(self, name: str, version: str) -> Function:
        if name in self.handlers:
            python = PythonEnvironment(python=sys.executable, isolated=False)
        else:  # may build an environment: not on the event loop
            python = await asyncio.to_thread(self._python_for, self.catalog.versions[(name, int(version))])
        function = self._build(name, version, python)
        self.functions[(name, version)] = function
        return function

    def _python_sync(self, name: str, version: str) -> PythonEnvironment:
        if name in self.handlers:
            return PythonEnvironment(python=sys.executable, isolated=False)
        return self._python_for(self.catalog.versions[(name, int(version))])

    def _reference_path(self, record: ModelVersion) -> str | None:
        summary = record.manifest.get("reference")
        return str(reference_file(summary, self.store.root / "references")) if summary else None

    def _build(
        self, name: str, version: str, python: PythonEnvironment, record: ModelVersion | None = None
    ) -> Function:
        if name in self.handlers:
            spec = self.handlers[name]
            env = {"_HANDLER": spec.handler, "LAMBDA_TASK_ROOT": spec.task_root}
            cwd: str | None = spec.task_root
        else:
            record = record or self.catalog.versions[(name, int(version))]
            env = handler_variables(
                location=str(self.store.model_path(record)),
                sha256=record.sha256,
                model_format=record.format,
                version=version,
                trusted_types=record.manifest.get("trusted_types") or (),
                sample=record.manifest.get("sample_input"),
                probabilities=record.manifest.get("probabilities"),
                reference=self._reference_path(record),
            )
            cwd = None
        return Function(
            name,
            version,
            python,
            env,
            self.settings,
            self.server,
            self.logs,
            self.metrics,
            cwd,
            notify=self.on_event,
        )

    def _python_for(self, record: ModelVersion) -> PythonEnvironment:
        requirements = tuple(record.manifest.get("requirements") or ())
        if self.settings.runtime == "awslambdaric":
            # As in AWS's base images, the runtime client sits beside the model's libraries.
            installed = installed_version("awslambdaric")
            requirements += (f"awslambdaric=={installed}" if installed else "awslambdaric",)
        python_version = str(record.manifest.get("python") or "")
        cache_key = (python_version, requirements)
        if cache_key not in self._pythons:
            progress = _LogProgress(self.logs, record.model)
            self._pythons[cache_key] = resolve_environment(
                list(requirements), python_version, self.env_mode, progress
            )
        return self._pythons[cache_key]


class _LogProgress(SilentProgress):
    """Environment builds started by the server report into the model's log."""

    def __init__(self, logs: LogBook, model: str) -> None:
        self.logs = logs
        self.model = model

    def step(self, message: str) -> None:
        self.logs.write(self.model, [f"[lambdaserve] {message}"])
