"""A model's cost on AWS from what the local gateway measured: its REPORT lines, its
measured memory, its stored files. The arithmetic and the prices are in ``pricing``."""

from __future__ import annotations

import collections
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lambdaserve.deploy.pricing import Estimate, Workload, estimate, prices_for
from lambdaserve.deploy.spec import recommended_memory
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.log_lines import parse_report
from lambdaserve.functions.logbook import log_path
from lambdaserve.store import Store


@dataclass(frozen=True)
class Measured:
    """Durations read from a model's REPORT lines."""

    invocations: int
    duration_ms: float  # median (INIT is apart in REPORT: a cold one's Duration counts too)
    p90_ms: float
    cold: int
    init_ms: float  # median INIT of the cold ones


def read_reports(path: Path, last: int = 10_000) -> Measured | None:
    """The model's REPORT lines in the local log: durations, and INITs apart."""
    if not path.is_file():
        return None
    durations: collections.deque[float] = collections.deque(maxlen=last)
    inits: collections.deque[float] = collections.deque(maxlen=last)
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            report = parse_report(line)
            if report is None:
                continue
            durations.append(report[0])
            if report[1] is not None:
                inits.append(report[1])
    if not durations:
        return None
    deciles = statistics.quantiles(durations, n=10) if len(durations) > 1 else [durations[0]] * 9
    return Measured(
        invocations=len(durations),
        duration_ms=statistics.median(durations),
        p90_ms=deciles[8],
        cold=len(inits),
        init_ms=statistics.median(inits) if inits else 0.0,
    )


@dataclass(frozen=True)
class LocalFacts:
    """What the local state knows of a model that a projection needs."""

    measured: Measured | None
    memory_mb: int  # what deploy would give its function
    stored_gb: float


def local_facts(store: Store, model: str) -> LocalFacts:
    versions = store.versions(model)
    if not versions:
        raise LambdaserveError(
            f"No model {model!r} in {store.root}.",
            "Push or serve it first, or give --duration-ms and --memory without a model.",
        )
    measured_mb = versions[-1].manifest.get("max_memory_used_mb")
    return LocalFacts(
        measured=read_reports(log_path(store.root, model)),
        memory_mb=recommended_memory(measured_mb),
        stored_gb=sum(store.model_path(v).stat().st_size for v in versions if store.model_path(v).exists())
        / 1e9,
    )


def project(
    facts: LocalFacts | None,
    *,
    requests: int,
    region: str = "us-east-1",
    architecture: str = "x86_64",
    memory_mb: int | None = None,
    duration_ms: float | None = None,
    cold_share: float = 0.0,
    stages_kept_warm: int = 0,
    provisioned: int = 0,
) -> Estimate:
    """The month's estimate; what is not given comes from ``facts``."""
    measured = facts.measured if facts else None
    if duration_ms is None:
        if measured is None:
            raise LambdaserveError(
                "No duration to price: the model has no REPORT line yet."
                if facts
                else "No duration to price: no model given.",
                "Serve it and send it some requests first (lambdaserve serve), or give --duration-ms.",
            )
        duration_ms = measured.duration_ms
    if not 0 <= cold_share <= 1:
        raise LambdaserveError(
            "--cold-share is a share of invocations, from 0 to 1.", "e.g. --cold-share 0.01"
        )
    workload = Workload(
        requests=requests,
        duration_ms=duration_ms,
        memory_mb=memory_mb or (facts.memory_mb if facts else recommended_memory(None)),
        architecture=architecture,
        cold_share=cold_share,
        init_ms=measured.init_ms if measured else 0.0,
        stages_kept_warm=stages_kept_warm,
        provisioned=provisioned,
        stored_gb=facts.stored_gb if facts else 0.0,
    )
    return estimate(workload, prices_for(region))


def curve(base: Estimate, volumes: list[int]) -> list[dict[str, Any]]:
    """The same function at other monthly volumes (for the console's break-even chart)."""
    prices = prices_for(base.region)
    points = []
    for volume in volumes:
        month = estimate(Workload(**{**base.workload, "requests": volume}), prices)
        points.append(
            {
                "requests": volume,
                "rest_api": month.total,
                "http_api": month.total - month.lines["rest_api"] + month.http_api_instead,
                "instance": month.break_even["usd_per_month"],
            }
        )
    return points


def measured_dict(facts: LocalFacts | None) -> dict[str, Any] | None:
    return asdict(facts.measured) if facts and facts.measured else None
