"""A local execution environment: ``python -m lambdaserve.runtime.bootstrap``.

This plays the part of Lambda's runtime inside one execution environment. It runs INIT
once (imports the handler named by ``_HANDLER``, as Lambda sets it), then serves one
invocation at a time, read from stdin and answered on the original stdout, one JSON
object per line. Everything the handler prints (to stdout or stderr, from Python or C)
goes to stderr, which is the environment's log stream; a marker line closes INIT's
logs and each invocation's, so the host can frame them with START, END and REPORT.

Messages in:   {"type": "invoke", "requestId", "event", "deadlineMs"} | {"type": "describe"}
Messages out:  {"type": "ready", "initMs"} | {"type": "initError", ...}
               {"type": "result", "requestId", "payload", "durationMs", "maxMemoryMB"}
               {"type": "error", "requestId", "errorType", "errorMessage", "stackTrace", ...}
               {"type": "description", ...}

It imports only the standard library, so it runs in any environment that has the
model's libraries, with this package's ``runtime/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from typing import Any, TextIO

DEFAULT_HANDLER = "lambdaserve.runtime.handler.handler"
LOG_END_MARKER = "\x1elambdaserve:end:"


class LocalContext:
    """The context object Lambda passes to a handler, with the same attribute names."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        self.invoked_function_arn = (
            f"arn:aws:lambda:{os.environ.get('AWS_REGION', 'us-east-1')}:000000000000:"
            f"function:{self.function_name}"
        )
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{self.function_name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def max_memory_mb() -> int:
    return -(-resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # KiB -> MiB, rounded up


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }


def _send(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


class InitFault(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def load_handler(name: str) -> tuple[Any, Any]:
    """Import the handler as awslambdaric does, with the same error types for its failures."""
    module_name, _, function_name = name.rpartition(".")
    if not module_name:
        raise InitFault("Runtime.MalformedHandlerName", f"Bad handler '{name}': not enough values to unpack")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise InitFault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        raise InitFault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        ) from exc
    try:
        return module, getattr(module, function_name)
    except AttributeError:
        raise InitFault(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        ) from None


def _invoke(handler: Any, message: dict[str, Any]) -> dict[str, Any]:
    request_id = message["requestId"]
    context = LocalContext(request_id, int(message.get("deadlineMs") or time.time() * 1000 + 3_000_000))
    started = time.perf_counter()
    reply: dict[str, Any] = {"requestId": request_id}
    try:
        payload = handler(message["event"], context)
        json.dumps(payload)  # Lambda must serialise the result; fail the same way it would
        reply.update(type="result", payload=payload)
    except TypeError as exc:
        reply.update(type="error", **error_payload(exc, "Runtime.MarshalError"))
    except Exception as exc:
        reply.update(type="error", **error_payload(exc))
    reply["durationMs"] = (time.perf_counter() - started) * 1000
    return reply


def _end_logs(label: str) -> None:
    """Close a stretch of the log stream (INIT, or one invocation) for the host to frame."""
    sys.stdout.flush()
    sys.stderr.write(f"{LOG_END_MARKER}{label}\n")
    sys.stderr.flush()


def main() -> int:
    # Keep the real stdout for messages; send everything else (prints included) to the log.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)

    started = time.perf_counter()
    try:
        module, handler = load_handler(os.environ.get("_HANDLER") or DEFAULT_HANDLER)
    except InitFault as exc:
        _send(protocol, {"type": "initError", **error_payload(exc, exc.error_type)})
        return 1
    except Exception as exc:  # raised by INIT code itself: reported under its own type
        _send(protocol, {"type": "initError", **error_payload(exc)})
        return 1
    init_ms = (time.perf_counter() - started) * 1000
    _end_logs("init")
    _send(protocol, {"type": "ready", "initMs": init_ms, "pid": os.getpid(), "maxMemoryMB": max_memory_mb()})

    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "describe":
            get_service = getattr(module, "get_service", None)
            description = get_service().describe() if callable(get_service) else {}
            _send(protocol, {"type": "description", **description})
            continue
        reply = _invoke(handler, message)
        _end_logs(message["requestId"])
        reply["maxMemoryMB"] = max_memory_mb()
        _send(protocol, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
