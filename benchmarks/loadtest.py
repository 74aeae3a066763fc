"""Load and limits (not a test module): wrk runs, and what a server is compared with.

What it offers: request bodies of real posts for ``post_bodies.lua``, a bounded wrk run
parsed from its ``--latency`` output, the same run with the CPU the server, wrk and the
rest of the machine spent meanwhile, ``model.predict`` timed in process (one post, and
per post in batches), and a description of the machine for the record.

Constraints: every load stops by itself (wrk's --duration, and a subprocess timeout
beyond it); one wrk thread, so the load generator takes little of a 2-core machine.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import BENCHMARKS, ROOT, Server, ServerFailed, tree_cpu_s

LUA_SCRIPT = BENCHMARKS / "post_bodies.lua"


def request_bodies(posts: Sequence[str], per_request: int) -> list[list[str]]:
    """Consecutive groups of ``per_request`` posts, wrapping round: every post once or so."""
    count = math.ceil(len(posts) / per_request)
    return [
        [posts[(start * per_request + k) % len(posts)] for k in range(per_request)] for start in range(count)
    ]


def write_bodies(posts: Sequence[str], per_request: int, path: Path) -> Path:
    """One JSON array per line (json.dumps escapes newlines), as post_bodies.lua reads them."""
    path.write_text("".join(json.dumps(body) + "\n" for body in request_bodies(posts, per_request)))
    return path


@dataclass
class LoadResult:
    """What wrk reports for one run; latencies in milliseconds."""

    url: str
    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    output: str = ""
    # CPU time per request of the server's first process (gateway; gunicorn's arbiter) and
    # of all its descendants (execution environments; gunicorn workers): see run_load.
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    cores: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str, url: str = "", connections: int = 0, seconds: float = 0.0) -> LoadResult:
    """Parse ``wrk --latency`` output (wrk 4.x)."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
        return match

    percentiles = {p: _ms(*find(rf"^\s+{p}%\s+{_TIME}\s*$").groups()) for p in ("50", "75", "90", "99")}
    latency = find(rf"^\s+Latency\s+{_TIME}\s+{_TIME}\s+{_TIME}")
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        socket_errors = dict(zip(socket_errors, map(int, errors.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return LoadResult(
        url=url,
        connections=connections,
        seconds=seconds,
        requests=int(find(r"^\s+(\d+) requests in")[1]),
        requests_per_s=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=percentiles["50"],
        p75_ms=percentiles["75"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        mean_ms=_ms(*latency.groups()[0:2]),
        max_ms=_ms(*latency.groups()[4:6]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=socket_errors,
        output=output,
    )


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise ServerFailed("wrk is not installed: make bench installs it (apt-get install wrk).")
    return found


def run_wrk(
    url: str,
    bodies: Path,
    connections: int,
    seconds: float,
    threads: int = 1,
    api_key: str = "",
    delay_ms: int = 0,
) -> LoadResult:
    """A bounded load: ``connections`` keep-alive connections for ``seconds``, cycling ``bodies``.

    One wrk thread by default: on a 2-core machine the load generator competes with the
    server for CPU, and one thread drives thousands of requests per second. ``delay_ms``:
    each connection pauses that long after an answer (a paced load, below capacity).
    """
    command = [
        wrk_path(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        url,
        "--",
        str(bodies),
        *([api_key] if api_key else []),
    ]
    env = {**os.environ, "WRK_DELAY_MS": str(delay_ms)} if delay_ms > 0 else None
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False, env=env)
    if done.returncode != 0:
        raise ServerFailed(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, url, connections, seconds)


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_load(server: Server, bodies: Path, connections: int, seconds: float, delay_ms: int = 0) -> LoadResult:
    """run_wrk against a server, and where the machine's CPU went meanwhile.

    ``cpu_ms_per_request``: the server's front process (gateway; gunicorn's arbiter) and
    its descendants (environments; workers). ``cores``: CPUs kept busy on average by the
    server, by wrk, by everything else on the machine (other work competing with the
    benchmark), and stolen by the hypervisor.
    """
    before, machine_before, wrk_before = tree_cpu_s(server.pid), _machine_cpu_s(), _children_cpu_s()
    started = time.monotonic()
    result = run_wrk(server.url, bodies, connections, seconds, api_key=server.api_key, delay_ms=delay_ms)
    wall = time.monotonic() - started
    after, machine_after, wrk_after = tree_cpu_s(server.pid), _machine_cpu_s(), _children_cpu_s()
    spent = {pid: used - before.get(pid, 0.0) for pid, used in after.items()}
    front = spent.pop(server.pid, 0.0)
    workers = sum(spent.values())
    per_request = 1000 / max(1, result.requests)
    result.cpu_ms_per_request = {"front": front * per_request, "workers": workers * per_request}
    busy = machine_after[0] - machine_before[0]
    wrk = wrk_after - wrk_before
    result.cores = {
        "server": (front + workers) / wall,
        "wrk": wrk / wall,
        "others": max(0.0, busy - front - workers - wrk) / wall,
        "stolen": (machine_after[1] - machine_before[1]) / wall,
    }
    return result


# -- the in-process limit ----------------------------------------------------------------
def median_predict_ms(model: Any, posts: Sequence[str], rounds: int = 3) -> float:
    """Median of ``model.predict([post])`` over the posts, ``rounds`` times each."""
    timings = []
    for _ in range(rounds):
        for post in posts:
            started = time.perf_counter()
            model.predict([post])
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def per_post_in_batches_ms(model: Any, posts: Sequence[str], size: int, rounds: int = 3) -> float:
    """Median over batches of ``size`` posts of the time of one ``predict`` call, per post."""
    timings = []
    for _ in range(rounds):
        for batch in request_bodies(posts, size):
            started = time.perf_counter()
            model.predict(batch)
            timings.append((time.perf_counter() - started) * 1000 / size)
    return statistics.median(timings)


def ceiling_docs_per_s(
    model: Any, posts: Sequence[str], processes: int = 2, size: int = 64, seconds: float = 3.0
) -> float:
    """The machine's own ceiling: ``model.predict`` on batches of ``size`` posts in
    ``processes`` forked processes at once (one per core), docs per second summed.

    Each process holds the model already (forked from this one), predicts one batch to warm
    up, then predicts batch after batch until ``seconds`` have passed; no HTTP, no IPC, no
    JSON: what serving can at best approach (issue 16's denominator).
    """
    import multiprocessing

    batches = request_bodies(posts, size)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes)
    results = context.Queue()

    def work() -> None:
        model.predict(batches[0])
        start.wait()
        done, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            batch = batches[done % len(batches)]
            model.predict(batch)
            done += 1
        results.put(done * size / elapsed)

    workers = [context.Process(target=work) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    return float(sum(rates))


# -- the machine -------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError):
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    names = ("scikit-learn", "numpy", "flask", "gunicorn", "uvicorn", "litserve", "fastapi", "lambdaserve")
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    wrk = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True, check=False)
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    changed = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average": load,
        "commit": commit.strip() + (" with uncommitted changes in src/" if changed.strip() else ""),
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?",
        **versions,
    }
