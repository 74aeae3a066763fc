"""What counting a quota costs: the same gateway with a key on an unlimited plan, and with a
key on a plan with a quota, whose every admitted request is written to SQLite before it is
answered (one transaction per event-loop turn; see gateway/usage.py).

Real 20 Newsgroups test posts on the newsgroups model, one post per request, over loopback
with wrk, in six rounds of alternating order (unlimited, quota; quota, unlimited; ...):
single 8-second pairs here differ by up to 8% with no change at all, so the target is on
the median of the rounds' ratios: throughput with a quota within 3% of without (>= 0.97).
The gateway process's CPU per request is shown too (the cost itself, less noisy). As in
test_versus_flask, a missed target prints FAIL and the test fails only on errors. Load
length per run: $BENCH_SECONDS (default 5). About a minute and a half.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import harness
import loadtest
import pytest
from loadtest import LoadResult

pytestmark = pytest.mark.perf

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = 6
CONNECTIONS = 32
QUOTA = ["--quota", "2000000000/DAY"]  # never reached: every request is counted and written


def run(server: harness.Server, bodies: Path) -> LoadResult:
    result = loadtest.run_load(server, bodies, CONNECTIONS, SECONDS)
    assert result.errors == 0, f"{server.name}: {result.non_2xx} non-2xx, {result.socket_errors}"
    return result


def test_a_quota_costs_at_most_3_percent_of_throughput(
    bundle: Path, workdir: Path, bodies: dict[int, Path], first_body: bytes
) -> None:
    unlimited = harness.launch_lambdaserve(bundle, workdir, plan=[])
    counted = harness.launch_lambdaserve(bundle, workdir, plan=QUOTA)
    servers = [unlimited, counted]
    pairs: list[tuple[LoadResult, LoadResult]] = []  # (unlimited, quota) per round
    try:
        for server in servers:
            harness.start(server, first_body)
            run(server, bodies[1])  # warm: every environment forked
        for round_ in range(ROUNDS):  # A B, B A, A B, ...: drift hits both alike
            order = servers if round_ % 2 == 0 else servers[::-1]
            results = {server.name: run(server, bodies[1]) for server in order}
            pairs.append((results[unlimited.name], results[counted.name]))
    finally:
        for server in servers:
            server.stop()
    ratios = [q.requests_per_s / u.requests_per_s for u, q in pairs]
    front = [(u.cpu_ms_per_request["front"], q.cpu_ms_per_request["front"]) for u, q in pairs]
    print()
    print("| round | key, unlimited plan | key, plan with a quota | quota / unlimited |")
    print("|---|---|---|---|")
    for n, ((u, q), (fu, fq)) in enumerate(zip(pairs, front, strict=True), 1):
        print(
            f"| {n} | {u.requests_per_s:,.0f} req/s, p99 {u.p99_ms:.1f} ms, gateway {fu:.3f} ms CPU/req "
            f"| {q.requests_per_s:,.0f} req/s, p99 {q.p99_ms:.1f} ms, gateway {fq:.3f} ms CPU/req "
            f"| {q.requests_per_s / u.requests_per_s:.3f} |"
        )
    median = statistics.median(ratios)
    cpu = statistics.median(fq / fu for fu, fq in front)
    verdict = "PASS" if median >= 0.97 else "FAIL"
    print(f"{verdict}  median requests/s with a quota / without: {median:.3f} (target >= 0.97)")
    print(f"      median gateway CPU per request with a quota / without: {cpu:.3f}")
