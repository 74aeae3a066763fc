"""One execution environment, seen from the host: a child process running the bootstrap.

Lifecycle: ``start()`` spawns the process and waits for INIT (``ready`` or
``initError``); ``invoke()`` sends one event and waits for its result, killing the
process when the function's timeout or memory size is exceeded, as Lambda does; after a
kill the environment is gone and the next ``invoke()`` starts a fresh one (a new cold
start with its own Init Duration); ``close()`` ends it.

Threads: one reader per pipe (protocol messages on stdout, log lines on stderr), so a
chatty handler can never block the protocol, and the waiting side can watch the clock
and the memory while it waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any

from lambdaserve.functions.log_lines import (
    Report,
    end_line,
    kill_error,
    start_line,
    status_kib,
    timeout_line,
)
from lambdaserve.functions.pythons import PythonEnvironment
from lambdaserve.runtime.bootstrap import LOG_END_MARKER

_POLL_S = 0.02


class InitFailed(Exception):
    """INIT raised: the handler module or the model could not be loaded."""

    def __init__(self, error: dict[str, Any], logs: list[str]) -> None:
        super().__init__(error.get("errorMessage", "INIT failed"))
        self.error = error
        self.logs = logs


@dataclass
class Invocation:
    """What one invocation produced: the payload or the error, its logs and its REPORT."""

    request_id: str
    payload: Any = None
    error: dict[str, Any] | None = None
    status: str = "ok"  # "ok" | "error" (function error) | "timeout" | "memory" | "crash"
    report: Report | None = None
    logs: list[str] = field(default_factory=list)  # as Lambda writes them, START to REPORT


class ExecutionEnvironment:
    def __init__(
        self,
        environment: PythonEnvironment,
        env: dict[str, str],
        *,
        function_name: str,
        version: str = "$LATEST",
        memory_mb: int = 256,
        timeout_s: float = 10.0,
        cwd: str | None = None,
    ) -> None:
        self.environment = environment
        self.function_name = function_name
        self.version = version
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.cwd = cwd
        self.env = {
            **os.environ,
            **environment.child_env(),
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(timeout_s)),
            **env,
        }
        self.process: subprocess.Popen[str] | None = None
        self.init_ms: float | None = None
        self._cold = True
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._logs: queue.Queue[str | None] = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._init_logs: list[str] = []
        self.init_memory_mb = 0  # Max Memory Used once INIT is done

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> float:
        """Spawn and INIT; return the Init Duration in ms, or raise InitFailed."""
        started = time.perf_counter()
        self._messages = queue.Queue()
        self._logs = queue.Queue()
        self.process = subprocess.Popen(
            [self.environment.python, "-m", "lambdaserve.runtime.bootstrap"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
            cwd=self.cwd,
        )
        self._readers = [
            _reader(self.process.stdout, self._messages, parse=True),
            _reader(self.process.stderr, self._logs, parse=False),
        ]
        message = self._wait_message(max(self.timeout_s, 10.0) + 60.0)
        if message is None or message.get("type") != "ready":
            logs = self._drain_logs(until=None)
            self.close()
            error = message or {
                "errorType": "Runtime.ExitError",
                "errorMessage": "The execution environment exited during INIT.",
            }
            raise InitFailed(error, logs)
        self.init_ms = float(message.get("initMs") or (time.perf_counter() - started) * 1000)
        self.init_memory_mb = int(message.get("maxMemoryMB") or 0)
        self._init_logs = self._drain_logs(until="init")
        self._cold = True
        return self.init_ms

    def close(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin:
                process.stdin.close()  # EOF: the bootstrap's loop ends and it exits
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reader in self._readers:
            reader.join(timeout=2)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> ExecutionEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- invocations -------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        if not self.alive:
            self.start()
        self._send({"type": "describe"})
        message = self._wait_message(30.0)
        if message is None or message.get("type") != "description":
            raise InitFailed({"errorMessage": "The execution environment did not describe its model."}, [])
        return {k: v for k, v in message.items() if k != "type"}

    def invoke(self, event: Any, request_id: str | None = None) -> Invocation:
        request_id = request_id or str(uuid.uuid4())
        if not self.alive:
            self.start()
        init_ms = self.init_ms if self._cold else None
        # INIT's output comes before the first START, as in the function's log stream.
        lines = [*self._init_logs] if self._cold else []
        self._cold = False
        lines.append(start_line(request_id, self.version))
        deadline = time.time() + self.timeout_s
        self._send(
            {
                "type": "invoke",
                "requestId": request_id,
                "event": event,
                "deadlineMs": int(deadline * 1000),
            }
        )
        started = time.perf_counter()
        outcome = self._wait_result(request_id, started)
        invocation = Invocation(request_id=request_id)
        if outcome is None or outcome.get("type") not in ("result", "error"):
            return self._killed(invocation, outcome, lines, started, init_ms)
        lines += self._drain_logs(until=request_id)
        lines.append(end_line(request_id))
        if outcome["type"] == "result":
            invocation.payload = outcome.get("payload")
        else:
            invocation.status = "error"
            invocation.error = {k: outcome.get(k) for k in ("errorMessage", "errorType", "stackTrace")}
            invocation.error["requestId"] = request_id
        invocation.report = Report(
            request_id,
            float(outcome.get("durationMs", 0.0)),
            self.memory_mb,
            int(outcome.get("maxMemoryMB", 0)),
            init_ms,
        )
        lines.append(invocation.report.line())
        invocation.logs = lines
        return invocation

    def _killed(
        self,
        invocation: Invocation,
        outcome: dict[str, Any] | None,
        lines: list[str],
        started: float,
        init_ms: float | None,
    ) -> Invocation:
        reason = (outcome or {}).get("type", "crash")
        used = (outcome or {}).get("rssMB", 0)
        self._kill()
        duration = (time.perf_counter() - started) * 1000
        lines += self._drain_logs(until=None)
        request_id = invocation.request_id
        error = kill_error(reason, duration, self.memory_mb)
        error_type, message = error["errorType"], error["errorMessage"]
        invocation.status = reason
        status = "timeout" if reason == "timeout" else "error"
        if reason == "timeout":
            lines.append(timeout_line(request_id, duration / 1000))
        elif reason == "memory":
            used = self.memory_mb
        lines.append(f"RequestId: {request_id} Error: {message}")
        lines.append(end_line(request_id))
        invocation.error = {**error, "requestId": request_id}
        invocation.report = Report(
            request_id,
            duration,
            self.memory_mb,
            int(used),
            init_ms,
            status=status,
            error_type=error_type if status == "error" else None,
        )
        lines.append(invocation.report.line())
        invocation.logs = lines
        return invocation

    # -- plumbing ----------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        if self.process is None or self.process.stdin is None:
            raise InitFailed({"errorMessage": "The execution environment is not running."}, [])
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process died; the wait below reports it as a crash

    def _wait_message(self, timeout_s: float) -> dict[str, Any] | None:
        try:
            return self._messages.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _wait_result(self, request_id: str, started: float) -> dict[str, Any] | None:
        """The child's reply, or a synthetic {"type": "timeout" | "memory" | "crash"}."""
        limit_kib = self.memory_mb * 1024
        while True:
            try:
                message = self._messages.get(timeout=_POLL_S)
            except queue.Empty:
                pass
            else:
                if message is None:  # stdout closed: the process is gone
                    return {"type": "crash"}
                if message.get("requestId") == request_id:
                    return message
                continue
            if time.perf_counter() - started > self.timeout_s:
                return {"type": "timeout", "rssMB": _rss_kib(self.process) // 1024}
            rss = _rss_kib(self.process)
            if rss > limit_kib:
                return {"type": "memory", "rssMB": rss // 1024}

    def _drain_logs(self, until: str | None) -> list[str]:
        """Log lines up to this invocation's end marker (or all that arrive until EOF)."""
        lines: list[str] = []
        marker = f"{LOG_END_MARKER}{until}" if until else None
        while True:
            try:
                line = self._logs.get(timeout=5.0 if marker else 0.5)
            except queue.Empty:
                return lines
            if line is None or (marker and line == marker):
                return lines
            if not line.startswith(LOG_END_MARKER):
                lines.append(line)

    def _kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError):
                self.process.kill()
            self.process.wait()
        self.close()
        self._cold = True


def _reader(stream: IO[str] | None, sink: queue.Queue[Any], *, parse: bool) -> threading.Thread:
    def pump() -> None:
        for line in stream or ():
            line = line.rstrip("\n")
            if parse:
                try:
                    sink.put(json.loads(line))
                except json.JSONDecodeError:
                    continue
            else:
                sink.put(line)
        sink.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _rss_kib(process: subprocess.Popen[str] | None) -> int:
    return status_kib(process.pid) if process is not None else 0
