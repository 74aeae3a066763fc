"""The real awslambdaric runs the handler against a Lambda Runtime API served by the test.

In the Lambda image, awslambdaric imports ``lambdaserve.runtime.handler`` (INIT), then loops:
GET ``/invocation/next``, call ``handler(event, context)``, POST the result. Here a small
server on 127.0.0.1 plays the Runtime API, so the handler is driven by the same client and
C extension (aws-lambda-cpp over libcurl) as in production, in a subprocess of its own.

The server, and what it does not emulate, is in ``runtime_api_support``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest
from runtime_api_support import (
    FIRST_POST_TIMEOUT_S,
    POST_TIMEOUT_S,
    Function,
    RuntimeAPI,
    api_gateway_event,
)


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
