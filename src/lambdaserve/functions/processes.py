"""Execution environments seen from the gateway: a template per function version, and
the environments forked from it (see ``runtime/forkserver.py`` for the other side).

All of them connect to one Unix socket of the gateway and speak length-prefixed JSON
(an invoke frame's text bodies follow its JSON as raw bytes).
The gateway never blocks on them: every read and write is asyncio, and a kill is a
signal to a known PID. An environment that closes its connection is gone; whoever was
waiting on it learns so at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

from lambdaserve.functions.log_lines import status_kib
from lambdaserve.functions.pythons import PythonEnvironment
from lambdaserve.runtime.apigw import raw_bodies

_HEADER = struct.Struct("<I")


KillReason = Literal["timeout", "memory"]
ColdStart = tuple[Literal["Init", "Restore"], float]  # the kind and its duration in ms


class InvokeFrame(TypedDict):
    """gateway -> environment: one message of one or more invocations; ``tail`` raw bytes
    (the events' text bodies, see ``apigw.raw_bodies``) follow its JSON."""

    type: Literal["invoke"]
    requestIds: list[str]
    events: list[Any]
    deadlineMs: int
    tail: int


class InvocationResult(TypedDict, total=False):
    """One invocation's answer: the handler's ``payload``, or its ``error``."""

    payload: Any
    error: dict[str, Any]


class ResultFrame(TypedDict):
    """environment -> gateway: the answers to one message, in its order."""

    results: list[InvocationResult]
    durationMs: float
    maxMemoryMB: int
    logs: list[str]


class ExecutionEnvironment(Protocol):
    """What a function needs of an execution environment, however it runs: forked from a
    template (``Environment``) or AWS's runtime client on a Runtime API (``runtime_api``)."""

    id: str
    pid: int
    busy: bool
    invocations: int
    last_used: float
    killed_for: KillReason | None
    cold_start: ColdStart | None
    pipelined: bool  # takes the next message before the last is answered

    @property
    def alive(self) -> bool: ...

    def send(self, request_ids: list[str], events: list[Any], deadline_ms: int) -> None:
        """Hand over one message (events in the gateway's compact form)."""

    async def receive(self) -> ResultFrame:
        """The answer to the oldest message handed over; ``EnvironmentLost`` if it died."""

    async def describe(self) -> dict[str, Any]:
        """What the loaded model says of itself."""

    def kill(self, reason: KillReason | None = None) -> None: ...

    async def stop(self) -> None:
        """Kill it and wait until it is gone."""

    def rss_kib(self) -> int: ...


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


def write_frame(writer: asyncio.StreamWriter, message: dict[str, Any], tail: bytes = b"") -> None:
    data = json.dumps(message).encode()
    writer.write(_HEADER.pack(len(data)) + data + tail)


Connection = tuple[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter]


class EnvironmentServer:
    """The Unix socket every template and environment of this gateway connects to.

    The socket is bound when this object is made, before any event loop runs, so that a
    template can be spawned (and run INIT) while the server is still starting: its
    connection waits in the socket's backlog and is kept until someone asks for it.
    """

    def __init__(self) -> None:
        _remove_stale_sockets()
        self.directory = Path(tempfile.mkdtemp(prefix="lambdaserve-"))
        self.path = str(self.directory / "envs.sock")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(self.path)
        os.chmod(self.path, 0o600)
        self._socket.listen(128)
        self._waiting: dict[str, asyncio.Future[Connection]] = {}
        self._early: dict[str, Connection] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, sock=self._socket)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        else:
            self._socket.close()
        for _, _, writer in self._early.values():
            writer.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.directory)

    def expect(self, connection_id: str) -> asyncio.Future[Connection]:
        future: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        early = self._early.pop(connection_id, None)
        if early is not None:
            future.set_result(early)
        else:
            self._waiting[connection_id] = future
        return future

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        message = await read_frame(reader)
        if message is None:
            writer.close()
            return
        connection_id = str(message.get("envId") or message.get("id"))
        future = self._waiting.pop(connection_id, None)
        if future is not None and not future.done():
            future.set_result((message, reader, writer))
        elif connection_id.startswith(Template.PREFIX):
            self._early[connection_id] = (message, reader, writer)  # spawned before anyone waited
        else:
            writer.close()  # a late arrival after its timeout: closing it ends that process


def _remove_stale_sockets() -> None:
    """Remove what servers killed with SIGKILL left behind: sockets nobody listens on."""
    for directory in Path(tempfile.gettempdir()).glob("lambdaserve-*"):
        path = directory / "envs.sock"
        try:
            info = directory.stat()
            # Someone else's, or so young that its server may still be binding: not ours to judge.
            if info.st_uid != os.getuid() or time.time() - info.st_mtime < 60:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue  # alive, or not ours to judge


class Environment:
    """One execution environment: a process forked from a template, that takes one
    invocation message at a time (``ExecutionEnvironment``)."""

    pipelined = True

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
        self.killed_for: KillReason | None = None  # when the gateway killed it
        self.cold_start: ColdStart | None = None  # until its first invocation

    def send(self, request_ids: list[str], events: list[Any], deadline_ms: int) -> None:
        """Hand over one message; it waits in the socket if the environment is still busy."""
        if self.writer.is_closing():
            raise EnvironmentLost("the environment's connection is closed")
        sent, tail = raw_bodies(events)
        message: InvokeFrame = {
            "type": "invoke",
            "requestIds": request_ids,
            "events": sent,
            "deadlineMs": deadline_ms,
            "tail": len(tail),
        }
        write_frame(self.writer, dict(message), tail)

    async def receive(self) -> ResultFrame:
        """The answer to the oldest message handed over."""
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise EnvironmentLost(str(exc)) from None
        result = await read_frame(self.reader)
        if result is None:
            raise EnvironmentLost("the environment closed its connection")
        return _result_frame(result)

    async def describe(self) -> dict[str, Any]:
        """What the loaded model says of itself (see ``runtime/forkserver.py``)."""
        if self.writer.is_closing():
            raise EnvironmentLost("the environment's connection is closed")
        write_frame(self.writer, {"type": "describe"})
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise EnvironmentLost(str(exc)) from None
        answer = await read_frame(self.reader)
        if answer is None:
            raise EnvironmentLost("the environment closed its connection")
        return {k: v for k, v in answer.items() if k != "type"}

    @property
    def alive(self) -> bool:
        return not self.writer.is_closing()

    def kill(self, reason: KillReason | None = None) -> None:
        if reason and self.killed_for is None:
            self.killed_for = reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.writer.close()

    async def stop(self) -> None:
        self.kill()  # a child of the template, which reaps it

    def rss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS")


class Template:
    """The process that ran INIT for one function version; environments are forked from it.

    ``spawn()`` starts it at once, with or without an event loop (``serve`` spawns the
    templates of the versions it serves before uvicorn starts, so INIT overlaps the
    server's own start-up); ``start()`` waits, in the loop, until INIT is over.
    """

    PREFIX = "template-"

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
        self.id = f"{self.PREFIX}{uuid.uuid4().hex[:12]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.init_ms = 0.0
        self.init_memory_mb = 0  # Max Memory Used once INIT is done
        self.forks = 0
        self.init_logs: list[str] = []
        self.output: collections.deque[str] = collections.deque(maxlen=10_000)
        self._pump: threading.Thread | None = None

    def spawn(self) -> None:
        if self.process is not None:
            return
        self.process = subprocess.Popen(
            [self.python.python, "-m", "lambdaserve.runtime.forkserver", self.server.path, self.id],
            env={**os.environ, **self.python.child_env(), **self.env},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._pump = threading.Thread(target=self._pump_output, daemon=True)
        self._pump.start()

    async def start(self, timeout_s: float) -> float:
        self.spawn()
        process = self.process
        if process is None:  # spawn() just set it
            raise InitFailed({"errorMessage": "The template could not be started."}, [])
        arrival = self.server.expect(self.id)
        deadline = time.monotonic() + timeout_s
        while not arrival.done():
            await asyncio.wait((arrival,), timeout=0.05)
            if arrival.done():
                break
            if process.poll() is not None or time.monotonic() > deadline:
                arrival.cancel()
                reason = (
                    "exited during INIT"
                    if process.poll() is not None
                    else f"did not finish INIT in {timeout_s:.0f} s"
                )
                self.close()
                await asyncio.sleep(0.05)  # let the last lines of output arrive
                raise InitFailed(
                    {"errorType": "Runtime.ExitError", "errorMessage": f"The runtime {reason}."},
                    self.drain_output(),
                )
        message, reader, writer = arrival.result()
        self.init_logs = list(message.get("logs") or [])
        if message.get("type") != "template":
            writer.close()  # the failed INIT's connection: the process is gone with it
            self.close()
            error = {k: message.get(k) for k in ("errorType", "errorMessage", "stackTrace")}
            raise InitFailed(error, self.init_logs + self.drain_output())
        self.writer = writer
        self.init_ms = float(message["initMs"])
        self.init_memory_mb = int(message.get("maxMemoryMB") or 0)
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
        elapsed_ms = (time.perf_counter() - started) * 1000
        return Environment(env_id, int(message["pid"]), reader, writer), elapsed_ms

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self) -> None:
        """Kill the template and wait for it and its output, so nothing is left open."""
        self.close()
        if self.process is not None:
            await asyncio.to_thread(self.process.wait)
        if self._pump is not None:
            await asyncio.to_thread(self._pump.join, 2.0)

    def drain_output(self) -> list[str]:
        """Lines written below Python (C libraries) by the template and its children."""
        lines = []
        while self.output:
            lines.append(self.output.popleft())
        return lines

    async def _discard(self, reader: asyncio.StreamReader) -> None:
        while await read_frame(reader) is not None:  # "forked" acknowledgements
            pass

    def _pump_output(self) -> None:
        if self.process is None or self.process.stdout is None:
            return
        with self.process.stdout:
            for raw in self.process.stdout:
                self.output.append(raw.decode(errors="replace").rstrip("\n"))


def _result_frame(message: dict[str, Any]) -> ResultFrame:
    """A ``result`` frame as the forkserver writes it (see ``runtime/forkserver.py``)."""
    return {
        "results": list(message.get("results") or []),
        "durationMs": float(message.get("durationMs", 0.0)),
        "maxMemoryMB": int(message.get("maxMemoryMB", 0)),
        "logs": list(message.get("logs") or []),
    }
