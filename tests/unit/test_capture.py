"""Prediction capture in the handler: which requests are recorded, and what a record holds."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from lambdaserve.monitoring.capture import is_capture_line
from lambdaserve.runtime import models
from lambdaserve.runtime.capture import MAX_RECORD_BYTES, CaptureSampler, fraction
from lambdaserve.runtime.handler import PredictionService


class Draws:
    """An rng that returns the given values in turn, forever."""

    def __init__(self, *values: float) -> None:
        self.values = values
        self.calls = 0

    def __call__(self) -> float:
        value = self.values[self.calls % len(self.values)]
        self.calls += 1
        return value


@pytest.fixture
def service() -> PredictionService:
    estimator = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["low", "low", "high", "high"])
    return PredictionService(models.EstimatorModel(estimator), "3")


def event(body: Any, rate: str | None = None, route: str = "predict") -> dict[str, Any]:
    return {
        "resource": f"/iris/{route}",
        "body": json.dumps(body),
        "stageVariables": {"lambdaserveCapture": rate} if rate is not None else None,
        "requestContext": {"stage": "prod"},
    }


class Context:
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


def printed(service: PredictionService, events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        service.handle_many(events, [Context(f"req-{n}") for n in range(len(events))])
    return (json.loads(line) for line in buffer.getvalue().splitlines())


def records(service: PredictionService, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        service.handle_many(events, [Context(f"req-{n}") for n in range(len(events))])
    # the marker comes first: the log book and CloudWatch's filter find records by it
    return [json.loads(line) for line in buffer.getvalue().splitlines() if is_capture_line(line)]


def test_capture_is_off_by_default_and_draws_nothing(service: PredictionService) -> None:
    rng = Draws(0.0)
    service.capture = CaptureSampler(rng=rng)
    lines = list(printed(service, [event([[1.0]]) for _ in range(5)]))
    assert len(lines) == 5  # the log lines, and nothing else
    assert not any("lambdaserveCapture" in line for line in lines)
    assert rng.calls == 0


def test_the_rate_is_honoured_draw_by_draw(service: PredictionService) -> None:
    # GIVEN 10% on the stage, and draws that fall under 0.1 for every fifth request
    service.capture = CaptureSampler(rng=Draws(0.05, 0.5, 0.2, 0.9, 0.1))
    captured = records(service, [event([[float(n % 4)]], "0.1") for n in range(20)])
    # THEN exactly the requests whose draw was under the rate are recorded (0.1 is not under 0.1)
    assert [r["requestId"] for r in captured] == ["req-0", "req-5", "req-10", "req-15"]


def test_the_stage_variable_wins_over_the_environment(service: PredictionService) -> None:
    service.capture = CaptureSampler(1.0, rng=Draws(0.5))
    assert len(records(service, [event([[1.0]], "0")])) == 0
    assert len(records(service, [event([[1.0]])])) == 1  # no stage variable: the environment's rate
    assert fraction("nonsense") == fraction("1.5") == 0.0  # a hand-edited variable is off, not an error


def test_a_record_holds_the_request_the_answer_and_the_probabilities(service: PredictionService) -> None:
    service.capture = CaptureSampler(rng=Draws(0.0), wall=lambda: 1796306400.123)
    [record] = records(service, [event([[0.0], [3.0]], "1")])
    probabilities = record.pop("probabilities")
    latency = record.pop("latencyMs")
    assert record == {
        "lambdaserveCapture": 1,
        "time": "2026-12-03T14:00:00.123Z",
        "requestId": "req-0",
        "version": "3",
        "stage": "prod",
        "route": "predict",
        "instances": [[0.0], [3.0]],
        "predictions": ["low", "high"],
    }
    assert [sorted(p) for p in probabilities] == [["high", "low"], ["high", "low"]]
    assert probabilities[0]["low"] > 0.5 > probabilities[1]["low"]
    assert latency >= 0


def test_predict_proba_records_the_labels_beside_the_probabilities(service: PredictionService) -> None:
    service.capture = CaptureSampler(rng=Draws(0.0))
    [record] = records(service, [event([[3.0]], "1", route="predict_proba")])
    assert record["route"] == "predict_proba"
    assert record["predictions"] == ["high"]
    assert record["probabilities"][0]["high"] > 0.5


def test_failed_requests_and_batches_answer_as_before_and_only_answers_are_captured(
    service: PredictionService,
) -> None:
    service.capture = CaptureSampler(rng=Draws(0.0))
    lines = list(printed(service, [event([[1.0]], "1"), event("not a row", "1"), event([[2.0]], "1")]))
    logs = [line for line in lines if "lambdaserveCapture" not in line]
    captured = [line for line in lines if "lambdaserveCapture" in line]
    assert [log["status"] for log in logs] == [200, 400, 200]
    assert [r["requestId"] for r in captured] == ["req-0", "req-2"]


def test_a_record_over_64_kb_is_skipped_and_counted_in_the_log_line() -> None:
    class Echo:
        """A text model whose answers are as long as its questions."""

        def predict(self, x: Any) -> list[str]:
            return list(x)

    text_service = PredictionService(models.EstimatorModel(Echo()), "1")
    text_service.capture = CaptureSampler(rng=Draws(0.0))
    small, large = "a" * 1000, "b" * (MAX_RECORD_BYTES // 2)
    lines = list(printed(text_service, [event([small], "1"), event([large], "1")]))
    logs = {line["requestId"]: line for line in lines if "lambdaserveCapture" not in line}
    assert [r["requestId"] for r in lines if "lambdaserveCapture" in r] == ["req-0"]
    assert logs["req-1"]["captureSkipped"] == 1
    assert logs["req-1"]["status"] == 200
    assert "captureSkipped" not in logs["req-0"]
