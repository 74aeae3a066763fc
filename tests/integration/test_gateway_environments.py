"""Execution environments behind a real server: a plain user handler (``--handler``), crashes,
timeout and memory kills, reserved concurrency in ``--mode lambda``, and Lambda's log lines.

Every server serves ``tools.py`` (see gateway_support), which sleeps, allocates or writes its
PID to a file when the request body asks it to.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from gateway_support import Served, ServerPool, body_of, predict, run_gateway, wait_until

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.store import Store

INTERNAL_ERROR = {"message": "Internal server error"}


@contextmanager
def served_with(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path, *flags: str) -> Iterator[Served]:
    pool = ServerPool()
    try:
        state = tmp_path_factory.mktemp("environments") / "state"
        yield pool.start(state, "--handler", "tools.handler", "--name", "tools", *flags, cwd=tools_dir)
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Served]:
    with served_with(tmp_path_factory, tools_dir) as served:
        yield served


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Served]:
    with served_with(tmp_path_factory, tools_dir, "--timeout", "1", "--memory", "128") as served:
        yield served


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Served]:
    with served_with(tmp_path_factory, tools_dir) as served:
        yield served


def invocation_log(served: Served, request_id: str, timeout_s: float = 5.0) -> list[str]:
    """The lines of one invocation in the function's log file, START to REPORT (flushed every 0.5 s)."""

    def lines() -> list[str]:
        mine = [
            line.split("\t", 1)[1] for line in served.model_log("tools").splitlines() if request_id in line
        ]
        return mine if any(line.startswith("REPORT") for line in mine) else []

    return wait_until(lines, timeout_s)


def report_of(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("REPORT"))


def busy_environments(served: Served) -> int:
    health = httpx.get(served.base + "/_/health").json()
    return sum(f["busy"] for f in health["functions"] if f["model"] == "tools")


# -- a plain user handler -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "seen"),
    [
        (
            "POST",
            "/test/tools/a/b?x=1",
            '{"k": 1}',
            {
                "resource": "/tools/{proxy+}",
                "path": "/tools/a/b",
                "httpMethod": "POST",
                "pathParameters": {"proxy": "a/b"},
                "query": {"x": "1"},
                "stagePath": "/test/tools/a/b",
                "stage": "test",
                "body": {"k": 1},
            },
        ),
        (
            "GET",
            "/test/tools",
            "",
            {
                "resource": "/tools",
                "path": "/tools",
                "httpMethod": "GET",
                "pathParameters": None,
                "query": None,
                "stagePath": "/test/tools",
                "stage": "test",
                "body": None,
            },
        ),
    ],
)
def test_a_user_handler_gets_api_gateways_proxy_event(
    server: Served, method: str, path: str, body: str, seen: dict[str, Any]
) -> None:
    # WHEN a request reaches a handler served with --handler
    response = httpx.request(method, server.base + path, content=body, headers={"x-api-key": server.api_key})
    # THEN the handler saw the event of a {proxy+} resource, and its answer passes through
    assert response.status_code == 200
    assert response.json() == seen


def test_an_environment_killed_mid_request_fails_only_that_request(server: Served, tmp_path: Path) -> None:
    # GIVEN a slow request in flight, whose environment wrote its PID
    pidfile = tmp_path / "pid"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.post, "/test/tools", json.dumps({"sleep": 20, "pidfile": str(pidfile)}))
        pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), 10.0))
        # AND another request served meanwhile by another environment
        assert server.post("/test/tools", '"meanwhile"').status_code == 200
        # WHEN that environment is killed
        os.kill(pid, signal.SIGKILL)
        failed = slow.result(timeout=10)
    # THEN only the slow request failed, with API Gateway's 502, and the next one is served
    assert (failed.status_code, failed.json()) == (502, INTERNAL_ERROR)
    after = server.post("/test/tools", '"after"')
    assert (after.status_code, after.json()["body"]) == (200, "after")
    report = report_of(invocation_log(server, failed.headers["x-amzn-RequestId"]))
    assert "Error Type: Runtime.ExitError" in report


def test_concurrent_requests_each_get_their_own_answer(server: Served) -> None:
    # WHEN 64 requests arrive at once (batched into shared messages to the environments)
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda n: server.post("/test/tools", json.dumps(n)), range(64)))
    # THEN each caller gets the answer to its own request
    assert [(r.status_code, r.json()["body"]) for r in responses] == [(200, n) for n in range(64)]


def test_batched_predictions_match_one_by_one_answers_and_a_bad_request_fails_alone(
    tmp_path: Path, topics_bundle: tuple[dict[str, Any], Path]
) -> None:
    # GIVEN the text model behind an in-process gateway (batch mode)
    state = tmp_path / "state"
    store = Store(state)
    store.add_version("topics", *topics_bundle)
    store.set_alias("topics", "test", 1)
    store.close()
    cases = [
        ('["the rocket reached orbit"]', 200, ["space"]),
        (
            '["a prayer in church", "the telescope saw a comet", "god"]',
            200,
            ["religion", "space", "religion"],
        ),
        ('"hymns of faith"', 200, ["religion"]),
        ("[[1, 2]]", 400, None),  # rows of numbers for a text model: a 4xx
    ] * 12

    async def scenario(gateway: Gateway) -> list[tuple[int, Any]]:
        # WHEN they arrive all at once
        requests = [gateway.handle(predict("/test/topics/predict", body)) for body, _, _ in cases]
        return [(r.status, body_of(r)) for r in await asyncio.gather(*requests)]

    answers = run_gateway(state, GatewaySettings(api_key_required=False), scenario)
    # THEN each gets its own predictions, in order, and only the bad ones fail, with {"error": ...}
    assert [(status, body) if status == 200 else (status // 100, list(body)) for status, body in answers] == [
        (200, expected) if status == 200 else (4, ["error"]) for _, status, expected in cases
    ]


def test_provisioned_environments_are_ready_before_the_first_request(
    tmp_path_factory: pytest.TempPathFactory, tools_dir: Path
) -> None:
    with served_with(tmp_path_factory, tools_dir, "--provisioned", "2") as served:
        # The function is listed as soon as it exists; its two environments follow within INIT.
        ready = [{"model": "tools", "version": "$LATEST", "environments": 2, "busy": 0}]
        health = wait_until(
            lambda: (h := httpx.get(served.base + "/_/health").json())["functions"] == ready and h, 10.0
        )
        assert health["functions"] == ready


def test_an_init_failure_answers_502_and_logs_the_error(tmp_path: Path) -> None:
    # GIVEN a handler module that raises while it is imported
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "broken.py").write_text("raise RuntimeError('no config')\n")
    pool = ServerPool()
    try:
        served = pool.start(tmp_path / "state", "--handler", "broken.handler", cwd=tmp_path / "code")
        # WHEN it is called
        response = served.post("/test/broken", '"x"')
        # THEN API Gateway answers 502 and the function's log has INIT's error
        assert (response.status_code, response.json()) == (502, INTERNAL_ERROR)
        wait_until(lambda: "[ERROR] RuntimeError: no config" in served.model_log("broken"), 5.0)
    finally:
        pool.stop_all()


# -- limits ---------------------------------------------------------------------------------
def test_an_invocation_over_its_timeout_is_killed_and_reported(limited: Served) -> None:
    # GIVEN --timeout 1, WHEN the handler takes 5 s
    started = time.monotonic()
    response = limited.post("/test/tools", json.dumps({"sleep": 5}))
    # THEN the caller gets 502 after about a second, and the log says why
    assert (response.status_code, response.json()) == (502, INTERNAL_ERROR)
    assert time.monotonic() - started < 4
    request_id = response.headers["x-amzn-RequestId"]
    lines = invocation_log(limited, request_id)
    assert any(line.startswith(f"{request_id} Task timed out after 1.") for line in lines)
    assert "Status: timeout" in report_of(lines)
    # AND a new environment serves the next request
    assert limited.post("/test/tools", '"after"').status_code == 200


def test_an_environment_over_its_memory_size_is_killed_and_reported(limited: Served) -> None:
    # GIVEN --memory 128, WHEN the handler allocates 400 MB
    response = limited.post("/test/tools", json.dumps({"allocate_mb": 400, "sleep": 0.5}))
    # THEN the caller gets 502 and REPORT says the runtime ran out of memory
    assert (response.status_code, response.json()) == (502, INTERNAL_ERROR)
    report = report_of(invocation_log(limited, response.headers["x-amzn-RequestId"]))
    assert "Error Type: Runtime.OutOfMemory" in report
    assert "Memory Size: 128 MB" in report
    assert limited.post("/test/tools", '"after"').status_code == 200


def test_lambda_mode_throttles_beyond_reserved_concurrency(
    tmp_path_factory: pytest.TempPathFactory, tools_dir: Path
) -> None:
    with served_with(tmp_path_factory, tools_dir, "--mode", "lambda", "--concurrency", "1") as served:
        client = boto3.Session(
            aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
        ).client("lambda", endpoint_url=served.base, config=Config(retries={"total_max_attempts": 1}))
        with ThreadPoolExecutor(1) as pool:
            # GIVEN the one environment allowed busy with a request
            busy = pool.submit(served.post, "/test/tools", json.dumps({"sleep": 2}))
            wait_until(lambda: busy_environments(served) == 1, 10.0)
            # WHEN another request arrives, through API Gateway or the Invoke API
            second = served.post("/test/tools", '"second"')
            with pytest.raises(client.exceptions.TooManyRequestsException):
                client.invoke(FunctionName="tools", Payload=json.dumps({"body": '"third"'}))
            first = busy.result(timeout=10)
        # THEN it is throttled as Lambda does (API Gateway answers 500), and the first one is served
        assert (second.status_code, second.json()) == (500, INTERNAL_ERROR)
        assert first.status_code == 200
        assert served.post("/test/tools", '"later"').status_code == 200


# -- Lambda's log lines ---------------------------------------------------------------------
def test_every_invocation_logs_start_end_and_report_with_init_only_when_cold(fresh: Served) -> None:
    # WHEN two requests follow each other, then a third arrives while a fourth keeps the
    # first environment busy (so a second environment is made for it)
    ids = [fresh.post("/test/tools", f'"call {n}"').headers["x-amzn-RequestId"] for n in (1, 2)]
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(fresh.post, "/test/tools", json.dumps({"sleep": 1}))
        wait_until(lambda: busy_environments(fresh) == 1, 10.0)
        ids.append(fresh.post("/test/tools", '"call 3"').headers["x-amzn-RequestId"])
        assert busy.result(timeout=10).status_code == 200
    first, second, third = (invocation_log(fresh, request_id) for request_id in ids)
    # THEN each invocation has START, its own output, END and REPORT, in that order
    for request_id, lines in zip(ids, (first, second, third), strict=True):
        assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
        assert lines[1] == f"tools handled {request_id}"
        assert lines[2] == f"END RequestId: {request_id}"
        assert lines[3].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
        assert "\tBilled Duration: " in lines[3]
        assert "\tMemory Size: 256 MB\tMax Memory Used: " in lines[3]
    # AND only the cold start pays INIT; the second environment reports its restore
    assert "\tInit Duration: " in first[3]
    assert "Init Duration" not in second[3]
    assert "Restore Duration" not in second[3]
    assert "Init Duration" not in third[3]
    assert "\tRestore Duration: " in third[3]
