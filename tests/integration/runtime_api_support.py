"""A Lambda Runtime API served by a test, for runtimes run by the real awslambdaric.

The runtime (``python -m awslambdaric`` here, or the Lambda image's entrypoint) imports the
handler (INIT), then loops: GET ``/invocation/next``, call the handler, POST the result.
``RuntimeAPI`` plays Lambda's side on 127.0.0.1: events queued by the test go out, posts
come back in the order they arrive.

Emulation limits: one execution environment per server; deadlines are sent but never
enforced; no SnapStart ``/restore`` routes and no Extensions or Telemetry API. Posts are
recorded as they arrive, not checked against the request ids handed out.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parent.parent / "events"
RUNTIME = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:news"
# INIT imports scikit-learn: ~1.5 s here, far longer on a loaded CI machine.
FIRST_POST_TIMEOUT_S = 60.0
POST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Post:
    """What the runtime posted: ``kind`` is "response", "error" or "init/error"."""

    kind: str
    request_id: str | None
    error_type: str | None
    body: Any


class RuntimeAPI:
    """The Runtime API of one execution environment: queued events out, posted results in."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.posts: queue.Queue[Post] = queue.Queue()
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeAPIHandler)
        self._server.api = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def invoke(self, event: dict[str, Any]) -> str:
        request_id = str(uuid.uuid4())
        self.events.put((request_id, json.dumps(event).encode()))
        return request_id

    def next_event(self) -> tuple[str, bytes] | None:
        """Block as Lambda does between invocations, until an event comes or the server stops."""
        while not self.stopping.is_set():
            try:
                return self.events.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class RuntimeAPIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real Runtime API
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers and every call takes ~90 ms instead of well under 1 ms.
    disable_nagle_algorithm = True

    @property
    def api(self) -> RuntimeAPI:
        return self.server.api  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        if self.path != f"{RUNTIME}/invocation/next":
            self._reply(404, {"errorMessage": f"No route {self.path}"})
            return
        event = self.api.next_event()
        if event is None:
            self.close_connection = True
            return
        request_id, payload = event
        headers = {
            # aws-lambda-cpp fails the whole runtime without a request id; awslambdaric
            # turns the rest into the LambdaContext.
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
            "Lambda-Runtime-Trace-Id": "Root=1-66a0c7f2-5b1e9c2a6f7d3e4b8a9c0d1e;Sampled=0",
        }
        self._reply(200, payload, headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        route = self.path.removeprefix(f"{RUNTIME}/").split("/")
        if route == ["init", "error"]:
            kind, request_id = "init/error", None
        elif len(route) == 3 and route[0] == "invocation" and route[2] in ("response", "error"):
            kind, request_id = route[2], route[1]
        else:
            self._reply(404, {"errorMessage": f"No route {self.path}"})
            return
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        self.api.posts.put(Post(kind, request_id, error_type, json.loads(body) if body else None))
        # Lambda answers 202; awslambdaric's /init/error post fails on any other status.
        self._reply(202, {"status": "OK"})

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the runtime's own log, kept in a file, is what a failing test shows


@dataclass
class Function:
    """A runtime process (awslambdaric, on its own or in an image) serving a RuntimeAPI."""

    api: RuntimeAPI
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_post(self, timeout_s: float = POST_TIMEOUT_S) -> Post:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return self.api.posts.get(timeout=0.1)
            except queue.Empty:
                pass
            if self.process.poll() is not None and self.api.posts.empty():
                pytest.fail(f"awslambdaric exited ({self.process.returncode}):\n{self.log()}")
        pytest.fail(f"awslambdaric posted nothing within {timeout_s} s:\n{self.log()}")

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        finally:
            self.api.close()


def api_gateway_event(body: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "apigw-rest-post.json").read_text())
    event["body"] = body
    return event
