"""INIT as Lambda's Python runtime does it, for the local execution environments.

``load_handler`` imports the handler named by ``_HANDLER`` with awslambdaric's error types
for each way it can fail; ``LocalContext`` is the context object a handler gets;
``error_payload`` is Lambda's error body for an exception. ``forkserver`` builds on these.

It imports only the standard library, so it runs in any environment that has the
model's libraries, with this package's ``runtime/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import os
import resource
import time
import traceback
from typing import Any

DEFAULT_HANDLER = "lambdaserve.runtime.handler.handler"


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
