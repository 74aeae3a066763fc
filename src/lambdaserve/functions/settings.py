"""A function version's settings: Lambda's memory, timeout and concurrency, and the mode.

``batch`` (default): concurrent requests share messages to an environment and model calls.
``lambda``: one invocation per environment at a time, as AWS Lambda.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, get_args

Mode = Literal["batch", "lambda"]
Runtime = Literal["default", "awslambdaric"]  # forked environments | AWS's runtime client
MODES: tuple[Mode, ...] = get_args(Mode)
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)


@dataclass(frozen=True)
class FunctionSettings:
    memory_mb: int = 256
    timeout_s: float = 10.0
    reserved: int | None = None  # reserved concurrency: a hard cap; beyond it Lambda throttles
    provisioned: int = 0  # environments kept initialised, never reaped
    max_environments: int = field(default_factory=lambda: usable_cores())  # the local cap otherwise
    idle_s: float = 300.0
    mode: Mode = "batch"
    max_batch: int = 64  # requests per message to an environment
    max_batch_bytes: int = 128 * 1024  # and their bodies' size: about the work a batch holds
    init_timeout_s: float = 120.0
    runtime: Runtime = "default"

    @property
    def limit(self) -> int:
        return self.reserved if self.reserved is not None else max(self.max_environments, self.provisioned)


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 2
