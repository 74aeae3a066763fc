"""A function version and its execution environments: concurrency, batching, limits.

Lifecycle: the first invocation (or ``start()`` with provisioned concurrency) runs INIT
once in a template process; environments are forked from it as they are needed, each
already holding the loaded model. An environment takes one message at a time; the
gateway never waits on it except through asyncio.

In ``batch`` mode (see ``settings.py``) requests that arrive while environments are busy
wait in a queue, and a free environment takes many in one message, which the handler
answers with one model call; the next message is handed over before the last one is
answered, so an environment never idles while requests wait. In ``lambda`` mode each
message holds one request and, with reserved concurrency, what no environment can take
is throttled as Lambda throttles it.

Limits, as Lambda enforces them: an invocation that outlives the timeout, or an
environment whose resident memory exceeds the memory size, is killed; its requests fail
(the gateway answers 502) and REPORT says why. A crash fails only the requests that
environment was handling. Idle environments beyond the provisioned ones are reaped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from lambdaserve.functions.log_lines import Report, kill_error, timeout_line
from lambdaserve.functions.logbook import LogSink, frame_invocations
from lambdaserve.functions.metrics import Metrics
from lambdaserve.functions.processes import (
    ColdStart,
    EnvironmentLost,
    EnvironmentServer,
    ExecutionEnvironment,
    InitFailed,
    Template,
)
from lambdaserve.functions.pythons import PythonEnvironment
from lambdaserve.functions.runtime_api import RuntimeAPIEnvironment
from lambdaserve.functions.settings import FunctionSettings
from lambdaserve.runtime.apigw import COMPACT
from lambdaserve.runtime.events import route_of

_WATCH_S = 0.05
_INIT_RETRY_S = 2.0


# ok: the handler returned; error: it raised; timeout, memory: killed for a limit; crash: the
# environment died; throttled: no environment may take it; init: INIT failed.
Status = Literal["ok", "error", "timeout", "memory", "crash", "throttled", "init"]


@dataclass
class Outcome:
    """How one invocation ended: ``payload`` when the handler returned, else ``error``."""

    status: Status = "ok"
    payload: Any = None
    error: dict[str, Any] | None = None
    logs: list[str] = field(default_factory=list)  # START .. REPORT of this invocation
    report: Report | None = None  # its REPORT, once an environment ran it


@dataclass
class _Pending:
    event: Any
    request_id: str
    future: asyncio.Future[Outcome]
    size: int = 0  # the body's length
    alone: bool = False  # an explanation: a message of its own, never batched with predictions


@dataclass
class _Flight:
    """A message handed to an environment, waiting for its answer."""

    batch: list[_Pending]
    started: float
    timer: asyncio.TimerHandle
    cold: tuple[str, float] | None


@dataclass
class _Landed:
    outcomes: list[Outcome]
    duration_ms: float
    memory_mb: int
    lines: list[str]
    status: str | None = None
    error_type: str | None = None


class Function:
    def __init__(
        self,
        name: str,
        version: str,
        python: PythonEnvironment,
        env: dict[str, str],
        settings: FunctionSettings,
        server: EnvironmentServer,
        logs: LogSink,
        metrics: Metrics,
        cwd: str | None = None,
        notify: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.notify = notify or (lambda _event: None)
        self.version = version
        self.settings = settings
        self.server = server
        self.logs = logs
        self.metrics = metrics
        self.template_spec = (
            python,
            {
                **env,
                **_single_threaded(),
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_VERSION": version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(settings.timeout_s)),
            },
            cwd,
        )
        self.template: Template | None = None
        self.environments: list[ExecutionEnvironment] = []
        self.idle: list[ExecutionEnvironment] = []
        self.queue: collections.deque[_Pending] = collections.deque()
        self.forking = 0
        self.last_used = time.monotonic()
        self._template_lock = asyncio.Lock()
        self._init_failure: tuple[float, InitFailed] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._dispatching = False
        self._spawned: Template | None = None

    # -- public ------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """INIT has run: an environment can be forked at once, or INIT failed (recently)."""
        return self.template is not None or bool(self.environments) or self._init_failure is not None

    async def start(self, environments: int | None = None) -> None:
        """Run INIT now and make the provisioned environments (provisioned concurrency)."""
        await self._ensure_template()
        wanted = self.settings.provisioned if environments is None else environments
        for _ in range(max(0, wanted - len(self.environments) - self.forking)):
            self._grow_later()

    async def warm_up(self, environments: int) -> None:
        """Run INIT and have ``environments`` environments (at most the limit) made and idle:
        what a stage waits for before it sends this version its traffic. Nobody waits on this
        INIT, so it runs at idle CPU priority where the OS allows (see forkserver)."""
        if self.template is None and self._spawned is None:
            self._spawned = self._new_template(background=True)
        await self._ensure_template()
        wanted = min(environments, self.settings.limit) - len(self.environments) - self.forking
        self.forking += max(0, wanted)
        grown = [asyncio.get_running_loop().create_task(self._grow()) for _ in range(max(0, wanted))]
        self._tasks.update(grown)
        for task in grown:
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*grown, return_exceptions=True)

    async def invoke(self, event: Any, request_id: str) -> Outcome:
        return await self.submit(event, request_id)

    async def describe(self) -> dict[str, Any]:
        """What the model says of itself (``has_proba``, feature names, classes), asked of an
        idle environment (one is forked when there is none). Raises ``InitFailed``."""
        await self._ensure_template()
        if not self.idle:
            self.forking += 1
            await self._grow()
        if not self.idle:
            raise EnvironmentLost("no environment could be made to describe the model")
        env = self.idle.pop()
        env.busy = True
        try:
            return await env.describe()
        finally:
            self._release(env)

    def submit(self, event: Any, request_id: str) -> asyncio.Future[Outcome]:
        """Queue one invocation; the future resolves with its outcome."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._closed:
            stopped = {"errorType": "Runtime.ExitError", "errorMessage": "function stopped"}
            future.set_result(Outcome("crash", error=stopped))
            return future
        self.last_used = time.monotonic()
        self.queue.append(_Pending(event, request_id, future, _body_size(event), _explains(event)))
        if not self._dispatching:
            # Once per event-loop turn: the requests that arrived in the same turn go together.
            self._dispatching = True
            asyncio.get_running_loop().call_soon(self._dispatch)
        return future

    def _dispatch(self) -> None:
        self._dispatching = False
        self._schedule()

    @property
    def busy(self) -> int:
        return len(self.environments) - len(self.idle)

    def reap(self, now: float) -> None:
        """Housekeeping: log what the processes wrote below Python, reap idle environments.

        Environments idle for longer than ``idle_s`` are killed, keeping the provisioned ones.
        """
        if self.template is not None:
            output = self.template.drain_output()
            if output:
                self.logs.write(self.name, output)
        keep = self.settings.provisioned
        for env in sorted(self.idle, key=lambda e: e.last_used):
            if len(self.environments) <= keep:
                break
            if now - env.last_used > self.settings.idle_s:
                self.idle.remove(env)
                self._forget(env)
                env.kill()

    async def stop(self) -> None:
        self._closed = True
        for pending in self.queue:
            if not pending.future.done():
                pending.future.set_result(
                    Outcome(
                        "crash", error={"errorType": "Runtime.ExitError", "errorMessage": "function stopped"}
                    )
                )
        self.queue.clear()
        stopping = list(self.environments)
        for env in stopping:
            env.kill()
        self.environments.clear()
        self.idle.clear()
        for task in list(self._tasks):
            task.cancel()
        for template in (self.template, self._spawned):
            if template is not None:
                await template.stop()
        for env in stopping:
            await env.stop()  # a runtime client is our own child: wait for it
        self._update_gauges()

    # -- scheduling --------------------------------------------------------------------
    def _schedule(self) -> None:
        while self.queue and self.idle:
            env = self.idle.pop()  # the most recently used: its caches are warm
            env.busy = True
            self._update_gauges()
            self._watch()
            # Handed over now, in this loop turn; the task only waits for the answers.
            self._spawn(self._run(env, self._hand(env, self._take())))
        if not self.queue or self._closed:
            return
        room = self.settings.limit - len(self.environments) - self.forking
        wanted = len(self.queue) - self.forking if self.settings.mode == "lambda" else 1 - self.forking
        for _ in range(max(0, min(room, wanted))):
            self._grow_later()
        if self.settings.mode == "lambda" and self.settings.reserved is not None:
            # Lambda does not queue: what no environment will take is throttled now.
            while len(self.queue) > self.forking:
                pending = self.queue.pop()
                self.metrics.invocations.labels(self.name, self.version, "throttled").inc()
                if not pending.future.done():
                    pending.future.set_result(Outcome("throttled"))

    def _take(self) -> list[_Pending]:
        """The next message: queued requests in order, up to the batch limits. An explanation
        (num_samples predictions) goes alone, so that it holds up no prediction but its own
        environment's; the others are taken by the other environments, grown as usual."""
        batch = [self.queue.popleft()]
        if self.settings.mode != "batch" or self.settings.runtime != "default" or batch[0].alone:
            return batch
        size = batch[0].size
        limit, limit_bytes = self.settings.max_batch, self.settings.max_batch_bytes
        while (
            self.queue
            and len(batch) < limit
            and size + self.queue[0].size <= limit_bytes
            and not self.queue[0].alone
        ):
            batch.append(self.queue.popleft())
            size += batch[-1].size
        return batch

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ensure_template(self) -> Template:
        async with self._template_lock:
            if self.template is not None:
                return self.template
            if self._init_failure and time.monotonic() - self._init_failure[0] < _INIT_RETRY_S:
                raise self._init_failure[1]
            template, self._spawned = self._spawned or self._new_template(), None
            try:
                init_ms = await template.start(self.settings.init_timeout_s)
            except InitFailed as failure:
                await template.stop()  # reaped: a failed INIT leaves no process behind
                self._init_failure = (time.monotonic(), failure)
                self.logs.write(self.name, [*failure.logs, *_init_error_lines(failure.error)])
                self._tell(
                    "init_error",
                    errorType=failure.error.get("errorType"),
                    errorMessage=failure.error.get("errorMessage"),
                )
                raise
            self._init_failure = None
            self._tell("init", initMs=round(init_ms, 2))
            self.template = template
            self.logs.write(self.name, template.init_logs)
            self.metrics.init_duration.labels(self.name, self.version, "init").observe(init_ms / 1000)
            return template

    def spawn_template(self) -> None:
        """Start INIT now, even before the event loop runs; ``start()`` then waits for it."""
        if self.template is None and self._spawned is None:
            self._spawned = self._new_template()
            self._spawned.spawn()

    def _new_template(self, background: bool = False) -> Template:
        python, env, cwd = self.template_spec
        idle = {"LAMBDASERVE_INIT_IDLE": "1"} if background else {}
        return Template(self.server, python, {**env, **idle}, cwd)

    def _grow_later(self) -> None:
        # Counted now, not when the task runs: every _schedule in this turn must see it.
        self.forking += 1
        self._spawn(self._grow())

    async def _grow(self) -> None:
        if self.settings.runtime == "awslambdaric":
            await self._grow_runtime_client()
            return
        try:
            template = await self._ensure_template()
            env, restore_ms = await template.fork()
            first = template.forks == 1  # the environment that pays for INIT
        except InitFailed as failure:
            self.forking -= 1
            self._fail_queue(Outcome("init", error=failure.error))
            return
        except (EnvironmentLost, OSError) as exc:
            self.forking -= 1
            if self.template is not None and (
                self.template.writer is None or self.template.writer.is_closing()
            ):
                self.template.close()
                self.template = None  # the template died: the next environment runs INIT again
            self._fail_queue(
                Outcome("crash", error={"errorType": "Runtime.ExitError", "errorMessage": str(exc)})
            )
            return
        self.forking -= 1
        cold: ColdStart = ("Init", template.init_ms + restore_ms) if first else ("Restore", restore_ms)
        env.cold_start = cold
        self.metrics.cold_start(self.name, self.version, "init" if first else "restore", cold[1])
        self._adopt(env)

    async def _grow_runtime_client(self) -> None:
        """An environment running AWS's runtime client: INIT in every new environment."""
        python, env_vars, cwd = self.template_spec
        handler = env_vars.get("_HANDLER") or "lambdaserve.runtime.handler.handler"
        env = RuntimeAPIEnvironment(python, env_vars, handler, cwd)
        try:
            init_ms = await env.start(self.settings.init_timeout_s)
        except InitFailed as failure:
            self.forking -= 1
            self.logs.write(self.name, [*failure.logs, *_init_error_lines(failure.error)])
            self._fail_queue(Outcome("init", error=failure.error))
            return
        self.forking -= 1
        self.logs.write(self.name, env.init_logs)
        env.cold_start = ("Init", init_ms)
        self.metrics.cold_start(self.name, self.version, "init", init_ms)
        self.metrics.init_duration.labels(self.name, self.version, "init").observe(init_ms / 1000)
        self._adopt(env)

    def _adopt(self, env: ExecutionEnvironment) -> None:
        if self._closed:
            env.kill()
            return
        self.environments.append(env)
        self.idle.append(env)
        self._update_gauges()
        self._schedule()

    def _fail_queue(self, outcome: Outcome) -> None:
        while self.queue:
            pending = self.queue.popleft()
            if not pending.future.done():
                pending.future.set_result(outcome)

    # -- messages to one environment ----------------------------------------------------
    async def _run(self, env: ExecutionEnvironment, first: _Flight) -> None:
        """Keep the environment busy while requests wait; answer each batch as it lands."""
        flight: _Flight | None = first
        while flight is not None:
            landed = await self._land(env, flight)
            following = None
            if self.queue and env.pipelined and env.alive and not self._closed:
                # Pipelined: the environment starts on the next batch before this one is answered.
                following = self._hand(env, self._take())
            self._answer(flight, landed)
            flight = following
        self._release(env)

    def _hand(self, env: ExecutionEnvironment, batch: list[_Pending]) -> _Flight:
        cold, env.cold_start = env.cold_start, None
        # The timeout is a timer that kills the environment; the pending read then ends at once.
        timer = asyncio.get_running_loop().call_later(self.settings.timeout_s, env.kill, "timeout")
        flight = _Flight(batch, time.perf_counter(), timer, cold)
        deadline_ms = int((time.time() + self.settings.timeout_s) * 1000)
        with contextlib.suppress(EnvironmentLost):  # noticed when the answer is awaited
            env.send([p.request_id for p in batch], [p.event for p in batch], deadline_ms)
        return flight

    async def _land(self, env: ExecutionEnvironment, flight: _Flight) -> _Landed:
        batch = flight.batch
        try:
            result = await env.receive()
        except EnvironmentLost:
            env.kill()
            reason = env.killed_for or "crash"
            self._tell("environment_killed", reason=reason, requests=len(batch))
            duration = (time.perf_counter() - flight.started) * 1000
            ids = [p.request_id for p in batch]
            return _Landed(
                [Outcome(reason, error=kill_error(reason, duration, self.settings.memory_mb)) for _ in batch],
                duration,
                self.settings.memory_mb if reason == "memory" else env.rss_kib() // 1024,
                [timeout_line(i, duration / 1000) for i in ids] if reason == "timeout" else [],
                "timeout" if reason == "timeout" else "error",
                {"memory": "Runtime.OutOfMemory", "crash": "Runtime.ExitError"}.get(reason),
            )
        finally:
            flight.timer.cancel()
        outcomes = [
            Outcome(payload=r.get("payload")) if "payload" in r else Outcome("error", error=r.get("error"))
            for r in result["results"]
        ]
        return _Landed(
            outcomes,
            float(result.get("durationMs", 0.0)),
            int(result.get("maxMemoryMB", 0)),
            list(result.get("logs") or []),
        )

    def _answer(self, flight: _Flight, landed: _Landed) -> None:
        ids = [p.request_id for p in flight.batch]
        framed = self._log(
            ids,
            landed.lines,
            landed.duration_ms,
            landed.memory_mb,
            flight.cold,
            landed.status,
            landed.error_type,
        )
        self.metrics.batch_size.labels(self.name, self.version).observe(len(flight.batch))
        for pending, outcome, (logs, report) in zip(flight.batch, landed.outcomes, framed, strict=True):
            outcome.logs, outcome.report = logs, report
            self.metrics.invocations.labels(self.name, self.version, outcome.status).inc()
            if not pending.future.done():
                pending.future.set_result(outcome)

    def _release(self, env: ExecutionEnvironment) -> None:
        env.busy = False
        env.invocations += 1
        env.last_used = time.monotonic()
        if env.killed_for is not None or not env.alive:
            self._forget(env)
        elif not self._closed:
            self.idle.append(env)
        self._update_gauges()
        self._schedule()

    def _forget(self, env: ExecutionEnvironment) -> None:
        if env in self.environments:
            self.environments.remove(env)
        self._update_gauges()

    def _log(
        self,
        ids: list[str],
        lines: list[str],
        duration: float,
        memory: int,
        cold: tuple[str, float] | None,
        status: str | None,
        error_type: str | None,
    ) -> list[tuple[list[str], Report]]:
        framed = frame_invocations(
            ids, lines, self.version, duration, self.settings.memory_mb, memory, cold, status, error_type
        )
        self.logs.write(self.name, [line for lines, _ in framed for line in lines])
        return framed

    # -- limits ------------------------------------------------------------------------
    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_memory())

    async def _watch_memory(self) -> None:
        limit = self.settings.memory_mb * 1024
        while any(env.busy for env in self.environments):
            for env in self.environments:
                if env.busy and env.rss_kib() > limit:
                    env.kill("memory")
            await asyncio.sleep(_WATCH_S)

    def _tell(self, event: str, **fields: Any) -> None:
        self.notify({"event": event, "model": self.name, "version": self.version, **fields})

    def _update_gauges(self) -> None:
        busy = sum(1 for env in self.environments if env.busy)
        self.metrics.environments_changed(self.name, self.version, busy, len(self.environments))


def _body_size(event: Any) -> int:
    fields = event.get(COMPACT, event) if isinstance(event, dict) else {}
    body = fields.get("body") if isinstance(fields, dict) else None
    return len(body) if isinstance(body, (str, list)) else 0


def _explains(event: Any) -> bool:
    fields = event.get(COMPACT) if isinstance(event, dict) else None
    if isinstance(fields, dict):  # the gateway's compact event names its route
        return fields.get("route") == "explain"
    return route_of(event) == "explain"


def _single_threaded() -> dict[str, str]:
    # One environment is one thread of work; parallelism comes from more environments.
    return dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")


def _init_error_lines(error: dict[str, Any]) -> list[str]:
    trace = [line.rstrip() for frame in error.get("stackTrace") or [] for line in str(frame).splitlines()]
    return [f"[ERROR] {error.get('errorType')}: {error.get('errorMessage')}", *trace]
