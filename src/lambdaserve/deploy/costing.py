"""A model's cost on AWS from what was measured: the local gateway's REPORT lines (the
default), a load test (``loadtest --json``, or the latest run recorded for the model), or the
deployed function's REPORT lines in CloudWatch Logs; and the model's memory and stored files.
The arithmetic and the prices are in ``pricing``.
"""

from __future__ import annotations

import collections
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from lambdaserve.deploy.pricing import SECONDS_PER_MONTH, Estimate, Workload, estimate, prices_for
from lambdaserve.deploy.spec import recommended_memory
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.log_lines import parse_report
from lambdaserve.functions.logbook import log_path
from lambdaserve.store import Store

# The image in ECR when its size is not given: lambdaserve's image of a scikit-learn model
# (AL2023 base, CPython, numpy, scipy, scikit-learn) is of this order; --image-mb to say.
IMAGE_GB = 0.5
SEEN_AT_LEAST_S = 600  # --requests seen: the log must span this long to extrapolate a month


@dataclass(frozen=True)
class Measured:
    """Durations measured somewhere, and where (``source``, said in every answer)."""

    invocations: int
    duration_ms: float  # median (INIT is apart in REPORT: a cold one's Duration counts too)
    p90_ms: float
    cold: int
    init_ms: float  # median INIT of the cold ones
    source: str = "local"  # local | loadtest | cloudwatch
    where: str = ""  # the log, the file or run, the log group: what a user can open
    memory_mb: int | None = None  # CloudWatch: the function's Memory Size
    max_memory_used_mb: int | None = None  # CloudWatch: the largest Max Memory Used
    billed_ms: float | None = None  # CloudWatch: the median Billed Duration
    requests_per_s: float | None = None  # a load test: the throughput it reached
    span_s: float | None = None  # the local log: from its first REPORT line to its last
    per_core_per_s: float | None = None  # a local load test: that throughput per core of the machine


_FIELDS = {
    "billed": re.compile(r"Billed Duration: ([\d.]+) ms"),
    "memory": re.compile(r"Memory Size: (\d+) MB"),
    "used": re.compile(r"Max Memory Used: (\d+) MB"),
}


def measure_reports(lines: Iterable[str], source: str, where: str, last: int = 10_000) -> Measured | None:
    """REPORT lines (Lambda's, or the local gateway's, which writes the same) -> durations,
    INITs apart; the memory fields as well where the lines have them."""
    durations: collections.deque[float] = collections.deque(maxlen=last)
    stamps: collections.deque[str] = collections.deque(maxlen=last)
    inits: collections.deque[float] = collections.deque(maxlen=last)
    billed: collections.deque[float] = collections.deque(maxlen=last)
    memory, used = None, None
    for line in lines:
        report = parse_report(line)
        if report is None:
            continue
        durations.append(report[0])
        stamp, tab, _ = line.partition("\t")
        if tab and stamp[:2] == "20":  # the local log's "2026-12-03T10:00:00.000Z\t" prefix
            stamps.append(stamp)
        if report[1] is not None:
            inits.append(report[1])
        if found := _FIELDS["billed"].search(line):
            billed.append(float(found.group(1)))
        if found := _FIELDS["memory"].search(line):
            memory = int(found.group(1))  # the latest: the function's memory now
        if found := _FIELDS["used"].search(line):
            used = max(used or 0, int(found.group(1)))
    if not durations:
        return None
    return Measured(
        invocations=len(durations),
        duration_ms=statistics.median(durations),
        p90_ms=_p90(durations),
        cold=len(inits),
        init_ms=statistics.median(inits) if inits else 0.0,
        source=source,
        where=where,
        memory_mb=memory if source == "cloudwatch" else None,
        max_memory_used_mb=used if source == "cloudwatch" else None,
        billed_ms=statistics.median(billed) if billed and source == "cloudwatch" else None,
        span_s=_span_s(stamps[0], stamps[-1]) if len(stamps) == len(durations) else None,
    )


def _span_s(first: str, last: str) -> float | None:
    try:
        start = datetime.fromisoformat(first.replace("Z", "+00:00"))
        end = datetime.fromisoformat(last.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (end - start).total_seconds()


def seen_per_month(measured: Measured | None) -> int:
    """The monthly volume the local log's REPORT lines run at (``--requests seen``)."""
    span = measured.span_s if measured else None
    if measured is None or span is None or span < SEEN_AT_LEAST_S:
        spanned = f" span {span / 60:.0f} minutes" if span is not None else " have no times"
        raise LambdaserveError(
            "--requests seen needs the model's usage here over at least "
            f"{SEEN_AT_LEAST_S // 60} minutes; its REPORT lines" + spanned + ".",
            "Give the volume you expect instead, e.g. --requests 1M.",
        )
    return round(measured.invocations / span * SECONDS_PER_MONTH)


def _p90(values: collections.deque[float]) -> float:
    return statistics.quantiles(values, n=10)[8] if len(values) > 1 else values[0]


def read_reports(path: Path, last: int = 10_000) -> Measured | None:
    """The model's REPORT lines in the local log: durations, and INITs apart."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", errors="replace") as lines:
        return measure_reports(lines, "local", str(path), last)


def from_loadtest(run: Mapping[str, Any], where: str) -> Measured:
    """A load test's figures (``loadtest --json``, or a recorded run) as durations.

    Its latencies are the client's: each is the model's Duration plus the local gateway's
    sub-millisecond overhead, plus any wait in the queue when the load was above what the
    server keeps up with, so the median is an upper bound of the Duration Lambda would bill
    on this machine's CPU. Its throughput, per core of the machine that served it, sizes the
    always-on instance of the break-even.
    """
    latency = run.get("latency_ms")
    requests = run.get("requests")
    if not isinstance(latency, Mapping) or not isinstance(requests, int) or "p50" not in latency:
        raise LambdaserveError(
            f"{where} is not the output of lambdaserve loadtest --json.",
            "Write one with: lambdaserve loadtest MODEL --json > run.json",
        )
    if not requests or latency.get("p50") is None:
        raise LambdaserveError(f"The load test in {where} has no answered request to price.")
    rate = float(run.get("requests_per_s") or 0.0)
    cores = run.get("server_cores") if run.get("where") == "local" else None
    return Measured(
        invocations=requests,
        duration_ms=float(latency["p50"]),
        p90_ms=float(latency.get("p90") or latency["p50"]),
        cold=int(run.get("cold_starts") or 0),
        init_ms=0.0,
        source="loadtest",
        where=where,
        requests_per_s=rate or None,
        per_core_per_s=rate / cores if rate and isinstance(cores, int) and cores > 0 else None,
    )


@dataclass(frozen=True)
class LocalFacts:
    """What the local state knows of a model that a projection needs."""

    measured: Measured | None
    memory_mb: int  # what deploy would give its function
    stored_gb: float


def with_measured(facts: LocalFacts | None, measured: Measured) -> LocalFacts:
    """``facts`` with durations from elsewhere (and, from CloudWatch, the function's memory)."""
    memory = measured.memory_mb or (facts.memory_mb if facts else recommended_memory(None))
    if facts is None:
        return LocalFacts(measured=measured, memory_mb=memory, stored_gb=0.0)
    return replace(facts, measured=measured, memory_mb=memory)


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
    image_gb: float = IMAGE_GB,
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
    per_core = measured.per_core_per_s if measured else None
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
        image_gb=image_gb,
        measured_per_vcpu_s=per_core,
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
