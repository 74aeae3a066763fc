"""Helpers for benchmarks that put a real server under load (not a test module).

What it offers: start ``lambdaserve serve`` or the Flask baseline on a free port, time a
launch to its first successful prediction, drive ``wrk`` with real request bodies and
parse what it prints, read the memory of a server's whole process tree, and time
``model.predict`` in process (the limit every server is compared with).

Constraints: every wait is bounded and every load stops by itself; traffic stays on
loopback; a server is stopped through the PID this module started (SIGTERM, then
SIGKILL), and any of its descendants still alive after that are killed by PID too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LUA_SCRIPT = BENCHMARKS / "post_bodies.lua"
HOST = "127.0.0.1"
POLL_S = 0.01  # how often a launching server is asked for its first prediction


class ServerFailed(Exception):
    """A server exited, or did not answer a prediction, within its bounded wait."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def post(url: str, body: bytes, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """One POST on a new connection: (status, body). Raises OSError when nobody listens."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=timeout_s)
    try:
        connection.request("POST", parts.path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- processes ---------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(parent PID, start time in clock ticks) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])  # fields 4 and 22 of proc(5), counted after "(comm)"


def process_tree(pid: int) -> dict[int, int]:
    """``pid`` and all its live descendants, each with its start time (to tell a reused PID)."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
            started[int(entry)] = stat[1]
    tree: dict[int, int] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in started and current not in tree:
            tree[current] = started[current]
            todo.extend(children.get(current, []))
    return tree


def _is_same_process(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == started


@dataclass
class Server:
    """A server process this harness launched; ``launched`` is ``perf_counter`` at Popen."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    launched: float
    output: Path
    info: dict[str, Any] = field(default_factory=dict)
    _family: dict[int, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def remember_family(self) -> dict[int, int]:
        """Note the PIDs of the whole tree now, so that stop() can find orphans later."""
        self._family.update(process_tree(self.pid))
        return dict(self._family)

    def wait_until_predicting(self, body: bytes, timeout_s: float = 120.0) -> float:
        """Seconds from Popen to the first 200 answer to ``body``, asking every 10 ms."""
        deadline = self.launched + timeout_s
        last = "no answer"
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            tick = time.perf_counter()
            try:
                status, answer = post(self.url, body, timeout_s=max(0.1, deadline - tick))
            except OSError as exc:  # not listening yet
                last = str(exc)
            else:
                if status == 200:
                    ready = time.perf_counter() - self.launched
                    self.remember_family()
                    return ready
                last = f"HTTP {status}: {answer[:200]!r}"
            time.sleep(max(0.0, tick + POLL_S - time.perf_counter()))
        self.stop()
        raise ServerFailed(f"{self.name} gave no prediction in {timeout_s:.0f} s ({last}): {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, bounded wait, SIGKILL; then kill any descendant that outlived it."""
        if self.process.poll() is None:
            self.remember_family()
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        # Environments leave when their gateway goes away; give them a moment, then insist.
        deadline = time.monotonic() + 5
        left = dict(self._family)
        while left and time.monotonic() < deadline:
            left = {pid: t for pid, t in left.items() if _is_same_process(pid, t)}
            if left:
                time.sleep(0.05)
        for pid, started in left.items():
            if _is_same_process(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _launch(name: str, command: list[str], url: str, output: Path, env: dict[str, str]) -> Server:
    output.parent.mkdir(parents=True, exist_ok=True)
    # Output goes to a file, never a pipe nobody reads: a full pipe would stall the server.
    with output.open("wb") as sink:
        launched = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    return Server(name, process, url, launched, output)


def launch_lambdaserve(
    bundle: Path,
    workdir: Path,
    *,
    mode: str = "batch",
    concurrency: int | None = 2,
    stage: str = "test",
) -> Server:
    """``lambdaserve serve BUNDLE`` with a fresh state directory; returns at once (see wait)."""
    port = free_port()
    state = workdir / f"state-{port}"
    command = [
        str(BIN / "lambdaserve"),
        "serve",
        str(bundle.resolve()),
        "--port",
        str(port),
        "--state-dir",
        str(state),
        "--stage",
        stage,
        "--no-api-key",
        "--mode",
        mode,
        "--json",
    ]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    env = {**os.environ, "LAMBDASERVE_CACHE": str(workdir / "cache")}
    url = f"http://{HOST}:{port}/{stage}/{bundle.name}/predict"
    return _launch(f"lambdaserve --mode {mode}", command, url, workdir / f"lambdaserve-{port}.log", env)


def launch_flask(model: Path, workdir: Path, *, workers: int = 2) -> Server:
    """benchmarks/flask_app.py under gunicorn with sync workers (no --preload, as the post)."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "--workers",
        str(workers),
        "--bind",
        f"{HOST}:{port}",
        "--chdir",
        str(BENCHMARKS),
    ]
    if _gunicorn_has_control_socket():
        # gunicorn >= 25.1 opens ~/.gunicorn/gunicorn.ctl; two servers at once would share it.
        command.append("--no-control-socket")
    command.append("flask_app:app")
    env = {**os.environ, "MODEL_PATH": str(model.resolve())}
    url = f"http://{HOST}:{port}/predict"
    return _launch(f"flask+gunicorn -w {workers}", command, url, workdir / f"flask-{port}.log", env)


def _gunicorn_has_control_socket() -> bool:
    from gunicorn.config import KNOWN_SETTINGS

    return any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS)


def check_announced_url(server: Server) -> None:
    """The JSON line ``lambdaserve serve --json`` prints must name the URL being measured."""
    for line in server.output.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            server.info = json.loads(line)
            break
    if server.info.get("url") != server.url:
        raise ServerFailed(f"{server.name} announced {server.info.get('url')!r}, not {server.url!r}")


def start(server: Server, body: bytes, timeout_s: float = 120.0) -> Server:
    """Wait for a launched server's first prediction (stopping it if that fails)."""
    server.wait_until_predicting(body, timeout_s)
    if server.name.startswith("lambdaserve"):
        check_announced_url(server)
    return server


# -- load: wrk ---------------------------------------------------------------------------
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

    percentiles = {
        p: _ms(*find(rf"^\s+{p}%\s+{_TIME}\s*$").groups()) for p in ("50", "75", "90", "99")
    }
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


def run_wrk(url: str, bodies: Path, connections: int, seconds: float, threads: int = 1) -> LoadResult:
    """A bounded load: ``connections`` keep-alive connections for ``seconds``, cycling ``bodies``.

    One wrk thread by default: on a 2-core machine the load generator competes with the
    server for CPU, and one thread drives thousands of requests per second.
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
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise ServerFailed(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, url, connections, seconds)


# -- memory ------------------------------------------------------------------------------
@dataclass
class ProcessMemory:
    pid: int
    command: str
    rss_kib: int
    pss_kib: int
    uss_kib: int  # private pages: what killing this process alone would free


def process_memory(pid: int) -> ProcessMemory | None:
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    values[key] = int(rest.split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (OSError, ValueError):
        return None
    return ProcessMemory(
        pid,
        command[:160],
        values.get("Rss", 0),
        values.get("Pss", 0),
        values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    )


def tree_memory(pid: int) -> list[ProcessMemory]:
    """Memory of ``pid`` and every descendant (PSS sums to what the whole tree really holds)."""
    return [m for p in sorted(process_tree(pid)) if (m := process_memory(p)) is not None]


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
    for name in ("sklearn", "numpy", "flask", "gunicorn", "uvicorn", "lambdaserve"):
        with contextlib.suppress(ImportError):
            versions[name] = str(getattr(__import__(name), "__version__", "?"))
    wrk = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True, check=False)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?",
        **versions,
    }
