"""Lambda's own log lines: START, END, REPORT, and the timeout line.

Formats follow what Lambda writes to CloudWatch Logs, tabs included:

    START RequestId: <id> Version: <version>
    END RequestId: <id>
    REPORT RequestId: <id>\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\t
        Max Memory Used: 98 MB\tInit Duration: 412.50 ms\t

Billing: Lambda bills per started millisecond, and for container-image functions the
INIT of a cold start is billed as well, so Billed Duration includes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms\t.*?(?:Init Duration: ([\d.]+) ms)?\t?$")


@dataclass(frozen=True)
class Report:
    request_id: str
    duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None
    restore_duration_ms: float | None = None  # a forked environment's first invocation
    status: str | None = None  # None (success or function error), "timeout", "error"
    error_type: str | None = None

    @property
    def billed_duration_ms(self) -> int:
        return billed_ms(self.duration_ms + (self.init_duration_ms or 0.0))

    def line(self) -> str:
        fields = [
            f"REPORT RequestId: {self.request_id}",
            f"Duration: {self.duration_ms:.2f} ms",
            f"Billed Duration: {self.billed_duration_ms} ms",
            f"Memory Size: {self.memory_size_mb} MB",
            f"Max Memory Used: {self.max_memory_used_mb} MB",
        ]
        if self.init_duration_ms is not None:
            fields.append(f"Init Duration: {self.init_duration_ms:.2f} ms")
        if self.restore_duration_ms is not None:  # where SnapStart's REPORT has it
            fields.append(f"Restore Duration: {self.restore_duration_ms:.2f} ms")
        if self.status:
            fields.append(f"Status: {self.status}")
        if self.error_type:
            fields.append(f"Error Type: {self.error_type}")
        return "\t".join(fields) + "\t"

    def to_dict(self) -> dict[str, object]:
        return {
            "requestId": self.request_id,
            "durationMs": round(self.duration_ms, 3),
            "billedDurationMs": self.billed_duration_ms,
            "memorySizeMB": self.memory_size_mb,
            "maxMemoryUsedMB": self.max_memory_used_mb,
            "initDurationMs": _rounded(self.init_duration_ms),
            "restoreDurationMs": _rounded(self.restore_duration_ms),
            "status": self.status,
            "errorType": self.error_type,
        }


def billed_ms(duration_ms: float) -> int:
    """What Lambda bills for a duration: every started millisecond, at least one."""
    return max(1, math.ceil(duration_ms))


def parse_report(line: str) -> tuple[float, float | None] | None:
    """(Duration, Init Duration or None) of a REPORT line, in ms; None for any other line."""
    found = _REPORT.search(line.rstrip("\n"))
    if found is None:
        return None
    return float(found.group(1)), float(found.group(2)) if found.group(2) else None


def _rounded(ms: float | None) -> float | None:
    return round(ms, 3) if ms is not None else None


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def timeout_line(request_id: str, timeout_s: float) -> str:
    return f"{request_id} Task timed out after {timeout_s:.2f} seconds"


def kill_error(reason: str, duration_ms: float, memory_mb: int) -> dict[str, str]:
    """Lambda's error payload for an environment stopped from outside: timeout, memory, exit."""
    if reason == "timeout":
        return {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"Task timed out after {duration_ms / 1000:.2f} seconds",
        }
    if reason == "memory":
        return {
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": f"Runtime exited with error: signal: killed (over {memory_mb} MB)",
        }
    return {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited without providing a reason"}


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a running process from /proc/PID/status, in KiB (0 when unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0
