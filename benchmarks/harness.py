"""The servers under test, seen from outside (not a test module).

What it offers: start ``lambdaserve serve``, the Flask baseline or LitServe on a free port, time a
launch to its first successful prediction, stop a server with its whole process tree,
and read what that tree holds: memory (PSS, RSS, USS) and CPU time per process, plus the
Lambda log lambdaserve keeps per model. Load itself is in ``loadtest.py``.

Constraints: every wait is bounded; traffic stays on loopback; a server is stopped
through the PID this module started (SIGTERM, then SIGKILL), and any of its descendants
still alive after that are killed by PID too. A server that burns CPU while idle
(LitServe) can be paused with SIGSTOP between its loads; never gunicorn, whose arbiter
kills workers that missed their heartbeat while stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lambdaserve.baselines.run import gunicorn_command

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
POLL_S = 0.01  # how often a launching server is asked for its first prediction


class ServerFailed(Exception):
    """A server exited, or did not answer a prediction, within its bounded wait."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def post(url: str, body: bytes, timeout_s: float = 30.0, api_key: str = "") -> tuple[int, bytes]:
    """One POST on a new connection: (status, body). Raises OSError when nobody listens."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=timeout_s)
    headers = {"Content-Type": "application/json", **({"x-api-key": api_key} if api_key else {})}
    try:
        connection.request("POST", parts.path, body, headers)
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
    pause_when_idle: bool = False  # kept SIGSTOPped between loads (see pause)
    api_key: str = ""  # sent as x-api-key with every request, when the server asks for one
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
                status, answer = post(
                    self.url, body, timeout_s=max(0.1, deadline - tick), api_key=self.api_key
                )
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

    def pause(self) -> None:
        """SIGSTOP the whole tree: a server that costs CPU while idle (LitServe's workers poll
        their queue every millisecond) must not take it from the server being measured."""
        self._signal_family(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_family(signal.SIGCONT)

    def _signal_family(self, signum: int) -> None:
        for pid, started in self.remember_family().items():
            if _is_same_process(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, bounded wait, SIGKILL; then kill any descendant that outlived it."""
        if self.process.poll() is None:
            self.resume()  # a paused tree would not act on SIGTERM
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
    plan: Sequence[str] | None = None,
    source: Path | None = None,
) -> Server:
    """``lambdaserve serve BUNDLE`` with a fresh state directory; returns at once (see wait).

    ``plan``: None serves without API keys (--no-api-key); otherwise a usage plan is made with
    these ``plans create`` options (e.g. ``["--quota", "2000000000/DAY"]``, or none for an
    unlimited plan) and a key on it, which every request of the benchmark then carries.
    ``source``: a checkout of another commit, whose ``src/`` is run instead of this one's
    (with this environment's libraries), to compare the two in one run.
    """
    port = free_port()
    state = workdir / f"state-{port}"
    env = {**os.environ, "LAMBDASERVE_CACHE": str(workdir / "cache")}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    api_key = ""
    if plan is not None:
        api_key = _make_key(state, list(plan), env)
    command = [
        *_lambdaserve(source),
        "serve",
        str(bundle.resolve()),
        "--port",
        str(port),
        "--state-dir",
        str(state),
        "--stage",
        stage,
        "--mode",
        mode,
        "--json",
    ]
    if plan is None:
        command.append("--no-api-key")
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    url = f"http://{HOST}:{port}/{stage}/{bundle.name}/predict"
    name = f"lambdaserve --mode {mode}" + (f" ({source.name})" if source is not None else "")
    if plan is not None:
        name += f", key on plan {' '.join(plan) or 'unlimited'}"
    server = _launch(name, command, url, workdir / f"lambdaserve-{port}.log", env)
    server.api_key = api_key
    return server


def _lambdaserve(source: Path | None) -> list[str]:
    """The command that runs lambdaserve: installed, or from ``source`` (on PYTHONPATH)."""
    return [str(BIN / "lambdaserve")] if source is None else [sys.executable, "-m", "lambdaserve"]


def _make_key(state: Path, plan_options: list[str], env: dict[str, str]) -> str:
    """A plan named bench and a key on it, made with the CLI as a user would; the key's value."""
    cli = _lambdaserve(Path(env["PYTHONPATH"]) if "PYTHONPATH" in env else None)
    where = ["--state-dir", str(state)]
    subprocess.run(
        [*cli, "plans", "create", "bench", *plan_options, *where], env=env, check=True, capture_output=True
    )
    made = subprocess.run(
        [*cli, "keys", "create", "--name", "bench", "--plan", "bench", "--json", *where],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    value: str = json.loads(made.stdout)["value"]
    return value


def launch_flask(model: Path, workdir: Path, *, workers: int = 2) -> Server:
    """lambdaserve/baselines/flask_app.py under gunicorn with sync workers (no --preload, as the post)."""
    port = free_port()
    command = gunicorn_command(HOST, port, workers)
    env = {**os.environ, "MODEL_PATH": str(model.resolve())}
    url = f"http://{HOST}:{port}/predict"
    return _launch(f"flask+gunicorn -w {workers}", command, url, workdir / f"flask-{port}.log", env)


def launch_litserve(
    model: Path,
    workdir: Path,
    *,
    workers: int = 2,
    api_servers: int | None = None,
    max_batch_size: int = 64,
    batch_timeout_s: float = 0.005,
) -> Server:
    """benchmarks/litserve_app.py: LitServe with server-side batching, ``workers`` inference
    workers (``workers_per_device`` on the CPU) and ``api_servers`` uvicorn processes
    (LitServe's default: as many as workers)."""
    port = free_port()
    command = [sys.executable, str(BENCHMARKS / "litserve_app.py")]
    env = {
        **os.environ,
        "MODEL_PATH": str(model.resolve()),
        "PORT": str(port),
        "LITSERVE_WORKERS": str(workers),
        "LITSERVE_MAX_BATCH_SIZE": str(max_batch_size),
        "LITSERVE_BATCH_TIMEOUT": str(batch_timeout_s),
    }
    if api_servers is not None:
        env["LITSERVE_API_SERVERS"] = str(api_servers)
    url = f"http://{HOST}:{port}/predict"
    name = litserve_name(workers, api_servers, max_batch_size, batch_timeout_s)
    return _launch(name, command, url, workdir / f"litserve-{port}.log", env)


def litserve_name(
    workers: int = 2, api_servers: int | None = None, max_batch_size: int = 64, batch_timeout_s: float = 0.005
) -> str:
    return (
        f"LitServe ({workers} inference worker{'s' if workers > 1 else ''}, "
        f"{api_servers or workers} uvicorn, max_batch_size {max_batch_size}, "
        f"batch_timeout {batch_timeout_s * 1000:g} ms)"
    )


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


# -- CPU -------------------------------------------------------------------------------
def tree_cpu_s(pid: int) -> dict[int, float]:
    """User + system CPU seconds of ``pid`` and each live descendant."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
            used[member] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


# -- inside lambdaserve: its Lambda log ----------------------------------------------------
def lambda_log(server: Server) -> Path:
    """The log lambdaserve keeps per model (START / handler line / END / REPORT)."""
    return Path(server.info["state_dir"]) / "logs" / f"{server.info['model']}.log"


def log_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def invocation_medians(path: Path, offset: int, settle_s: float = 1.0) -> dict[str, float]:
    """Medians over the requests logged after ``offset``: REPORT's Duration (the whole
    invocation inside the environment), the handler's predictMs (the model call alone),
    and how many requests shared that model call. The gateway writes its log every half
    second, hence ``settle_s``."""
    time.sleep(settle_s)
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    durations = [float(d) for d in re.findall(r"\tDuration: ([\d.]+) ms", text)]
    predict, shared = [], []
    for line in text.splitlines():
        if '"predictMs"' in line:
            record = json.loads(line.partition("\t")[2])
            predict.append(float(record["predictMs"]))
            shared.append(int(record.get("batchedWith", 1)))
    if not durations or not predict:
        return {}
    return {
        "requests": len(predict),
        "duration_ms": statistics.median(durations),
        "predict_ms": statistics.median(predict),
        "requests_per_model_call": statistics.median(shared),
    }


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
