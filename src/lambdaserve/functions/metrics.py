"""Prometheus metrics for the four golden signals, per model, stage and version.

Traffic and errors: ``lambdaserve_requests_total`` by status; latency:
``lambdaserve_request_duration_seconds``; saturation: busy and total execution
environments, and requests refused by throttles, quotas or concurrency. Plus cold starts
and their init (or restore) durations, and the sizes of the batches sent to the model.
Each gateway has its own registry, so several gateways can live in one process (tests).
The same events also feed ``live`` (``series.py``): the console's time series, which needs
no scraper.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from lambdaserve.functions.series import LiveSignals

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, live: LiveSignals | None = None) -> None:
        self.live = live or LiveSignals()
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        labels = ("model", "stage", "version")
        self.requests = Counter(
            "lambdaserve_requests",
            "Requests answered, by HTTP status.",
            (*labels, "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "lambdaserve_request_duration_seconds",
            "Time from request to response at the gateway.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "lambdaserve_throttled_requests",
            "Requests refused by a usage plan or by concurrency.",
            ("model", "stage", "reason"),
            registry=self.registry,
        )
        self.environments = Gauge(
            "lambdaserve_environments",
            "Execution environments, by state.",
            ("model", "version", "state"),
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "lambdaserve_cold_starts",
            "New execution environments, by kind (init or restore).",
            ("model", "version", "kind"),
            registry=self.registry,
        )
        self.init_duration = Histogram(
            "lambdaserve_init_duration_seconds",
            "INIT or restore duration of new environments.",
            ("model", "version", "kind"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.invocations = Counter(
            "lambdaserve_invocations",
            "Function invocations, by outcome.",
            ("model", "version", "outcome"),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lambdaserve_batch_requests",
            "Requests answered by one call into an environment.",
            ("model", "version"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )

    def request(self, model: str, stage: str, version: str, status: int, seconds: float) -> None:
        """Count one answered request (the hot path: labelled children are cached)."""
        key = (model, stage, version, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(model, stage, version, str(status)),
                self.latency.labels(model, stage, version),
            )
        children[0].inc()
        children[1].observe(seconds)
        self.live.request(model, stage, status, seconds)

    def refuse(self, model: str, stage: str, reason: str) -> None:
        """A request refused by a throttle, a quota or concurrency (``reason``)."""
        self.refused.labels(model, stage, reason).inc()
        self.live.refused(model, stage)

    def environments_changed(self, model: str, version: str, busy: int, total: int) -> None:
        self.environments.labels(model, version, "busy").set(busy)
        self.environments.labels(model, version, "total").set(total)
        self.live.environments_changed(model, version, busy, total)

    def cold_start(self, model: str, version: str, kind: str, duration_ms: float) -> None:
        """A new environment: ``init`` ran INIT, ``restore`` was forked from a template.

        INIT's own duration is observed when it ends (the template's, or each runtime
        client's); a restore's here.
        """
        self.cold_starts.labels(model, version, kind).inc()
        if kind == "restore":
            self.init_duration.labels(model, version, "restore").observe(duration_ms / 1000)
        self.live.cold_start(model, version, kind, duration_ms)

    def render(self) -> bytes:
        return generate_latest(self.registry)
