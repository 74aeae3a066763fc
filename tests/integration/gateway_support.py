"""Helpers for the gateway's integration tests: real ``lambdaserve serve`` processes and
in-process gateways.

A served gateway is a ``lambdaserve serve --json`` process on a free loopback port with its
own state directory; its first stdout line says where it listens and which key to use. It is
stopped by PID (SIGTERM, then SIGKILL when it has not exited in 15 s); the gateway kills its
execution environments on the way out. After a ``kill -9`` nobody is left to do that, so the
environments it started are watched until they exit on their own (they do when the gateway's
socket closes) and killed if they do not.

An in-process gateway runs in ``asyncio.run``, with fake clocks where a test wants exact time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.apigateway.http import Request, Response
from lambdaserve.store import Store

LAMBDASERVE = Path(sys.executable).with_name("lambdaserve")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
T = TypeVar("T")

# A plain Lambda handler, as a user writes one. What it does depends on the JSON body.
TOOLS_HANDLER = """
import json
import os
import time
from pathlib import Path


def handler(event, context):
    body = json.loads(event["body"]) if event.get("body") else None
    if body == "crash":
        os._exit(1)
    if body == "malformed":
        return "not a proxy response"
    if isinstance(body, dict):
        if "pidfile" in body:
            Path(body["pidfile"]).write_text(str(os.getpid()))
        if "allocate_mb" in body:
            held = []
            for _ in range(body["allocate_mb"] // 10):
                held.append(b"x" * (10 * 1024 * 1024))  # written, so resident
                time.sleep(0.01)
        time.sleep(body.get("sleep", 0))
    seen = {
        "resource": event["resource"],
        "path": event["path"],
        "httpMethod": event["httpMethod"],
        "pathParameters": event["pathParameters"],
        "query": event["queryStringParameters"],
        "stagePath": event["requestContext"]["path"],
        "stage": event["requestContext"]["stage"],
        "body": body,
    }
    print("tools handled", context.aws_request_id)
    if isinstance(body, dict) and "answer_headers" in body:  # headers as the caller asks for them
        seen["extendedRequestId"] = event["requestContext"]["extendedRequestId"]
        return {
            "statusCode": 200,
            "headers": body["answer_headers"],
            "multiValueHeaders": body.get("answer_multi_headers"),
            "body": json.dumps(seen),
        }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(seen)}
"""


def write_tools_handler(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tools.py").write_text(TOOLS_HANDLER)
    return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]; [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(pid: int) -> dict[int, str]:
    """Every living process below ``pid``, with its start time (to tell a reused PID apart)."""
    stats = {int(e.name): _stat(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit()}
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, stat in stats.items() if len(stat) > 19 and stat[1] == str(parent)]
        found.update({child: stats[child][19] for child in children})
        frontier += children
    return found


def is_alive(pid: int, started: str) -> bool:
    """Whether the process that had this PID and start time still runs."""
    stat = _stat(pid)
    return len(stat) > 19 and stat[19] == started and stat[0] not in ("Z", "X")


def wait_until(condition: Callable[[], T], timeout_s: float, interval_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


@dataclass
class Served:
    """One ``lambdaserve serve`` process and what it announced."""

    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    state_dir: Path
    errors: Path  # the server's stderr
    api_key: str = ""
    admin_token: str = ""
    known_children: dict[int, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return str(self.info["base"])

    def post(
        self, path: str, body: bytes | str, key: str | None = None, timeout: float = 30.0
    ) -> httpx.Response:
        headers = {"x-api-key": self.api_key if key is None else key} if key != "" else {}
        return httpx.post(self.base + path, content=body, headers=headers, timeout=timeout)

    def model_log(self, name: str) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.known_children.update(descendants(self.process.pid))
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._reap_children()

    def kill9(self) -> None:
        """``kill -9`` the server, as a crash would."""
        if self.process.poll() is None:
            self.known_children.update(descendants(self.process.pid))
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        self._reap_children()

    def _reap_children(self) -> None:
        # Environments exit once the gateway's socket closes; give them a moment, then insist.
        def alive() -> list[int]:
            return [pid for pid, started in self.known_children.items() if is_alive(pid, started)]

        deadline = time.monotonic() + 5.0
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_server(state_dir: Path, *args: str, cwd: Path | None = None, attempts: int = 3) -> Served:
    """``lambdaserve serve --json`` on a free port; returns once it listens.

    Another process may take the port between our choosing it and the server binding it; then
    the server exits saying so, and another port is tried. The failed attempt made the key it
    announces no more, so a new one is made on the same default plan.
    """
    replacement = ""
    for attempt in range(attempts):
        port = free_port()
        output = state_dir.parent / f"serve-{port}.out"
        errors = state_dir.parent / f"serve-{port}.err"
        command = [str(LAMBDASERVE), "serve", "--state-dir", str(state_dir), "--port", str(port), "--json"]
        with output.open("wb") as stdout, errors.open("wb") as stderr:
            process = subprocess.Popen(
                [*command, *args], stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=cwd
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while (
            not output.read_text().endswith("\n") and process.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        if output.read_text().endswith("\n"):
            break
        if process.poll() is None:
            process.kill()
        process.wait(STOP_TIMEOUT_S)
        if "Cannot listen on" not in errors.read_text() or attempt == attempts - 1:
            raise AssertionError(f"lambdaserve serve did not start: {errors.read_text()}")
        if "--no-api-key" not in args:
            store = Store(state_dir)
            replacement = store.create_key("retried", "default")[1]
            store.close()
    info = json.loads(output.read_text().splitlines()[0])
    served = Served(process, info, state_dir, errors)
    served.admin_token = (state_dir / "admin-token").read_text().strip()
    served.api_key = str(info.get("api_key", "")) or replacement
    return served


class ServerPool:
    """Servers started by one fixture, all stopped by its teardown."""

    def __init__(self) -> None:
        self.servers: list[Served] = []

    def start(self, state_dir: Path, *args: str, cwd: Path | None = None) -> Served:
        served = start_server(state_dir, *args, cwd=cwd)
        self.servers.append(served)
        return served

    def stop_all(self) -> None:
        for served in self.servers:
            served.stop()


# -- in-process ---------------------------------------------------------------------------
class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_gateway(
    state_dir: Path,
    settings: GatewaySettings,
    scenario: Callable[[Gateway], Awaitable[T]],
    **injected: Callable[[], float],
) -> T:
    """Run ``scenario`` against a started in-process gateway, then close it."""

    async def main() -> T:
        store = Store(state_dir)
        gateway = Gateway(store, settings, **injected)
        await gateway.start()
        try:
            return await scenario(gateway)
        finally:
            await gateway.close()  # stops every function, waiting for the processes it kills
            store.close()

    return asyncio.run(main())


def predict(path: str, body: str, key: str | None = None) -> Request:
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    return Request("POST", path, headers, body.encode())


def body_of(response: Response) -> Any:
    return json.loads(response.body)
