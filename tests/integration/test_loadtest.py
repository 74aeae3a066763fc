"""lambdaserve loadtest against a local server: closed and open loop, bounded and exact."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Bundle
from gateway_support import Served, ServerPool
from typer.testing import CliRunner

from lambdaserve.cli.app import app
from lambdaserve.store import Store


@pytest.fixture(scope="module")
def served(topics_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("loadtest") / "state"
    store = Store(state)
    manifest, model_file = topics_bundle
    record, _ = store.add_version("topics", manifest, model_file)
    store.set_alias("topics", "test", record.version)
    store.close()
    pool = ServerPool()
    try:
        yield pool.start(state)
    finally:
        pool.stop_all()


def loadtest(served: Served, *args: str) -> dict[str, Any]:
    where = ["--base", served.base, "--api-key", served.api_key, "--state-dir", str(served.state_dir)]
    result = CliRunner().invoke(app, ["loadtest", "topics", *args, *where, "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_a_closed_loop_counts_every_answer_and_the_cold_start_it_caused(served: Served) -> None:
    # WHEN 4 clients send the bundle's own sample for 2 seconds, the first run on this server
    summary = loadtest(served, "--connections", "4", "--duration", "2", "--warmup", "0")
    # THEN every request is a 200, latencies are percentiles of them, and the INIT shows
    assert summary["requests"] == summary["statuses"]["200"]
    assert int(summary["requests"]) > 20
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert summary["failures"] == {}
    assert summary["cold_starts"] == 1


def test_an_open_loop_sends_at_the_rate_asked_and_counts_from_when_each_was_due(served: Served) -> None:
    started = time.perf_counter()
    summary = loadtest(served, "--rate", "50", "--duration", "2", "--warmup", "0")
    wall = time.perf_counter() - started
    # THEN 100 requests went out in 2 seconds (at 50 a second, not faster, not slower)
    assert summary["requests"] == 100
    assert summary["requests_per_s"] == pytest.approx(50, rel=0.05)
    assert 2.0 <= wall < 6.0
    assert summary["dropped"] == 0


def test_bad_options_are_refused_with_how_to_fix_them(served: Served, tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(
        app, ["loadtest", "topics", "-c", "4", "-r", "10", "--state-dir", str(served.state_dir)]
    )
    nowhere = runner.invoke(app, ["loadtest", "nope", "--state-dir", str(served.state_dir)])
    bodiless = runner.invoke(app, ["loadtest", "http://127.0.0.1:9/x", "--duration", "1"])
    assert [r.exit_code for r in (both, nowhere, bodiless)] == [1, 1, 1]
    assert "not both" in both.stderr
    assert "Served here: topics@test" in " ".join(nowhere.stderr.split())
    assert "--data" in bodiless.stderr


def test_the_text_report_names_the_run_its_percentiles_and_the_clients_share(served: Served) -> None:
    where = ["--base", served.base, "--api-key", served.api_key, "--state-dir", str(served.state_dir)]
    result = CliRunner().invoke(app, ["loadtest", "topics", "-c", "2", "-d", "1", "--warmup", "0", *where])
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"{served.base}/test/topics/predict: 2 connections" in text
    assert "p99.9 ms" in text
    assert "statuses: 200:" in text
    assert "the client used" in text


def test_compare_flask_runs_the_same_load_on_the_posts_server_and_sets_them_side_by_side(
    served: Served,
) -> None:
    summary = loadtest(
        served, "--connections", "4", "--duration", "2", "--warmup", "0.5", "--compare", "flask"
    )
    flask = summary["flask"]
    # THEN both served every request of the same bodies, each reported the same way
    assert int(flask["requests"]) > 20
    assert flask["statuses"] == {"200": flask["requests"]}
    assert flask["url"].endswith("/predict")
    assert summary["statuses"] == {"200": summary["requests"]}
    # AND the Flask server is gone afterwards: its port answers nothing
    with pytest.raises(httpx.ConnectError):
        httpx.post(flask["url"], content=b"[]", timeout=2)


def test_a_comparison_gives_no_ratio_when_the_client_was_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lambdaserve.cli.loadtest_command import _compare
    from lambdaserve.loadgen import LoadResult

    def run(requests: int, client_cpu_s: float) -> LoadResult:
        result = LoadResult("closed", "http://127.0.0.1:1/predict", 10.0, connections=32)
        result.latencies_ms = [5.0] * requests
        result.statuses[200] = requests
        result.client_cpu_s = client_cpu_s
        return result

    _compare(run(4000, 9.9), run(6000, 9.5))  # the client used 0.99 of a core
    limited = " ".join(capsys.readouterr().out.split())
    _compare(run(2000, 2.4), run(2000, 2.5))
    measured = " ".join(capsys.readouterr().out.split())
    assert "The client was the limit (0.99 of a core): no ratio" in limited
    assert "x the requests a second" not in limited
    assert "lambdaserve / Flask: 1.00x the requests a second" in measured


def test_a_run_is_recorded_shown_by_the_admin_api_and_priced_by_cost(served: Served, tmp_path: Path) -> None:
    # WHEN a load test runs against the model served here
    summary = loadtest(served, "--connections", "2", "--duration", "2", "--warmup", "0")
    # THEN the admin API has it as the latest run, with one point a second of its timeline
    answer = httpx.get(
        f"{served.base}/_/api/models/topics/loadtests",
        headers={"Authorization": f"Bearer {served.admin_token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    runs = answer.json()
    latest = runs["latest"]
    assert runs["runs"][0]["id"] == latest["id"] == summary["id"]
    assert (latest["model"], latest["stage"], latest["version"], latest["where"]) == (
        "topics",
        "test",
        1,
        "local",
    )
    assert latest["requests"] == summary["requests"]
    assert [p["t"] for p in latest["timeline"]] == [0, 1]
    assert sum(p["requests"] for p in latest["timeline"]) == summary["requests"]
    assert all(p["p50"] <= p["p99"] for p in latest["timeline"])
    # AND cost prices from it, from the store or from the --json file, and says so
    where = ["--state-dir", str(served.state_dir)]
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(summary))
    runner = CliRunner()
    priced = []
    for source in ("latest", str(run_file)):
        result = runner.invoke(app, ["cost", "topics", "--from-loadtest", source, *where, "--json"])
        assert result.exit_code == 0, result.stdout + result.stderr
        priced.append(json.loads(result.stdout))
    for month in priced:
        assert month["measured"]["source"] == "loadtest"
        assert month["workload"]["duration_ms"] == summary["latency_ms"]["p50"]
        assert month["break_even"]["capacity_basis"] == "load test"
    assert priced[0]["measured"]["where"].startswith(f"run {summary['id']} of topics")
    text = runner.invoke(app, ["cost", "topics", "--from-loadtest", "latest", *where])
    assert "durations from: a load test's latencies" in " ".join(text.stdout.split())
    # AND a model that never had one says how to get one
    fresh = tmp_path / "fresh"
    store = Store(fresh)
    store.close()
    nothing = runner.invoke(app, ["cost", "--from-loadtest", "latest", "--state-dir", str(fresh)])
    assert nothing.exit_code == 1
    assert "needs a MODEL" in nothing.stderr


def test_batch_sends_that_many_instances_per_request(served: Served) -> None:
    from gateway_support import wait_until

    # WHEN each request carries the sample's instance 16 times
    summary = loadtest(served, "--rate", "20", "--duration", "1", "--warmup", "0", "--batch", "16")
    # THEN every request is answered, and the function saw batches of 16 instances
    assert summary["statuses"] == {"200": summary["requests"]}
    wait_until(lambda: '"batchSize": 16' in served.model_log("topics"), 10)
    refused = CliRunner().invoke(app, ["loadtest", "topics", "--batch", "0", "--base", served.base])
    assert refused.exit_code == 1
    assert "--batch is from 1 to 10,000" in refused.stderr
