"""The console's time series: what one 2 s point says, exactly, with the clocks held still."""

from __future__ import annotations

import pytest

from lambdaserve.functions.series import RESERVOIR, LiveSignals, SeriesRecorder


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def signals(clock: Clock) -> LiveSignals:
    return LiveSignals(clock=clock, wall=lambda: clock.now + 1_700_000_000)


def test_a_point_gives_rate_exact_percentiles_and_error_shares(clock: Clock, signals: LiveSignals) -> None:
    recorder = SeriesRecorder(signals, interval_s=2.0)
    # GIVEN 100 requests in 2 s: latencies 1..100 ms, five 4xx and one 5xx
    for n in range(1, 101):
        status = 500 if n == 50 else 429 if n > 95 else 200
        signals.request("news", "test", status, n / 1000)
    signals.refused("news", "test")
    clock.now += 2.0
    # WHEN it is sampled
    recorder.sample({("news", "test"): ["1"]})
    point = recorder.series()["series"][0]
    # THEN the point says so, by nearest rank
    assert (point["requests"], point["rps"]) == ([100], [50.0])
    assert (point["p50"], point["p95"], point["p99"]) == ([50.0], [95.0], [99.0])
    assert (point["errors_4xx"], point["errors_5xx"]) == ([0.05], [0.01])
    assert point["throttled"] == [0.5]


def test_busy_environments_are_a_time_weighted_mean_summed_over_the_stages_versions(
    clock: Clock, signals: LiveSignals
) -> None:
    recorder = SeriesRecorder(signals, interval_s=2.0)
    # GIVEN version 1 with 2 environments, one busy half the interval; a canary version 2 idle
    signals.environments_changed("news", "1", 0, 2)
    signals.environments_changed("news", "2", 0, 1)
    clock.now += 1.0
    signals.environments_changed("news", "1", 1, 2)
    clock.now += 1.0
    recorder.sample({("news", "prod"): ["1", "2"]})
    point = recorder.series()["series"][0]
    assert (point["busy"], point["total"]) == ([0.5], [3])
    # AND a quiet interval is a point too: no request, no latency, the environments still there
    clock.now += 2.0
    recorder.sample({("news", "prod"): ["1", "2"]})
    quiet = recorder.series()["series"][0]
    assert (quiet["requests"][-1], quiet["p99"][-1], quiet["busy"][-1]) == (0, None, 1.0)


def test_memory_stays_bounded_whatever_the_load_and_the_history(clock: Clock, signals: LiveSignals) -> None:
    recorder = SeriesRecorder(signals, interval_s=2.0, keep_s=20.0)
    for _ in range(RESERVOIR * 3):
        signals.request("news", "test", 200, 0.001)
    assert len(signals.windows[("news", "test")].latencies) == RESERVOIR
    for _ in range(50):
        clock.now += 2.0
        recorder.sample({("news", "test"): ["1"]})
    assert len(recorder.points[("news", "test")]) == 10
    # A request refused before routing (no model) is not counted under any stage
    signals.request("", "", 403, 0.001)
    assert ("", "") not in signals.windows


def test_cold_starts_and_series_are_filtered_by_model_stage_and_window(
    clock: Clock, signals: LiveSignals
) -> None:
    recorder = SeriesRecorder(signals, interval_s=2.0)
    signals.cold_start("news", "1", "init", 1234.567)
    clock.now += 600.0
    signals.cold_start("iris", "3", "restore", 4.2)
    signals.request("iris", "prod", 200, 0.002)
    recorder.sample({("news", "test"): ["1"], ("iris", "prod"): ["3"]})
    found = recorder.series(model="iris", minutes=5)
    assert [(s["model"], s["stage"]) for s in found["series"]] == [("iris", "prod")]
    assert found["cold_starts"] == [
        {
            "t": pytest.approx(clock.now + 1_700_000_000),
            "model": "iris",
            "version": "3",
            "kind": "restore",
            "duration_ms": 4.2,
        }
    ]
    assert [c["duration_ms"] for c in recorder.series(minutes=15)["cold_starts"]] == [1234.57, 4.2]
