"""The Lambda Runtime API, so AWS's own runtime client can be the execution environment.

With ``serve --runtime awslambdaric`` each environment is the process that runs inside
AWS's Python base images, ``python -m awslambdaric lambdaserve.runtime.handler.handler``,
pointed by ``AWS_LAMBDA_RUNTIME_API`` at an endpoint of its own, served here:

    GET  /2018-06-01/runtime/invocation/next           the next event (waits for one)
    POST /2018-06-01/runtime/invocation/{id}/response  the handler's result
    POST /2018-06-01/runtime/invocation/{id}/error     an unhandled error
    POST /2018-06-01/runtime/init/error                INIT failed

As in Lambda, INIT is everything until the runtime first asks for an event, and each
sandbox has its own endpoint (the client takes a host:port, nothing more), so every
environment gets its own loopback port. TCP_NODELAY is on (asyncio's default): without it
every small response waits for the client's delayed ACK, about 90 ms. ``Expect:
100-continue`` (libcurl sends it for larger bodies) is answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from typing import Any

from lambdaserve.functions.log_lines import status_kib
from lambdaserve.functions.processes import (
    ColdStart,
    EnvironmentLost,
    InitFailed,
    InvocationResult,
    KillReason,
    ResultFrame,
)
from lambdaserve.functions.pythons import PythonEnvironment
from lambdaserve.runtime.apigw import expand

PREFIX = "/2018-06-01/runtime"


class RuntimeAPIEnvironment:
    """One awslambdaric process and the Runtime API endpoint it polls
    (an ``ExecutionEnvironment``: one invocation per message, answered before the next)."""

    pipelined = False

    def __init__(
        self, python: PythonEnvironment, env: dict[str, str], handler: str, cwd: str | None = None
    ) -> None:
        self.python = python
        self.env = env
        self.handler = handler
        self.cwd = cwd
        self.id = f"ric-{uuid.uuid4().hex[:12]}"
        self.pid = 0
        self.busy = False
        self.invocations = 0
        self.last_used = time.monotonic()
        self.killed_for: KillReason | None = None
        self.cold_start: ColdStart | None = None
        self._message: tuple[list[str], list[Any], int] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._server: asyncio.AbstractServer | None = None
        self._events: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
        self._ready: asyncio.Future[dict[str, Any] | None] | None = None
        self._result: asyncio.Future[InvocationResult] | None = None
        self._output: list[str] = []
        self.init_logs: list[str] = []
        self._pump: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and self.killed_for is None

    async def start(self, timeout_s: float) -> float:
        """Start the client; INIT ends when it first asks for an event. Returns INIT ms."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            self.python.python,
            "-m",
            "awslambdaric",
            self.handler,
            env={
                **os.environ,
                **self.python.child_env(),
                **self.env,
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            },
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.pid = self.process.pid
        self._pump = loop.create_task(self._pump_output())
        exited = asyncio.ensure_future(self.process.wait())
        waiting: set[asyncio.Future[Any]] = {self._ready, exited}
        done, _ = await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        failure = self._ready.result() if self._ready in done else None
        if self._ready not in done or failure is not None:
            self.kill()
            error = failure or {
                "errorType": "Runtime.ExitError",
                "errorMessage": "The runtime client exited or hung during INIT.",
            }
            raise InitFailed(error, list(self._output))
        self.init_logs, self._output = list(self._output), []
        return (time.perf_counter() - started) * 1000

    def send(self, request_ids: list[str], events: list[Any], deadline_ms: int) -> None:
        """Hold the message until ``receive``: the runtime client asks for it when free."""
        if len(events) != 1:
            raise ValueError("the Runtime API takes one event per invocation")
        self._message = (request_ids, [expand(event) for event in events], deadline_ms)  # whole events

    async def receive(self) -> ResultFrame:
        if self._message is None:
            raise EnvironmentLost("nothing was handed to the runtime client")
        message, self._message = self._message, None
        return await self.invoke(*message)

    async def describe(self) -> dict[str, Any]:
        raise EnvironmentLost("the runtime client does not describe its model; use the default runtime")

    async def invoke(self, request_ids: list[str], events: list[Any], deadline_ms: int) -> ResultFrame:
        if len(events) != 1:
            raise ValueError("the Runtime API takes one event per invocation")
        self._result = asyncio.get_running_loop().create_future()
        self._output.clear()
        started = time.perf_counter()
        await self._events.put((request_ids[0], json.dumps(events[0]).encode(), deadline_ms))
        exited = asyncio.ensure_future(self.process.wait()) if self.process else None
        waiting: set[asyncio.Future[Any]] = {self._result, *([exited] if exited else [])}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if exited:
            exited.cancel()
        if self._result not in done or self._result.cancelled():
            raise EnvironmentLost("the runtime client exited or was killed")
        outcome = self._result.result()
        await asyncio.sleep(0)  # let the output pump catch the handler's last lines
        return {
            "results": [outcome],
            "durationMs": (time.perf_counter() - started) * 1000,
            "maxMemoryMB": -(-status_kib(self.pid, "VmHWM") // 1024),
            "logs": list(self._output),
        }

    def kill(self, reason: KillReason | None = None) -> None:
        if reason and self.killed_for is None:
            self.killed_for = reason
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._server is not None:
            self._server.close()
        if self._result is not None and not self._result.done():
            self._result.cancel()

    async def stop(self) -> None:
        self.kill()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                await self.process.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._pump, 2.0)

    def rss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS")

    # -- the Runtime API ---------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await _read_request(reader, writer)
                if request is None:
                    break
                method, path, headers, body = request
                await self._route(method, path, headers, body, writer)
        writer.close()

    async def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if method == "GET" and path == f"{PREFIX}/invocation/next":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)  # INIT is over: the runtime wants work
            request_id, event, deadline_ms = await self._events.get()
            arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.env.get('AWS_LAMBDA_FUNCTION_NAME')}"
            trace = f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0"
            _respond(
                writer,
                200,
                event,
                {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": arn,
                    "Lambda-Runtime-Trace-Id": trace,
                },
            )
        elif (
            method == "POST"
            and path.startswith(f"{PREFIX}/invocation/")
            and path.endswith(("/response", "/error"))
        ):
            payload = _json(body)
            if self._result is not None and not self._result.done():
                if path.endswith("/response"):
                    self._result.set_result({"payload": payload})
                else:
                    error = payload if isinstance(payload, dict) else {"errorMessage": str(payload)}
                    error.setdefault(
                        "errorType", headers.get("lambda-runtime-function-error-type", "Unknown")
                    )
                    self._result.set_result({"error": error})
            _respond(writer, 202, b'{"status":"OK"}')
        elif method == "POST" and path == f"{PREFIX}/init/error":
            error = _json(body) if body else {}
            if not isinstance(error, dict):
                error = {"errorMessage": str(error)}
            error.setdefault(
                "errorType", headers.get("lambda-runtime-function-error-type", "Runtime.InitError")
            )
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(error)
            _respond(writer, 202, b'{"status":"OK"}')
        else:
            _respond(writer, 404, b'{"errorMessage":"unknown Runtime API route"}')
        await writer.drain()

    async def _pump_output(self) -> None:
        if self.process is None or self.process.stdout is None:
            return
        async for raw in self.process.stdout:
            self._output.append(raw.decode(errors="replace").rstrip("\n"))


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, str, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    size = int(headers.get("content-length") or 0)
    body = await reader.readexactly(size) if size else b""
    return method, path.split("?", 1)[0], headers, body


def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    reason = {200: "OK", 202: "Accepted", 404: "Not Found"}.get(status, "OK")
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body.decode(errors="replace")
