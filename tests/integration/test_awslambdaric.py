"""The real awslambdaric runs the handler against a Lambda Runtime API served by the test.

In the Lambda image, awslambdaric imports ``lambdaserve.runtime.handler`` (INIT), then loops:
GET ``/invocation/next``, call ``handler(event, context)``, POST the result. Here a small
server on 127.0.0.1 plays the Runtime API, so the handler is driven by the same client and
C extension (aws-lambda-cpp over libcurl) as in production, in a subprocess of its own.

Emulation limits: one execution environment per server; deadlines are sent but never
enforced; no SnapStart ``/restore`` routes and no Extensions or Telemetry API. Posts are
recorded as they arrive, not checked against the request ids handed out.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest.mock import ANY

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
    """``python -m awslambdaric`` running the handler against a RuntimeAPI."""

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


@pytest.fixture
def start_function(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Function]]:
    started: list[Function] = []

    def start(lambdaserve_env: dict[str, str]) -> Function:
        # Nothing from the test's own AWS setup leaks in, nor a proxy that libcurl would use.
        dropped = ("AWS_", "_LAMBDA", "LAMBDASERVE_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
        api = RuntimeAPI()
        env.update(lambdaserve_env, AWS_LAMBDA_RUNTIME_API=api.address)
        log_path = tmp_path / f"runtime-{len(started)}.log"
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "awslambdaric", "lambdaserve.runtime.handler.handler"],
                    env=env,
                    cwd=tmp_path,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            except BaseException:
                api.close()
                raise
        started.append(Function(api, process, log_path))
        return started[-1]

    yield start
    for function in started:
        function.stop()


@pytest.fixture
def model_env(text_model: Path) -> dict[str, str]:
    """The environment ``lambdaserve package`` gives the function: the model and its hash."""
    return {
        "LAMBDASERVE_MODEL": str(text_model),
        "LAMBDASERVE_MODEL_SHA256": hashlib.sha256(text_model.read_bytes()).hexdigest(),
    }


def api_gateway_event(body: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "apigw-rest-post.json").read_text())
    event["body"] = body
    return event


def test_a_prediction_is_posted_as_a_proxy_response(
    start_function: Callable[[dict[str, str]], Function], model_env: dict[str, str]
) -> None:
    # GIVEN a function whose INIT loaded the text model
    function = start_function(model_env)
    # WHEN API Gateway sends it a text about space
    request_id = function.api.invoke(api_gateway_event('["the rocket reached orbit"]'))
    # THEN the runtime posts the handler's proxy response for that request
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.request_id) == ("response", request_id)
    assert post.body == {
        "statusCode": 200,
        "headers": {
            "Content-Type": "application/json",
            "x-lambdaserve-model-version": model_env["LAMBDASERVE_MODEL_SHA256"][:12],
        },
        "body": '["space"]',
        "isBase64Encoded": False,
    }


def test_a_body_that_is_not_json_is_answered_with_a_400_not_a_function_error(
    start_function: Callable[[dict[str, str]], Function], model_env: dict[str, str]
) -> None:
    # GIVEN a running function
    function = start_function(model_env)
    # WHEN the body is plain text
    request_id = function.api.invoke(api_gateway_event("not json"))
    # THEN the handled error goes to /response as a 400 that says how to fix the body
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.request_id) == ("response", request_id)
    assert post.body == {
        "statusCode": 400,
        "headers": {"Content-Type": "application/json", "x-lambdaserve-model-version": ANY},
        "body": ANY,
        "isBase64Encoded": False,
    }
    error = json.loads(post.body["body"])["error"]
    assert error.startswith("The body is not valid JSON")
    assert '["some text"]' in error


def test_one_process_serves_invocations_in_a_row_and_logs_each_request_id(
    start_function: Callable[[dict[str, str]], Function], model_env: dict[str, str]
) -> None:
    # GIVEN two requests waiting for one execution environment
    function = start_function(model_env)
    first = function.api.invoke(api_gateway_event('["the rocket reached orbit"]'))
    second = function.api.invoke(api_gateway_event('["a prayer in church"]'))
    # WHEN it serves them
    posts = [function.wait_for_post(FIRST_POST_TIMEOUT_S), function.wait_for_post()]
    # THEN both are answered, in order, by the same process, which waits for more
    assert [(p.kind, p.request_id, p.body["body"]) for p in posts] == [
        ("response", first, '["space"]'),
        ("response", second, '["religion"]'),
    ]
    assert function.process.poll() is None
    # AND each log line carries the request id Lambda gave the invocation
    lines = [json.loads(line) for line in function.log().splitlines() if line.startswith("{")]
    assert [(line["requestId"], line["status"]) for line in lines] == [(first, 200), (second, 200)]


def assert_init_error_reported(function: Function, *causes: str) -> None:
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.error_type) == ("init/error", "ModelLoadError")
    assert post.body["errorType"] == "ModelLoadError"
    assert all(cause in post.body["errorMessage"] for cause in causes), post.body["errorMessage"]
    # The runtime exits instead of taking the waiting request, and posts nothing else.
    assert function.process.wait(timeout=POST_TIMEOUT_S) == 1
    assert function.api.posts.empty()
    assert function.api.events.qsize() == 1


def test_a_model_whose_sha256_differs_fails_init_and_takes_no_request(
    start_function: Callable[[dict[str, str]], Function], model_env: dict[str, str]
) -> None:
    # GIVEN a model file that changed after packaging, and a request waiting
    function = start_function({**model_env, "LAMBDASERVE_MODEL_SHA256": "0" * 64})
    function.api.invoke(api_gateway_event('["the rocket reached orbit"]'))
    # THEN INIT fails, naming both hashes and the fix
    actual = model_env["LAMBDASERVE_MODEL_SHA256"]
    assert_init_error_reported(function, f"its sha256 is {actual}", f"expects {'0' * 64}", "package it again")


def test_a_missing_model_file_fails_init_and_takes_no_request(
    start_function: Callable[[dict[str, str]], Function], tmp_path: Path
) -> None:
    # GIVEN a function pointed at a model file that is not there, and a request waiting
    missing = tmp_path / "gone.pickle"
    function = start_function({"LAMBDASERVE_MODEL": str(missing)})
    function.api.invoke(api_gateway_event('["the rocket reached orbit"]'))
    # THEN INIT fails, naming the path
    assert_init_error_reported(function, f"LAMBDASERVE_MODEL names {missing}, which is not a file")
