"""This working tree against an earlier commit, in one run: no change may cost throughput.

Set ``BENCH_BASE`` to a commit (e.g. ``BENCH_BASE=HEAD~3 make bench``); it is checked out in a
temporary worktree and served from its ``src/`` with this environment's libraries, beside
the working tree's server. Both serve the newsgroups bundle with an API key on an unlimited
plan, as the other benchmarks do; wrk sends one real test post per request at 32 and at 128
connections, and 16 posts per request at 32, in six rounds of alternating order (base,
tree; tree, base; ...) so that the machine's drift hits both alike. The target is on the
median of the rounds' ratios: throughput at least 0.97 of the base's (single pairs differ
by up to 8% with no change at all), p99 no worse than 1.1x. At 1 connection it measures
latency instead: each server's median over in-process ``predict`` of one post, measured in
the same round (target, issue 16: at most 1.3x). As in test_versus_flask, a missed target
prints FAIL; the test fails only on errors. Without ``BENCH_BASE`` it is skipped. Load per
run: $BENCH_SECONDS (5).
"""

from __future__ import annotations

import os
import pickle
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


@pytest.mark.parametrize(("connections", "posts"), [(32, 1), (128, 1), (32, 16)])
def test_this_tree_is_no_slower_than_the_base(
    base_checkout: Path,
    bundle: Path,
    workdir: Path,
    bodies: dict[int, Path],
    first_body: bytes,
    connections: int,
    posts: int,
) -> None:
    base = harness.launch_lambdaserve(bundle, workdir, plan=[], source=base_checkout)
    tree = harness.launch_lambdaserve(bundle, workdir, plan=[])
    servers = [base, tree]
    rows = []
    try:
        for server in servers:
            harness.start(server, first_body)
            loadtest.run_load(server, bodies[posts], connections, SECONDS)  # warm: every environment forked
        for round_ in range(ROUNDS):
            order = servers if round_ % 2 == 0 else servers[::-1]
            results = {
                server.name: loadtest.run_load(server, bodies[posts], connections, SECONDS)
                for server in order
            }
            for result in results.values():
                assert result.errors == 0, result.output
            rows.append((results[base.name], results[tree.name]))
    finally:
        for server in servers:
            server.stop()
    throughput = [t.requests_per_s / b.requests_per_s for b, t in rows]
    tail = [t.p99_ms / b.p99_ms for b, t in rows]
    print(
        f"\n{connections} connections, {posts} post(s) per request, "
        f"base {base_checkout.name} against this tree"
    )
    print("| round | base req/s | tree req/s | tree / base | base p99 ms | tree p99 ms |")
    print("|---|---|---|---|---|---|")
    for n, ((b, t), ratio) in enumerate(zip(rows, throughput, strict=True), 1):
        rates = f"{b.requests_per_s:.0f} | {t.requests_per_s:.0f} | {ratio:.3f}"
        print(f"| {n} | {rates} | {b.p99_ms:.1f} | {t.p99_ms:.1f} |")
    ratio, p99 = statistics.median(throughput), statistics.median(tail)
    verdict = "PASS" if ratio >= 0.97 and p99 <= 1.1 else "FAIL"
    print(f"median throughput ratio {ratio:.3f} (target >= 0.97), p99 ratio {p99:.2f} (<= 1.1): {verdict}")


def test_one_connection_latency_against_the_base(
    base_checkout: Path,
    bundle: Path,
    workdir: Path,
    bodies: dict[int, Path],
    first_body: bytes,
    news_model: Path,
    test_posts: list[str],
) -> None:
    """One post per request on 1 connection: each server's median latency over in-process
    ``model.predict([post])``, measured in the same round (before the round's two loads). Target
    (issue 16): at most 1.3x. Also the median of the tree / base latency ratios, and the
    environment's own medians (REPORT Duration, predictMs) from each server's Lambda log."""
    with news_model.open("rb") as f:
        model = pickle.load(f)
    base = harness.launch_lambdaserve(bundle, workdir, plan=[], source=base_checkout)
    tree = harness.launch_lambdaserve(bundle, workdir, plan=[])
    servers = [base, tree]
    rows = []
    try:
        for server in servers:
            harness.start(server, first_body)
            loadtest.run_load(server, bodies[1], 1, 2)  # warm
        logs = {server.name: harness.lambda_log(server) for server in servers}
        offsets = {name: harness.log_size(log) for name, log in logs.items()}
        for round_ in range(ROUNDS):
            limit = loadtest.median_predict_ms(model, test_posts)
            order = servers if round_ % 2 == 0 else servers[::-1]
            results = {server.name: loadtest.run_load(server, bodies[1], 1, SECONDS) for server in order}
            for result in results.values():
                assert result.errors == 0, result.output
            rows.append((limit, results[base.name], results[tree.name]))
        inside = {name: harness.invocation_medians(log, offsets[name]) for name, log in logs.items()}
    finally:
        for server in servers:
            server.stop()
    print(f"\n1 connection, base {base_checkout.name} against this tree")
    print("| round | in-process ms | base p50 ms | tree p50 ms | base / in-process | tree / in-process |")
    print("|---|---|---|---|---|---|")
    for n, (limit, b, t) in enumerate(rows, 1):
        print(
            f"| {n} | {limit:.3f} | {b.p50_ms:.3f} | {t.p50_ms:.3f} "
            f"| {b.p50_ms / limit:.2f} | {t.p50_ms / limit:.2f} |"
        )
    base_ratio = [b.p50_ms / limit for limit, b, _ in rows]
    tree_ratio = [t.p50_ms / limit for limit, _, t in rows]
    latency = [t.p50_ms / b.p50_ms for _, b, t in rows]
    for name, ratios in (("base", base_ratio), ("tree", tree_ratio)):
        print(f"{name} / in-process: {spread(ratios)}")
    print(f"tree / base latency: {spread(latency, 3)}")
    for name, medians in inside.items():
        print(f"inside {name}: {medians}")
    ratio = statistics.median(tree_ratio)
    print(f"tree median / in-process {ratio:.2f} (target <= 1.3): {'PASS' if ratio <= 1.3 else 'FAIL'}")


def spread(values: list[float], digits: int = 2) -> str:
    low, high = min(values), max(values)
    return f"median {statistics.median(values):.{digits}f}, range {low:.{digits}f}-{high:.{digits}f}"
