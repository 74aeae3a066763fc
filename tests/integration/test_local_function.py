"""One local function, as invoke and package run it: INIT once, logs framed, limits enforced."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lambdaserve.functions.invoke import LocalFunction
from lambdaserve.functions.processes import InitFailed
from lambdaserve.functions.pythons import PythonEnvironment

HANDLER = textwrap.dedent(
    """
    import os
    import time

    print("INIT of fixture_handler")

    def handle(event, context):
        action = event.get("action")
        if action == "sleep":
            time.sleep(event["seconds"])
        elif action == "exit":
            os._exit(3)
        elif action == "raise":
            raise ValueError("boom")
        elif action == "eat":
            blob = b"x" * (event["mb"] * 1024 * 1024)  # written, so resident
            time.sleep(2)
            return len(blob)
        elif action == "set":
            return {1, 2}
        print("handled", event.get("n"))
        return {
            "n": event.get("n"),
            "requestId": context.aws_request_id,
            "remainingMs": context.get_remaining_time_in_millis(),
            "function": context.function_name,
            "memory": context.memory_limit_in_mb,
        }
    """
)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    (tmp_path / "fixture_handler.py").write_text(HANDLER)
    (tmp_path / "broken_handler.py").write_text("raise RuntimeError('cannot start')\n")
    return tmp_path


def environment(task_root: Path, handler: str = "fixture_handler.handle", **limits: float) -> LocalFunction:
    python = PythonEnvironment(python=sys.executable, isolated=False)
    return LocalFunction(
        python,
        {"_HANDLER": handler, "LAMBDA_TASK_ROOT": str(task_root)},
        function_name="fixture",
        memory_mb=int(limits.get("memory_mb", 256)),
        timeout_s=float(limits.get("timeout_s", 10.0)),
    )


def test_init_runs_once_and_only_the_first_invocation_is_cold(task_root: Path) -> None:
    with environment(task_root) as env:
        first = env.invoke({"n": 1})
        second = env.invoke({"n": 2})
    assert first.payload["n"] == 1
    assert second.payload["n"] == 2
    assert first.report is not None
    assert second.report is not None
    assert first.report.init_duration_ms is not None
    assert second.report.init_duration_ms is None
    assert "Init Duration" in first.logs[-1]
    assert "Init Duration" not in second.logs[-1]


def test_logs_are_framed_by_start_end_and_report_lines(task_root: Path) -> None:
    with environment(task_root) as env:
        invocation = env.invoke({"n": 7}, request_id="req-7")
    # INIT's own output precedes the first START, as in CloudWatch Logs.
    assert invocation.logs[:4] == [
        "INIT of fixture_handler",
        "START RequestId: req-7 Version: $LATEST",
        "handled 7",
        "END RequestId: req-7",
    ]
    report = invocation.logs[4]
    assert report.startswith("REPORT RequestId: req-7\tDuration: ")
    assert "\tMemory Size: 256 MB\tMax Memory Used: " in report
    assert invocation.payload["requestId"] == "req-7"


def test_the_handler_gets_a_lambda_context(task_root: Path) -> None:
    with environment(task_root, timeout_s=5) as env:
        payload = env.invoke({"n": 1}).payload
    assert payload["function"] == "fixture"
    assert payload["memory"] == "256"
    assert 0 < payload["remainingMs"] <= 5000


def test_a_timeout_kills_the_environment_and_the_next_call_gets_a_fresh_one(task_root: Path) -> None:
    with environment(task_root, timeout_s=1) as env:
        timed_out = env.invoke({"action": "sleep", "seconds": 30}, request_id="slow")
        after = env.invoke({"n": 3})
    assert timed_out.status == "timeout"
    assert any(line.startswith("slow Task timed out after 1.") for line in timed_out.logs)
    assert timed_out.report is not None
    assert timed_out.report.status == "timeout"
    assert timed_out.logs[-1].endswith("\tStatus: timeout\t")
    assert after.payload["n"] == 3
    assert after.report is not None
    # a new environment, forked from the template that ran INIT: a restore, not a second INIT
    assert after.report.init_duration_ms is None
    assert after.report.restore_duration_ms is not None


def test_going_over_the_memory_size_kills_the_environment(task_root: Path) -> None:
    with environment(task_root, memory_mb=128) as env:
        invocation = env.invoke({"action": "eat", "mb": 400})
    assert invocation.status == "memory"
    assert invocation.error is not None
    assert invocation.error["errorType"] == "Runtime.OutOfMemory"
    assert invocation.logs[-1].endswith("\tStatus: error\tError Type: Runtime.OutOfMemory\t")
    assert "Max Memory Used: 128 MB" in invocation.logs[-1]


def test_a_process_that_exits_fails_only_its_own_invocation(task_root: Path) -> None:
    with environment(task_root) as env:
        crashed = env.invoke({"action": "exit"})
        after = env.invoke({"n": 4})
    assert crashed.status == "crash"
    assert crashed.error is not None
    assert crashed.error["errorType"] == "Runtime.ExitError"
    assert after.payload["n"] == 4


def test_an_exception_in_the_handler_is_a_function_error_with_its_trace(task_root: Path) -> None:
    with environment(task_root) as env:
        invocation = env.invoke({"action": "raise"}, request_id="r1")
    assert invocation.status == "error"
    assert invocation.error is not None
    assert invocation.error["errorType"] == "ValueError"
    assert invocation.error["errorMessage"] == "boom"
    assert invocation.error["requestId"] == "r1"
    assert any("ValueError: boom" in frame for frame in invocation.error["stackTrace"])


def test_a_result_that_is_not_json_is_a_marshal_error(task_root: Path) -> None:
    with environment(task_root) as env:
        invocation = env.invoke({"action": "set"})
    assert invocation.error is not None
    assert invocation.error["errorType"] == "Runtime.MarshalError"


@pytest.mark.parametrize(
    ("handler", "error_type", "words"),
    [
        ("broken_handler.handle", "RuntimeError", "cannot start"),
        ("missing_module.handle", "Runtime.ImportModuleError", "Unable to import module 'missing_module'"),
        ("fixture_handler.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module"),
        ("nodots", "Runtime.MalformedHandlerName", "Bad handler 'nodots'"),
    ],
)
def test_init_failures_are_reported_with_lambda_error_types(
    task_root: Path, handler: str, error_type: str, words: str
) -> None:
    with environment(task_root, handler=handler) as function, pytest.raises(InitFailed) as failure:
        function.start()
    assert failure.value.error["errorType"] == error_type
    assert words in failure.value.error["errorMessage"]
    assert function.function.template is None  # no process is left behind
