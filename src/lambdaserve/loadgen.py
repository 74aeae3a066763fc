"""Load against an HTTP endpoint, closed or open loop, with latencies that do not lie.

- **Closed loop** (``connections``): N clients, each sending its next request when the last
  one is answered. It measures the most the endpoint serves, but under overload its
  latencies look better than they are: a slow answer delays the requests behind it, which
  are then never counted as waiting (coordinated omission).
- **Open loop** (``rate``): requests are due at fixed times, R per second, whatever the
  answers do; each latency is counted from the time the request was *due*, so a stall shows
  in every request it delays. This is how to measure latency at a target load.

The client is httpx's asyncio client on one event loop, its connections kept alive. Its own
CPU time is measured: when it nears one core, the client, not the endpoint, is the limit,
and the result says so. Everything is bounded: the run's length, the requests in flight.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx

MAX_IN_FLIGHT = 2000  # open loop: requests past this many unanswered are counted as dropped
NO_ANSWER = 0  # the status a timeline gives a request that got no answer (refused, timed out)


@dataclass
class LoadResult:
    mode: str  # "closed" | "open"
    url: str
    duration_s: float
    connections: int | None = None
    rate: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)  # no answer
    dropped: int = 0  # open loop: due while MAX_IN_FLIGHT were unanswered
    client_cpu_s: float = 0.0
    # (t since start, ms, status), answers and requests with no answer (status NO_ANSWER) alike
    timeline: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.duration_s if self.duration_s else 0.0

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (nearest rank) of the latencies, in ms."""
        if not self.latencies_ms:
            return None
        return _nearest_rank(sorted(self.latencies_ms), q)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "url": self.url,
            "connections": self.connections,
            "rate": self.rate,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "requests_per_s": round(self.requests_per_s, 1),
            "latency_ms": {
                name: (round(v, 3) if (v := self.percentile(q)) is not None else None)
                for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9), ("max", 100))
            },
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "throttled": sum(v for k, v in self.statuses.items() if k == 429),
            "failures": dict(self.failures),
            "dropped": self.dropped,
            "client_cores": round(self.client_cores, 2),
        }


class Second(TypedDict):
    """One second of a run (by when each request was due): what the console draws."""

    t: int  # seconds since the measured phase began
    requests: int  # answered: the second's requests per second
    p50: float | None  # ms, of the answered
    p99: float | None
    errors: int  # 4xx other than 429, 5xx, and requests with no answer
    throttled: int  # 429: the usage plan at work


def per_second(result: LoadResult) -> list[Second]:
    """The run's timeline as one point a second, seconds with no request included."""
    buckets: dict[int, list[tuple[float, int]]] = collections.defaultdict(list)
    for t, ms, status in result.timeline:
        buckets[max(0, int(t))].append((ms, status))
    seconds: list[Second] = []
    for t in range(max(buckets, default=-1) + 1):
        entries = buckets.get(t, [])
        answered = sorted(ms for ms, status in entries if status != NO_ANSWER)
        seconds.append(
            {
                "t": t,
                "requests": len(answered),
                "p50": round(_nearest_rank(answered, 50), 3) if answered else None,
                "p99": round(_nearest_rank(answered, 99), 3) if answered else None,
                "errors": sum(
                    1 for _, status in entries if status == NO_ANSWER or (status >= 400 and status != 429)
                ),
                "throttled": sum(1 for _, status in entries if status == 429),
            }
        )
    return seconds


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _send(
    client: httpx.AsyncClient, url: str, body: bytes, result: LoadResult, due: float, start: float
) -> None:
    try:
        response = await client.post(url, content=body)
        status = response.status_code
    except httpx.HTTPError as exc:
        result.failures[type(exc).__name__] += 1
        result.timeline.append((due - start, (time.perf_counter() - due) * 1000, NO_ANSWER))
        return
    elapsed_ms = (time.perf_counter() - due) * 1000
    result.latencies_ms.append(elapsed_ms)
    result.statuses[status] += 1
    result.timeline.append((due - start, elapsed_ms, status))


def _client(connections: int, headers: dict[str, str], timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        headers={"Content-Type": "application/json", **headers}, limits=limits, timeout=timeout_s
    )


Progress = Callable[[LoadResult, float], None]


async def closed_loop(
    url: str,
    bodies: Sequence[bytes],
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    warmup_s: float = 0.0,
    timeout_s: float = 30.0,
    progress: Progress | None = None,
) -> LoadResult:
    """``connections`` clients in a loop for ``duration_s`` (after ``warmup_s`` not counted)."""
    cycle = itertools.cycle(bodies)

    async def phase(client: httpx.AsyncClient, result: LoadResult) -> None:
        start = time.perf_counter()
        end = start + result.duration_s

        async def worker() -> None:
            while (now := time.perf_counter()) < end:
                await _send(client, url, next(cycle), result, now, start)

        await asyncio.gather(*(worker() for _ in range(connections)))
        result.duration_s = time.perf_counter() - start

    result = LoadResult("closed", url, duration_s, connections=connections)
    return await _measured(result, phase, connections, headers, timeout_s, warmup_s, progress)


async def open_loop(
    url: str,
    bodies: Sequence[bytes],
    *,
    rate: float,
    duration_s: float,
    headers: dict[str, str] | None = None,
    connections: int = 64,
    warmup_s: float = 0.0,
    timeout_s: float = 30.0,
    progress: Progress | None = None,
) -> LoadResult:
    """``rate`` requests a second, each due at its time, for ``duration_s``."""
    cycle = itertools.cycle(bodies)

    async def phase(client: httpx.AsyncClient, result: LoadResult) -> None:
        start = time.perf_counter()
        count = max(1, round(rate * result.duration_s))
        in_flight: set[asyncio.Task[None]] = set()
        last_sent = start
        for n in range(count):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            last_sent = time.perf_counter()
            if len(in_flight) >= MAX_IN_FLIGHT:
                result.dropped += 1
                continue
            task = asyncio.create_task(_send(client, url, next(cycle), result, due, start))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
        # The time it took to send them all: a client that fell behind its schedule shows as a
        # rate below the one asked for (and, through the due times, in every latency).
        result.duration_s = last_sent - start + 1 / rate

    result = LoadResult("open", url, duration_s, rate=rate, connections=connections)
    return await _measured(result, phase, connections, headers, timeout_s, warmup_s, progress)


async def _measured(
    result: LoadResult,
    phase: Callable[[httpx.AsyncClient, LoadResult], Awaitable[None]],
    connections: int,
    headers: dict[str, str] | None,
    timeout_s: float,
    warmup_s: float,
    progress: Progress | None,
) -> LoadResult:
    """A warm-up not counted, then the measured phase with the client's CPU and progress."""
    async with _client(connections, headers or {}, timeout_s) as client:
        if warmup_s > 0:
            await phase(client, LoadResult(result.mode, result.url, warmup_s))
        cpu = _cpu_s()
        start = time.perf_counter()
        reporter = asyncio.create_task(_report(result, start, start + result.duration_s, progress))
        try:
            await phase(client, result)
        finally:
            reporter.cancel()
        result.client_cpu_s = _cpu_s() - cpu
    return result


async def _report(result: LoadResult, start: float, end: float, progress: Progress | None) -> None:
    while progress is not None:
        await asyncio.sleep(0.5)
        progress(result, min(1.0, (time.perf_counter() - start) / max(end - start, 1e-9)))
