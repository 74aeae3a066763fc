"""Load test runs as the console and cost read them: one point a second, the last 20 per model
kept, and a run's figures as durations to price."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaserve.deploy.costing import from_loadtest, measure_reports, project, with_measured
from lambdaserve.errors import LambdaserveError
from lambdaserve.loadgen import NO_ANSWER, LoadResult, per_second
from lambdaserve.store import Store
from lambdaserve.store.loadtests import KEEP_RUNS, latest_loadtest, loadtests, record_loadtest


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state")
    yield store
    store.close()


def test_a_timeline_is_one_point_a_second_with_its_percentiles_rate_and_errors() -> None:
    result = LoadResult("closed", "http://127.0.0.1:1/predict", 3.0, connections=2)
    result.timeline = [
        *((0.01 * n, float(n + 1), 200) for n in range(100)),  # second 0: 1..100 ms
        (1.2, 5.0, 429),
        (1.3, 7.0, 500),
        (1.4, 30_000.0, NO_ANSWER),  # timed out: an error, not a latency
        (2.5, 3.0, 200),
    ]
    assert per_second(result) == [
        {"t": 0, "requests": 100, "p50": 50.0, "p99": 99.0, "errors": 0, "throttled": 0},
        {"t": 1, "requests": 2, "p50": 5.0, "p99": 7.0, "errors": 2, "throttled": 1},
        {"t": 2, "requests": 1, "p50": 3.0, "p99": 3.0, "errors": 0, "throttled": 0},
    ]


def test_a_second_without_any_request_is_a_gap_not_a_missing_point() -> None:
    result = LoadResult("open", "http://127.0.0.1:1/predict", 3.0, rate=1)
    result.timeline = [(0.0, 2.0, 200), (2.0, 2.0, 200)]
    assert per_second(result)[1] == {
        "t": 1,
        "requests": 0,
        "p50": None,
        "p99": None,
        "errors": 0,
        "throttled": 0,
    }


def test_a_model_keeps_its_last_twenty_runs_and_others_keep_theirs(store: Store) -> None:
    point = {"t": 0, "requests": 1, "p50": 1.0, "p99": 1.0, "errors": 0, "throttled": 0}
    record_loadtest(store, "other", {"requests": 1}, [point])
    ids = [record_loadtest(store, "iris", {"requests": n}, [point] * n) for n in range(1, KEEP_RUNS + 6)]
    runs = loadtests(store, "iris")
    assert [r["id"] for r in runs] == ids[::-1][:KEEP_RUNS]
    assert [r["requests"] for r in runs][:2] == [KEEP_RUNS + 5, KEEP_RUNS + 4]
    assert "timeline" not in runs[0]
    latest = latest_loadtest(store, "iris")
    assert latest is not None
    assert latest["id"] == ids[-1]
    assert len(latest["timeline"]) == KEEP_RUNS + 5
    assert len(loadtests(store, "other")) == 1
    assert latest_loadtest(store, "nobody") is None


RUN = {
    "mode": "closed",
    "requests": 3000,
    "requests_per_s": 300.0,
    "latency_ms": {"p50": 4.2, "p90": 6.0, "p99": 9.0, "p99.9": 12.0, "max": 15.0},
    "cold_starts": 1,
    "where": "local",
    "server_cores": 4,
}


def test_a_load_test_prices_at_its_median_latency_and_sizes_the_instance_by_its_throughput() -> None:
    measured = from_loadtest(RUN, "run.json")
    assert (measured.source, measured.duration_ms, measured.p90_ms, measured.per_core_per_s) == (
        "loadtest",
        4.2,
        6.0,
        75.0,
    )
    month = project(with_measured(None, measured), requests=1_000_000)
    assert month.workload["duration_ms"] == 4.2
    # t3.small: 2 vCPUs at the 75 requests a second per core measured, not 2 x 1000 / 4.2 ms
    assert month.break_even["capacity_requests_per_s"] == pytest.approx(150.0)
    assert month.break_even["capacity_basis"] == "load test"


def test_a_load_test_elsewhere_gives_no_per_core_figure() -> None:
    measured = from_loadtest({**RUN, "where": "url"}, "run.json")
    month = project(with_measured(None, measured), requests=1_000_000)
    assert measured.per_core_per_s is None
    assert month.break_even["capacity_basis"] == "duration"


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"hello": 1}, "is not the output of lambdaserve loadtest --json"),
        ({**RUN, "requests": 0, "latency_ms": {"p50": None}}, "has no answered request"),
    ],
)
def test_a_file_that_is_no_load_test_is_refused_with_how_to_make_one(
    run: dict[str, object], message: str
) -> None:
    with pytest.raises(LambdaserveError, match=message):
        from_loadtest(run, "run.json")


def test_cloudwatch_report_lines_give_durations_billed_time_and_the_functions_memory() -> None:
    lines = [
        "START RequestId: a Version: 3\n",
        "REPORT RequestId: a\tDuration: 812.50 ms\tBilled Duration: 2400 ms\tMemory Size: 512 MB\t"
        "Max Memory Used: 190 MB\tInit Duration: 1587.10 ms\t\n",
        "REPORT RequestId: b\tDuration: 10.20 ms\tBilled Duration: 11 ms\tMemory Size: 512 MB\t"
        "Max Memory Used: 201 MB\t\n",
        "REPORT RequestId: c\tDuration: 12.00 ms\tBilled Duration: 12 ms\tMemory Size: 512 MB\t"
        "Max Memory Used: 200 MB\t\n",
    ]
    measured = measure_reports(lines, "cloudwatch", "/aws/lambda/p-news")
    assert measured is not None
    assert (measured.invocations, measured.duration_ms, measured.cold, measured.init_ms) == (
        3,
        12.0,
        1,
        1587.1,
    )
    assert (measured.billed_ms, measured.memory_mb, measured.max_memory_used_mb) == (12.0, 512, 201)
    month = project(with_measured(None, measured), requests=1_000_000)
    assert month.workload["memory_mb"] == 512
    assert measure_reports(["START RequestId: a Version: 3"], "cloudwatch", "x") is None
