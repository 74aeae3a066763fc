"""This working tree against an earlier commit, in one run: no change may cost throughput.

Set ``BENCH_BASE`` to a commit (e.g. ``BENCH_BASE=HEAD~3 make bench``); it is checked out in a
temporary worktree and served from its ``src/`` with this environment's libraries, beside
the working tree's server. Both serve the newsgroups bundle with an API key on an unlimited
plan, as the other benchmarks do; wrk sends one real test post per request at 32 and at 128
connections, in six rounds of alternating order (base, tree; tree, base; ...) so that the
machine's drift hits both alike. The target is on the median of the rounds' ratios:
throughput at least 0.97 of the base's (single pairs differ by up to 8% with no change at
all), p99 no worse than 1.1x. As in test_versus_flask, a missed target prints FAIL; the test
fails only on errors. Without ``BENCH_BASE`` it is skipped. Load per run: $BENCH_SECONDS (5).
"""

from __future__ import annotations

import os
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import harness
import loadtest
import pytest

pytestmark = pytest.mark.perf

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = 6
BASE = os.environ.get("BENCH_BASE", "")


@pytest.fixture
def base_checkout(workdir: Path) -> Iterator[Path]:
    if not BASE:
        pytest.skip("set BENCH_BASE to a commit to compare this tree with")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", BASE], cwd=harness.ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    checkout = workdir / f"base-{commit}"
    if not checkout.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(checkout), commit],
            cwd=harness.ROOT, check=True, capture_output=True,
        )  # fmt: skip
    yield checkout
    subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=harness.ROOT, check=False)


@pytest.mark.parametrize("connections", [32, 128])
def test_this_tree_is_no_slower_than_the_base(
    base_checkout: Path,
    bundle: Path,
    workdir: Path,
    bodies: dict[int, Path],
    first_body: bytes,
    connections: int,
) -> None:
    base = harness.launch_lambdaserve(bundle, workdir, plan=[], source=base_checkout)
    tree = harness.launch_lambdaserve(bundle, workdir, plan=[])
    servers = [base, tree]
    rows = []
    try:
        for server in servers:
            harness.start(server, first_body)
            loadtest.run_load(server, bodies[1], connections, SECONDS)  # warm: every environment forked
        for round_ in range(ROUNDS):
            order = servers if round_ % 2 == 0 else servers[::-1]
            results = {
                server.name: loadtest.run_load(server, bodies[1], connections, SECONDS) for server in order
            }
            for result in results.values():
                assert result.errors == 0, result.output
            rows.append((results[base.name], results[tree.name]))
    finally:
        for server in servers:
            server.stop()
    throughput = [t.requests_per_s / b.requests_per_s for b, t in rows]
    tail = [t.p99_ms / b.p99_ms for b, t in rows]
    print(f"\n{connections} connections, base {base_checkout.name} against this tree")
    print("| round | base req/s | tree req/s | tree / base | base p99 ms | tree p99 ms |")
    print("|---|---|---|---|---|---|")
    for n, ((b, t), ratio) in enumerate(zip(rows, throughput, strict=True), 1):
        rates = f"{b.requests_per_s:.0f} | {t.requests_per_s:.0f} | {ratio:.3f}"
        print(f"| {n} | {rates} | {b.p99_ms:.1f} | {t.p99_ms:.1f} |")
    ratio, p99 = statistics.median(throughput), statistics.median(tail)
    verdict = "PASS" if ratio >= 0.97 and p99 <= 1.1 else "FAIL"
    print(f"median throughput ratio {ratio:.3f} (target >= 0.97), p99 ratio {p99:.2f} (<= 1.1): {verdict}")
