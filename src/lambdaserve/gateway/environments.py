"""Execution environments seen from the gateway: a template per function version, and
the environments forked from it (see ``runtime/forkserver.py`` for the other side).

All of them connect to one Unix socket of the gateway and speak length-prefixed JSON.
The gateway never blocks on them: every read and write is asyncio, and a kill is a
signal to a known PID. An environment that closes its connection is gone; whoever was
waiting on it learns so at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lambdaserve.execution.environments import PythonEnvironment

_HEADER = struct.Struct("<I")


class InitFailed(Exception):
    """INIT raised, or the template died or hung before it was ready."""

    def __init__(self, error: dict[str, Any], logs: list[str]) -> None:
        super().__init__(error.get("errorMessage", "INIT failed"))
        self.error = error
        self.logs = logs


class EnvironmentLost(Exception):
    """The environment's connection closed: it crashed or was killed."""


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        data: dict[str, Any] = json.loads(await reader.readexactly(size))
        return data
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def write_frame(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    writer.write(_HEADER.pack(len(data)) + data)


Connection = tuple[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter]


class EnvironmentServer:
    """The Unix socket every template and environment of this gateway connects to."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="lambdaserve-"))
        self.path = str(self.directory / "envs.sock")
        self._waiting: dict[str, asyncio.Future[Connection]] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.directory)

    def expect(self, connection_id: str) -> asyncio.Future[Connection]:
        future: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._waiting[connection_id] = future
        return future

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        message = await read_frame(reader)
        if message is None:
            writer.close()
            return
        future = self._waiting.pop(str(message.get("envId") or message.get("id")), None)
        if future is None or future.done():
            writer.close()  # nobody asked for it (a late arrival after a timeout)
            return
        future.set_result((message, reader, writer))


class Environment:
    """One execution environment: a process that takes one invocation message at a time."""

    def __init__(
        self, env_id: str, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.id = env_id
        self.pid = pid
        self.reader = reader
        self.writer = writer
        self.busy = False
        self.invocations = 0
        self.last_used = time.monotonic()
        self.killed_for: str | None = None  # "timeout" | "memory" when the gateway killed it
        self.cold_start: tuple[str, float] | None = None  # ("Init" | "Restore", ms) until first use

    async def invoke(self, request_ids: list[str], events: list[Any], deadline_ms: int) -> dict[str, Any]:
        write_frame(
            self.writer,
            {"type": "invoke", "requestIds": request_ids, "events": events, "deadlineMs": deadline_ms},
        )
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise EnvironmentLost(str(exc)) from None
        result = await read_frame(self.reader)
        if result is None:
            raise EnvironmentLost("the environment closed its connection")
        return result

    @property
    def alive(self) -> bool:
        return not self.writer.is_closing()

    def kill(self, reason: str | None = None) -> None:
        if reason and self.killed_for is None:
            self.killed_for = reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.writer.close()

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")


def proc_status_kib(pid: int, field: str) -> int:
    """A memory figure of a process from /proc/PID/status, in KiB (0 when unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


class Template:
    """The process that ran INIT for one function version; environments are forked from it."""

    def __init__(
        self,
        server: EnvironmentServer,
        python: PythonEnvironment,
        env: dict[str, str],
        cwd: str | None = None,
    ) -> None:
        self.server = server
        self.python = python
        self.env = env
        self.cwd = cwd
        self.id = f"template-{uuid.uuid4().hex[:12]}"
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.init_ms = 0.0
        self.forks = 0
        self.init_logs: list[str] = []
        self.stderr_lines: asyncio.Queue[str] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float) -> float:
        arrival = self.server.expect(self.id)
        self.process = await asyncio.create_subprocess_exec(
            self.python.python,
            "-m",
            "lambdaserve.runtime.forkserver",
            self.server.path,
            self.id,
            env={**os.environ, **self.python.child_env(), **self.env},
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._pump = asyncio.get_running_loop().create_task(self._pump_output())
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.process.wait())
        waiting: set[asyncio.Future[Any]] = {arrival, exited}
        done, _ = await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if arrival not in done:
            arrival.cancel()
            self.close()
            reason = "exited during INIT" if exited in done else f"did not finish INIT in {timeout_s:.0f} s"
            raise InitFailed(
                {"errorType": "Runtime.ExitError", "errorMessage": f"The runtime {reason}."},
                self._drain_output(),
            )
        exited.cancel()
        message, reader, writer = arrival.result()
        self.init_logs = list(message.get("logs") or [])
        if message.get("type") != "template":
            self.close()
            error = {k: message.get(k) for k in ("errorType", "errorMessage", "stackTrace")}
            raise InitFailed(error, self.init_logs + self._drain_output())
        self.writer = writer
        self.init_ms = float(message["initMs"])
        asyncio.get_running_loop().create_task(self._discard(reader))
        return self.init_ms

    async def fork(self, timeout_s: float = 30.0) -> tuple[Environment, float]:
        """A new environment and how long it took to be ready (its restore duration)."""
        if self.writer is None or self.writer.is_closing():
            raise EnvironmentLost("the template is not running")
        started = time.perf_counter()
        self.forks += 1
        env_id = f"env-{uuid.uuid4().hex[:12]}"
        arrival = self.server.expect(env_id)
        write_frame(self.writer, {"type": "fork", "envId": env_id})
        await self.writer.drain()
        try:
            message, reader, writer = await asyncio.wait_for(arrival, timeout_s)
        except asyncio.TimeoutError:
            raise EnvironmentLost("a forked environment did not connect back") from None
        return Environment(env_id, int(message["pid"]), reader, writer), (
            time.perf_counter() - started
        ) * 1000

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self) -> None:
        """Kill the template and wait for it and its output, so nothing is left open."""
        self.close()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                await self.process.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._pump, 2.0)

    async def _discard(self, reader: asyncio.StreamReader) -> None:
        while await read_frame(reader) is not None:  # "forked" acknowledgements
            pass

    async def _pump_output(self) -> None:
        """Output written below Python (C libraries), by the template and its children."""
        if self.process is None or self.process.stdout is None:
            return
        async for raw in self.process.stdout:
            await self.stderr_lines.put(raw.decode(errors="replace").rstrip("\n"))

    def _drain_output(self) -> list[str]:
        lines = []
        while not self.stderr_lines.empty():
            lines.append(self.stderr_lines.get_nowait())
        return lines
