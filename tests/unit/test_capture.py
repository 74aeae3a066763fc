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


class CountingModel(models.EstimatorModel):
    """Counts the model calls a message costs."""

    calls: list[str]

    def predict(self, x: Any) -> Any:
        self.calls.append("predict")
        return super().predict(x)

    def probability_rows(self, x: Any) -> Any:
        self.calls.append("predict_proba")
        return super().probability_rows(x)


def test_a_captured_prediction_costs_one_model_call_once_labels_from_probabilities_agree() -> None:
    estimator = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["low", "low", "high", "high"])
    model = CountingModel(estimator)
    model.calls = []
    service = PredictionService(model, "3")
    service.capture = CaptureSampler(rng=Draws(0.0))  # every request captured
    batch = [event([[0.2]], "1"), event([[2.9], [0.1]], "1")]
    batch[1]["requestContext"]["requestId"] = "api-gateway-id"  # what the caller got back, on AWS
    # WHEN the first captured message comes: one predict_proba answers, one predict checks it once
    first = records(service, batch)
    assert sorted(model.calls) == ["predict", "predict_proba"]
    # THEN the answers are predict's, and the records carry the same call's probabilities
    assert [r["predictions"] for r in first] == [["low"], ["high", "low"]]
    assert set(first[1]["probabilities"][0]) == {"high", "low"}
    assert (first[1]["apiRequestId"], first[1]["requestId"]) == ("api-gateway-id", "req-1")
    # AND later captured messages cost one predict_proba call, no second pass
    model.calls.clear()
    records(service, batch)
    assert model.calls == ["predict_proba"]


class Disagreeing(models.EstimatorModel):
    def predict(self, x: Any) -> Any:
        return ["always"] * len(x)


def test_where_the_argmax_is_not_what_predict_answers_capture_makes_its_own_call() -> None:
    estimator = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["low", "low", "high", "high"])
    service = PredictionService(Disagreeing(estimator), "3")
    service.capture = CaptureSampler(rng=Draws(0.0))
    [record] = records(service, [event([[0.2]], "1")])
    assert record["predictions"] == ["always"]  # predict's answer, never the argmax
    assert set(record["probabilities"][0]) == {"high", "low"}
    assert service._labels_from_proba is False
