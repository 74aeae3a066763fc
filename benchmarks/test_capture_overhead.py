"""What prediction capture costs the handler: throughput with capture off and at 10 %.

One real test post per invocation, on the newsgroups model, through ``PredictionService.handle``
(what an execution environment runs per event, locally as in the Lambda image), and through
``handle_many`` in messages of 16 (the local gateway's batch mode under load), with stdout
taken as the log stream takes it. Off and 10 % run in interleaved rounds, the order swapped
each round, so drift of the machine (turbo, other load) falls on both alike. The captured 10 %
pay for their record (predict_proba, JSON); the other 90 % pay one dict lookup and one draw.
Also measured: the size of a record, which is what CloudWatch Logs bills (docs/performance.md).
Target: 10 % within 3 % of off.
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
import statistics
import time
from pathlib import Path

import pytest

from lambdaserve.runtime import models
from lambdaserve.runtime.apigw import rest_proxy_event
from lambdaserve.runtime.capture import CaptureSampler
from lambdaserve.runtime.handler import PredictionService

pytestmark = pytest.mark.perf
ROUNDS = 12
BATCH = 16  # events per message in batch mode, as the local gateway sends them under load


def test_capture_at_10_percent_costs_little_throughput(news_model: Path, test_posts: list[str]) -> None:
    service = PredictionService(models.load_model(news_model, "pickle"), "bench")
    service.capture = CaptureSampler()  # no LAMBDASERVE_CAPTURE: the stage variable decides

    def events(rate: str | None) -> list[dict[str, object]]:
        built = [rest_proxy_event(json.dumps([post]), model="news", stage="prod") for post in test_posts]
        for event in built:
            event["stageVariables"] = {"lambdaserveCapture": rate} if rate else None
        return built

    off, sampled, every = events(None), events("0.1"), events("1")

    def throughput(batch: list[dict[str, object]], per_message: int) -> float:
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            started = time.perf_counter()
            for first in range(0, len(batch), per_message):
                message = batch[first : first + per_message]
                service.handle_many(message, [None] * len(message))
            elapsed = time.perf_counter() - started
        return len(batch) / elapsed

    throughput(off, 1)  # warm: first calls pay for lazy set-up
    throughput(off, BATCH)
    rates: dict[str, list[float]] = {"off": [], "10%": [], "off batched": [], "10% batched": []}
    for n in range(ROUNDS):
        order = [("off", off), ("10%", sampled)]
        for name, batch in order if n % 2 == 0 else reversed(order):
            rates[name].append(throughput(batch, 1))
            rates[f"{name} batched"].append(throughput(batch, BATCH))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        for event in every:
            service.handle(event, None)
    sizes = [
        len(line.encode()) for line in log.getvalue().splitlines() if line.startswith('{"lambdaserveCapture"')
    ]
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    for mode in ("", " batched"):
        off_rps, sampled_rps = statistics.median(rates[f"off{mode}"]), statistics.median(rates[f"10%{mode}"])
        how = f"messages of {BATCH}" if mode else "one event a message (lambda mode, AWS)"
        print(f"{how}: off {off_rps:7.1f}/s, 10% {sampled_rps:7.1f}/s, ratio {sampled_rps / off_rps:.3f}")
    print(
        f"record size   median {statistics.median(sizes):.0f} B, mean {statistics.mean(sizes):.0f} B, "
        f"max {max(sizes)} B over {len(sizes)} posts"
    )
    mean_gb = statistics.mean(sizes) / 1e9
    print(f"CloudWatch Logs ingestion at $0.50/GB: ${mean_gb * 1e6 * 0.5:.2f} per million records")
    assert len(sizes) == len(every)  # every post at 100 %: none over 64 KB in this set
