"""The local gateway (``lambdaserve serve``) against the blog post's Flask server, and both
against ``model.predict`` in process: the "Speed" targets of the local-gateway issue.

Real 20 Newsgroups test posts on the newsgroups model, over loopback, with wrk
(``benchmarks/post_bodies.lua`` cycles through the posts). Each server runs with 2
execution environments / 2 gunicorn sync workers. This machine's speed drifts by up to
1.7x between minutes, so every figure is a ratio within one run, and every comparison
is interleaved in both orders: lambdaserve, Flask, Flask, lambdaserve (round 1 is
lambdaserve then Flask, round 2 Flask then lambdaserve); a ratio is reported per round.

A missed target prints FAIL but does not fail the test: this is a measurement. The test
fails only when a server does not start, answers wrongly, or answers with errors. Raw
results go to $BENCH_OUT (default /tmp/lambdaserve-bench.json). Load length per run:
$BENCH_SECONDS (default 8). The whole module takes about four minutes.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import loadtest
import pytest
from harness import Server
from loadtest import LoadResult

pytestmark = pytest.mark.perf

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
BENCH_OUT = Path(os.environ.get("BENCH_OUT", "/tmp/lambdaserve-bench.json"))
ENVIRONMENTS = 2  # lambdaserve environments and gunicorn workers alike
LAUNCHES = 3
# The figures for LitServe 0.2 with server-side batching on this machine (another
# day): 960-1,230 requests/s while Flask did 550-640, so at best 1230 / 550 = 2.24x Flask;
# 6,350-7,400 posts/s at 16 posts per request.
LITSERVE_VS_FLASK_BEST = 1230 / 550
LITSERVE_POSTS_BEST = 7400
FLASK_THEN_SLOWEST = 550  # requests/s, one post per request, in the runs


@dataclass
class Report:
    """What the module measured: a Markdown table, target lines, and the raw JSON."""

    rows: list[tuple[str, ...]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def row(self, *cells: str) -> None:
        self.rows.append(cells)

    def target(self, what: str, ratios: list[float], limit: float, at_most: bool) -> None:
        """A target is met when every round meets it."""
        passed = all(r <= limit if at_most else r >= limit for r in ratios)
        target = {"what": what, "measured": ratios, "limit": limit, "at_most": at_most, "passed": passed}
        self.targets.append(target)
        print(target_line(target))

    def print(self) -> None:
        print("\n| measure | lambdaserve | Flask + gunicorn | lambdaserve / Flask |")
        print("|---|---|---|---|")
        for cells in self.rows:
            print("| " + " | ".join(cells) + " |")
        print()
        for target in self.targets:
            print(target_line(target))


def target_line(target: dict[str, Any]) -> str:
    shown = " / ".join(f"{r:.2f}" for r in target["measured"])
    sign = "<=" if target["at_most"] else ">="
    verdict = "PASS" if target["passed"] else "FAIL"
    return f"{verdict}  {target['what']}: {shown} (target {sign} {target['limit']:.2f})"


def pair(values: list[float], digits: int = 0, unit: str = "") -> str:
    return " / ".join(f"{v:,.{digits}f}" for v in values) + unit


def cpu_row(report: Report, label: str, ls: list[LoadResult], fl: list[LoadResult]) -> None:
    """Where the CPU goes: the front process (gateway; gunicorn arbiter) + its workers."""

    def shown(results: list[LoadResult]) -> str:
        return " / ".join(
            f"{r.cpu_ms_per_request['front']:.2f} + {r.cpu_ms_per_request['workers']:.2f}" for r in results
        )

    def cores(results: list[LoadResult]) -> str:
        return " / ".join(
            f"{r.cores['server']:.2f}, {r.cores['wrk']:.2f}, {r.cores['others']:.2f}" for r in results
        )

    report.row(f"{label}, CPU ms per request (front + workers)", shown(ls), shown(fl), "")
    report.row(f"{label}, cores busy: server, wrk, rest of the machine", cores(ls), cores(fl), "")


def check_no_errors(*results: LoadResult) -> None:
    for result in results:
        assert result.errors == 0, (
            f"{result.url} at {result.connections} connections: {result.non_2xx} non-2xx, "
            f"socket errors {result.socket_errors}"
        )


def interleaved(
    first: Server, second: Server, bodies: Path, connections: int
) -> tuple[list[LoadResult], list[LoadResult]]:
    """first, second, second, first: two rounds, in opposite orders."""
    a1 = loadtest.run_load(first, bodies, connections, SECONDS)
    b1 = loadtest.run_load(second, bodies, connections, SECONDS)
    b2 = loadtest.run_load(second, bodies, connections, SECONDS)
    a2 = loadtest.run_load(first, bodies, connections, SECONDS)
    check_no_errors(a1, b1, b2, a2)
    return [a1, a2], [b1, b2]


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    report = Report()
    report.data["machine"] = loadtest.machine()
    report.data["settings"] = {"seconds_per_load": SECONDS, "environments": ENVIRONMENTS, "wrk_threads": 1}
    yield report
    machine = report.data["machine"]
    end = loadtest.machine()
    report.data["load_average_end"] = end["load_average"]
    print(
        f"\n{machine['date']}: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"scikit-learn {machine.get('scikit-learn')}, {machine['wrk']}\ncommit {machine['commit']}; "
        f"load average at start {machine['load_average']}, at end {end['load_average']}"
    )
    report.print()
    report.data["targets"] = report.targets
    BENCH_OUT.write_text(json.dumps(report.data, indent=2))
    print(f"\nRaw results: {BENCH_OUT}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("versus-flask")


@pytest.fixture(scope="module")
def model(news_model: Path) -> Any:
    with news_model.open("rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def bundle(news_model: Path, workdir: Path) -> Path:
    """The model packaged as a bundle named "news" (so its route is /test/news/predict)."""
    output = workdir / "news"
    done = subprocess.run(
        [
            str(harness.BIN / "lambdaserve"),
            "package",
            str(news_model),
            "--sample",
            '["the space shuttle launch"]',
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LAMBDASERVE_CACHE": str(workdir / "cache")},
    )
    assert done.returncode == 0, f"lambdaserve package failed:\n{done.stdout}\n{done.stderr}"
    return output


@pytest.fixture(scope="module")
def bodies(test_posts: list[str], workdir: Path) -> dict[int, Path]:
    """Request bodies for wrk: one post per request, and 16 posts per request."""
    return {n: loadtest.write_bodies(test_posts, n, workdir / f"bodies-{n}.jsonl") for n in (1, 16)}


@pytest.fixture(scope="module")
def first_body(test_posts: list[str]) -> bytes:
    return json.dumps([test_posts[0]]).encode()


@pytest.fixture(scope="module")
def servers(
    bundle: Path, news_model: Path, workdir: Path, first_body: bytes, bodies: dict[int, Path]
) -> Iterator[tuple[Server, Server]]:
    """lambdaserve (batch mode) and Flask, both running and warmed up."""
    gateway = harness.launch_lambdaserve(bundle, workdir, concurrency=ENVIRONMENTS)
    flask = harness.launch_flask(news_model, workdir, workers=ENVIRONMENTS)
    try:
        harness.start(gateway, first_body)
        harness.start(flask, first_body)
        for server in (gateway, flask):  # every environment / worker forked and warm
            check_no_errors(loadtest.run_wrk(server.url, bodies[1], 32, 2))
        yield gateway, flask
    finally:
        gateway.stop()
        flask.stop()


# -- the measurements, in the order they run ----------------------------------------------
def test_launch_to_first_prediction(
    bundle: Path, news_model: Path, workdir: Path, first_body: bytes, report: Report
) -> None:
    """From Popen to the first 200 answer to a real post, asked every 10 ms.

    lambdaserve serves the bundle with a new state directory each time (registering it
    is part of its launch); Flask + gunicorn loads the pickle in each of its 2 workers.
    One untimed launch of each first, so both start with a warm page cache.
    """

    def launch(kind: str) -> float:
        server = (
            harness.launch_lambdaserve(bundle, workdir, concurrency=ENVIRONMENTS)
            if kind == "lambdaserve"
            else harness.launch_flask(news_model, workdir, workers=ENVIRONMENTS)
        )
        try:
            seconds = server.wait_until_predicting(first_body)
            if kind == "lambdaserve":
                harness.check_announced_url(server)
            return seconds
        finally:
            server.stop()

    launch("lambdaserve")
    launch("flask")
    times: dict[str, list[float]] = {"lambdaserve": [], "flask": []}
    # Pairs in alternating orders: (lambdaserve, Flask), (Flask, lambdaserve), ...
    pairs = [("lambdaserve", "flask"), ("flask", "lambdaserve")]
    order = [kind for n in range(LAUNCHES) for kind in pairs[n % 2]]
    for kind in order:
        times[kind].append(launch(kind))
    ls, fl = times["lambdaserve"], times["flask"]
    ratios = [a / b for a, b in zip(ls, fl, strict=True)]
    report.data["launch_s"] = {"order": order, **times, "ratios": ratios}
    report.row(
        f"launch to first prediction ({LAUNCHES} runs)",
        pair(ls, 2, " s"),
        pair(fl, 2, " s"),
        f"{pair(ratios, 2)} (medians {statistics.median(ls) / statistics.median(fl):.2f})",
    )
    report.target("launch to first prediction, lambdaserve / Flask", ratios, 0.6, at_most=True)


def test_servers_answer_as_the_model_does(
    servers: tuple[Server, Server], model: Any, test_posts: list[str]
) -> None:
    """Timings are only worth reading if every server answers what model.predict answers."""
    batches = [test_posts[i : i + 1] for i in range(0, 40, 4)] + loadtest.request_bodies(test_posts, 16)[:3]
    for server in servers:
        for batch in batches:
            status, answer = harness.post(server.url, json.dumps(batch).encode())
            assert status == 200, f"{server.name}: HTTP {status} {answer[:300]!r}"
            assert json.loads(answer) == model.predict(batch).tolist(), server.name


def test_one_connection_latency_against_in_process(
    servers: tuple[Server, Server], bodies: dict[int, Path], model: Any, test_posts: list[str], report: Report
) -> None:
    """One post per request on 1 connection; in-process predict measured right before and after."""
    gateway, flask = servers
    log = harness.lambda_log(gateway)
    offset = harness.log_size(log)
    before = loadtest.median_predict_ms(model, test_posts)
    ls, fl = interleaved(gateway, flask, bodies[1], 1)
    after = loadtest.median_predict_ms(model, test_posts)
    inside = harness.invocation_medians(log, offset)
    limits = [before, after]  # round 1 ran next to "before", round 2 next to "after"
    batch16 = loadtest.per_post_in_batches_ms(model, test_posts, 16)
    batch64 = loadtest.per_post_in_batches_ms(model, test_posts, 64)
    ls_ratio = [r.p50_ms / limit for r, limit in zip(ls, limits, strict=True)]
    fl_ratio = [r.p50_ms / limit for r, limit in zip(fl, limits, strict=True)]
    report.data["in_process_ms"] = {
        "predict_one_before": before,
        "predict_one_after": after,
        "per_post_batch_16": batch16,
        "per_post_batch_64": batch64,
    }
    report.data["one_connection"] = {
        "lambdaserve": [r.to_dict() for r in ls],
        "flask": [r.to_dict() for r in fl],
        "lambdaserve_vs_in_process": ls_ratio,
        "flask_vs_in_process": fl_ratio,
        "lambdaserve_log_medians": inside,
    }
    report.row("in-process `model.predict`, one post (before / after)", pair(limits, 3, " ms"), "", "")
    report.row("in-process, per post in a batch of 16 / of 64", f"{batch16:.3f} / {batch64:.3f} ms", "", "")
    report.row(
        "1 connection, median latency",
        pair([r.p50_ms for r in ls], 2, " ms"),
        pair([r.p50_ms for r in fl], 2, " ms"),
        pair([a.p50_ms / b.p50_ms for a, b in zip(ls, fl, strict=True)], 2),
    )
    report.row("1 connection, median / in-process median", pair(ls_ratio, 2, "x"), pair(fl_ratio, 2, "x"), "")
    if inside:
        report.row(
            "1 connection, inside lambdaserve's environment: predictMs / REPORT Duration (medians)",
            f"{inside['predict_ms']:.2f} / {inside['duration_ms']:.2f} ms",
            "",
            "",
        )
    cpu_row(report, "1 connection", ls, fl)
    report.target("1 connection: lambdaserve median / in-process median", ls_ratio, 1.15, at_most=True)
    print(f"      (Flask: {pair(fl_ratio, 2, 'x')} of in-process; the issue saw about 1.07x)")


@pytest.mark.parametrize("connections", [32, 128])
def test_throughput_one_post_per_request(
    servers: tuple[Server, Server], bodies: dict[int, Path], connections: int, report: Report
) -> None:
    gateway, flask = servers
    ls, fl = interleaved(gateway, flask, bodies[1], connections)
    ratios = [a.requests_per_s / b.requests_per_s for a, b in zip(ls, fl, strict=True)]
    p99 = [a.p99_ms / b.p99_ms for a, b in zip(ls, fl, strict=True)]
    report.data[f"one_post_{connections}_connections"] = {
        "lambdaserve": [r.to_dict() for r in ls],
        "flask": [r.to_dict() for r in fl],
        "throughput_ratios": ratios,
        "p99_ratios": p99,
    }
    report.row(
        f"{connections} connections, requests/s",
        pair([r.requests_per_s for r in ls]),
        pair([r.requests_per_s for r in fl]),
        pair(ratios, 2),
    )
    report.row(
        f"{connections} connections, p99 latency",
        pair([r.p99_ms for r in ls], 1, " ms"),
        pair([r.p99_ms for r in fl], 1, " ms"),
        pair(p99, 2),
    )
    cpu_row(report, f"{connections} connections", ls, fl)
    report.target(f"{connections} connections: requests/s, lambdaserve / Flask", ratios, 3.0, at_most=False)
    litserve = 1.5 * LITSERVE_VS_FLASK_BEST
    report.target(
        f"{connections} connections: requests/s vs 1.5x LitServe (= {litserve:.2f}x Flask)",
        ratios,
        litserve,
        at_most=False,
    )
    report.target(f"{connections} connections: p99, lambdaserve / Flask", p99, 1.0, at_most=True)


def test_sixteen_posts_per_request(
    servers: tuple[Server, Server], bodies: dict[int, Path], report: Report
) -> None:
    gateway, flask = servers
    ls, fl = interleaved(gateway, flask, bodies[16], 32)
    ls_posts = [16 * r.requests_per_s for r in ls]
    fl_posts = [16 * r.requests_per_s for r in fl]
    ratios = [a / b for a, b in zip(ls_posts, fl_posts, strict=True)]
    report.data["sixteen_posts_32_connections"] = {
        "lambdaserve": [r.to_dict() for r in ls],
        "flask": [r.to_dict() for r in fl],
        "lambdaserve_posts_per_s": ls_posts,
        "flask_posts_per_s": fl_posts,
        "ratios": ratios,
    }
    report.row(
        "16 posts per request, 32 connections, posts/s", pair(ls_posts), pair(fl_posts), pair(ratios, 2)
    )
    report.row(
        "16 posts per request, p99 latency",
        pair([r.p99_ms for r in ls], 1, " ms"),
        pair([r.p99_ms for r in fl], 1, " ms"),
        pair([a.p99_ms / b.p99_ms for a, b in zip(ls, fl, strict=True)], 2),
    )
    cpu_row(report, "16 posts per request", ls, fl)
    report.target(
        f"16 posts per request: posts/s / 1.3x LitServe's best ({1.3 * LITSERVE_POSTS_BEST:,.0f}/s; "
        "absolute, another day)",
        [p / (1.3 * LITSERVE_POSTS_BEST) for p in ls_posts],
        1.0,
        at_most=False,
    )
    # The absolute figure is from another day; Flask's one-post throughput is the yardstick
    # of how fast the machine is today (strictest reading: Flask then at its slowest).
    flask_32 = report.data.get("one_post_32_connections", {}).get("flask")
    if flask_32:
        speed = statistics.mean(r["requests_per_s"] for r in flask_32) / FLASK_THEN_SLOWEST
        report.target(
            f"16 posts per request: the same, LitServe scaled by today's Flask speed ({speed:.2f}x)",
            [p / (1.3 * LITSERVE_POSTS_BEST * speed) for p in ls_posts],
            1.0,
            at_most=False,
        )


def test_lambda_mode_for_reference(
    bundle: Path,
    workdir: Path,
    servers: tuple[Server, Server],
    bodies: dict[int, Path],
    first_body: bytes,
    report: Report,
) -> None:
    """--mode lambda: one invocation per environment, no batching (no target; for the docs).

    Without --concurrency: with reserved concurrency, Lambda mode throttles (429) what no
    environment takes at once, as Lambda does; the default cap is the number of cores.
    """
    _, flask = servers
    strict = harness.launch_lambdaserve(bundle, workdir, mode="lambda", concurrency=None)
    try:
        harness.start(strict, first_body)
        check_no_errors(loadtest.run_wrk(strict.url, bodies[1], 32, 2))
        ls, fl = interleaved(strict, flask, bodies[1], 32)
    finally:
        strict.stop()
    ratios = [a.requests_per_s / b.requests_per_s for a, b in zip(ls, fl, strict=True)]
    report.data["lambda_mode_32_connections"] = {
        "lambdaserve": [r.to_dict() for r in ls],
        "flask": [r.to_dict() for r in fl],
        "throughput_ratios": ratios,
    }
    report.row(
        "`--mode lambda`, 32 connections, requests/s",
        pair([r.requests_per_s for r in ls]),
        pair([r.requests_per_s for r in fl]),
        pair(ratios, 2),
    )
    report.row(
        "`--mode lambda`, 32 connections, p99 latency",
        pair([r.p99_ms for r in ls], 1, " ms"),
        pair([r.p99_ms for r in fl], 1, " ms"),
        pair([a.p99_ms / b.p99_ms for a, b in zip(ls, fl, strict=True)], 2),
    )
    cpu_row(report, "`--mode lambda`, 32 connections", ls, fl)


def test_resident_memory(servers: tuple[Server, Server], bodies: dict[int, Path], report: Report) -> None:
    """PSS and RSS summed over each server's whole process tree, after both served a load.

    PSS shares each page among the processes mapping it, so its sum is what the tree
    really holds; an RSS sum counts a page shared by 3 processes 3 times.
    """
    gateway, flask = servers
    for server in (gateway, flask):  # every environment / worker has predicted
        check_no_errors(loadtest.run_wrk(server.url, bodies[1], 32, 3))
    trees = {server.name: harness.tree_memory(server.pid) for server in servers}
    ls, fl = trees[gateway.name], trees[flask.name]
    environments = sum("forkserver" in m.command for m in ls) - 1  # minus the template
    sums = {
        name: {key: sum(getattr(m, key) for m in tree) / 1024 for key in ("pss_kib", "rss_kib", "uss_kib")}
        for name, tree in trees.items()
    }
    report.data["memory"] = {
        "lambdaserve_environments": environments,
        "processes": {name: [vars(m) for m in tree] for name, tree in trees.items()},
        "sums_mib": sums,
    }
    pss = sums[gateway.name]["pss_kib"] / sums[flask.name]["pss_kib"]
    rss = sums[gateway.name]["rss_kib"] / sums[flask.name]["rss_kib"]
    report.row(
        f"memory, PSS sum ({len(ls)} / {len(fl)} processes)",
        f"{sums[gateway.name]['pss_kib']:.0f} MiB",
        f"{sums[flask.name]['pss_kib']:.0f} MiB",
        f"{pss:.2f}",
    )
    report.row(
        "memory, RSS sum",
        f"{sums[gateway.name]['rss_kib']:.0f} MiB",
        f"{sums[flask.name]['rss_kib']:.0f} MiB",
        f"{rss:.2f}",
    )
    for name, tree in trees.items():
        for m in tree:
            print(
                f"      {name}: pid {m.pid} RSS {m.rss_kib / 1024:.0f} PSS {m.pss_kib / 1024:.0f} "
                f"USS {m.uss_kib / 1024:.0f} MiB  {m.command[:70]}"
            )
    report.target(f"memory, PSS sum, lambdaserve ({environments} environments) / Flask", [pss], 1.0, True)
    report.target("memory, RSS sum, lambdaserve / Flask", [rss], 1.0, at_most=True)
