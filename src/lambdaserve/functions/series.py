"""The four golden signals over the last minutes, per model and stage, for the console.

Prometheus counters (``metrics.py``) are cumulative and made for a scraper; the console
wants a time series without one. So the request path also feeds ``LiveSignals``: plain
counts and latencies since the last sample, per (model, stage), and the busy time of each
function version's environments. Every ``interval_s`` (2 s) the ``SeriesRecorder`` turns
them into one point per stage:

- traffic: requests, and requests per second;
- latency: p50 / p95 / p99 in ms, exact over the interval (from a reservoir of at most
  ``RESERVOIR`` latencies per interval, so memory does not grow with the load);
- errors: the share of 4xx and of 5xx answers;
- saturation: busy and total execution environments of the versions the stage routes to
  (busy is the time-weighted mean over the interval, not a snapshot), and requests refused
  by a throttle, a quota or concurrency, per second.

Points are kept ``keep_s`` (15 minutes) in ring buffers; the last ``MAX_COLD_STARTS``
cold starts are kept with their init (or restore) durations.
"""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RESERVOIR = 4096
MAX_COLD_STARTS = 200
FIELDS = (
    *("t", "requests", "rps"),  # traffic
    *("p50", "p95", "p99"),  # latency, ms
    *("errors_4xx", "errors_5xx"),  # errors, shares of the requests
    *("busy", "total", "throttled"),  # saturation: environments, refusals per second
)


@dataclass
class _Window:
    """One stage's requests since the last sample."""

    count: int = 0
    client_errors: int = 0
    server_errors: int = 0
    throttled: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class _BusyClock:
    """Integrates a function version's busy environments over time."""

    busy: int
    total: int
    changed: float
    busy_seconds: float = 0.0
    sampled: float = 0.0  # busy_seconds at the last sample

    def advance(self, now: float) -> None:
        self.busy_seconds += self.busy * (now - self.changed)
        self.changed = now


@dataclass(frozen=True)
class ColdStart:
    time: float  # wall clock, seconds since the epoch
    model: str
    version: str
    kind: str  # "init" (INIT ran) | "restore" (forked from an initialised template)
    duration_ms: float


class LiveSignals:
    """What the request path counts for the console (cheap: a dict lookup and an add)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[int], int] = random.randrange,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.rng = rng
        self.windows: dict[tuple[str, str], _Window] = {}
        self.environments: dict[tuple[str, str], _BusyClock] = {}
        self.cold_starts: collections.deque[ColdStart] = collections.deque(maxlen=MAX_COLD_STARTS)

    def request(self, model: str, stage: str, status: int, seconds: float) -> None:
        if not model:  # refused before a route was found: no stage to count it under
            return
        window = self.windows.get((model, stage))
        if window is None:
            window = self.windows[(model, stage)] = _Window()
        window.count += 1
        if status >= 500:
            window.server_errors += 1
        elif status >= 400:
            window.client_errors += 1
        if len(window.latencies) < RESERVOIR:
            window.latencies.append(seconds)
        else:  # reservoir sampling: each latency of the interval is kept with equal chance
            slot = self.rng(window.count)
            if slot < RESERVOIR:
                window.latencies[slot] = seconds

    def refused(self, model: str, stage: str) -> None:
        window = self.windows.get((model, stage))
        if window is None:
            window = self.windows[(model, stage)] = _Window()
        window.throttled += 1

    def environments_changed(self, model: str, version: str, busy: int, total: int) -> None:
        now = self.clock()
        clock = self.environments.get((model, version))
        if clock is None:
            self.environments[(model, version)] = _BusyClock(busy, total, now)
            return
        clock.advance(now)
        clock.busy, clock.total = busy, total

    def cold_start(self, model: str, version: str, kind: str, duration_ms: float) -> None:
        self.cold_starts.append(ColdStart(self.wall(), model, version, kind, round(duration_ms, 2)))


class SeriesRecorder:
    """Samples ``LiveSignals`` every ``interval_s`` into bounded per-stage ring buffers."""

    def __init__(self, signals: LiveSignals, interval_s: float = 2.0, keep_s: float = 900.0) -> None:
        self.signals = signals
        self.interval_s = interval_s
        self.points: dict[tuple[str, str], collections.deque[tuple[Any, ...]]] = {}
        self._maxlen = max(1, int(keep_s / interval_s))
        self._last = signals.clock()

    def maybe_sample(self, routes: dict[tuple[str, str], list[str]]) -> None:
        """Called often (housekeeping); samples once ``interval_s`` has passed."""
        if self.signals.clock() - self._last >= self.interval_s:
            self.sample(routes)

    def sample(self, routes: dict[tuple[str, str], list[str]]) -> None:
        """One point for every stage in ``routes`` ((model, stage) -> versions it routes to)."""
        signals = self.signals
        now = signals.clock()
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        windows, signals.windows = signals.windows, {}
        busy: dict[tuple[str, str], tuple[float, int]] = {}
        for key, clock in signals.environments.items():
            clock.advance(now)
            busy[key] = ((clock.busy_seconds - clock.sampled) / elapsed, clock.total)
            clock.sampled = clock.busy_seconds
        stamp = round(signals.wall(), 3)
        for (model, stage), versions in routes.items():
            window = windows.get((model, stage)) or _Window()
            used = [busy.get((model, v), (0.0, 0)) for v in versions]
            point = (
                stamp,
                window.count,
                round(window.count / elapsed, 3),
                *_quantiles(window.latencies),
                _share(window.client_errors, window.count),
                _share(window.server_errors, window.count),
                round(sum(b for b, _ in used), 3),
                sum(t for _, t in used),
                round(window.throttled / elapsed, 3),
            )
            ring = self.points.get((model, stage))
            if ring is None:
                ring = self.points[(model, stage)] = collections.deque(maxlen=self._maxlen)
            ring.append(point)
        for key in [k for k in self.points if k not in routes]:
            # A stage that no longer exists keeps its history until it ages out.
            ring = self.points[key]
            if not ring or stamp - ring[-1][0] > self._maxlen * self.interval_s:
                del self.points[key]

    def series(
        self, model: str | None = None, stage: str | None = None, minutes: float = 10.0
    ) -> dict[str, Any]:
        """Columns per stage (as charting libraries take them), and the recent cold starts."""
        since = self.signals.wall() - minutes * 60
        listed = []
        for (name, stage_name), ring in sorted(self.points.items()):
            if (model and name != model) or (stage and stage_name != stage):
                continue
            rows = [p for p in ring if p[0] >= since]
            columns = {f: [row[i] for row in rows] for i, f in enumerate(FIELDS)}
            listed.append({"model": name, "stage": stage_name, **columns})
        cold = [
            {
                "t": c.time,
                "model": c.model,
                "version": c.version,
                "kind": c.kind,
                "duration_ms": c.duration_ms,
            }
            for c in self.signals.cold_starts
            if c.time >= since and (not model or c.model == model)
        ]
        return {"interval_s": self.interval_s, "minutes": minutes, "series": listed, "cold_starts": cold}


def _quantiles(latencies: list[float]) -> tuple[float | None, float | None, float | None]:
    """p50, p95, p99 in ms by nearest rank; None when there was no request."""
    if not latencies:
        return None, None, None
    ordered = sorted(latencies)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] * 1000, 3)

    return rank(0.50), rank(0.95), rank(0.99)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
