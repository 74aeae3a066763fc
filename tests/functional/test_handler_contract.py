"""The handler's side of the HTTP contract (DESIGN.md §4), driven by the real events in tests/events/.

Each case takes one of those events, varies its body, hands it to ``PredictionService.handle``
and compares the whole proxy response: status, headers, base64 flag and the parsed body.
Error messages are matched on what they must tell the caller (``Mentions``), not word for word.
Every invocation must also print exactly one JSON log line.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from lambdaserve.runtime.handler import PredictionService
from lambdaserve.runtime.lambda_init import LocalContext
from lambdaserve.runtime.models import EstimatorModel, load_model

EVENTS = Path(__file__).resolve().parent.parent / "events"
POST = "apigw-rest-post.json"
BASE64 = "apigw-rest-post-base64.json"
PROBA = "apigw-rest-predict-proba.json"
DIRECT = "lambda-direct-invoke.json"

VERSION = "3f9a1c2b7d4e"
REQUEST_ID = "5d4c1f0e-8a7b-4c3d-9e2f-1a0b9c8d7e6f"
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes, Lambda's synchronous invocation limit
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
FEATURE_ORDER = ", ".join(FEATURES)
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
FAQ = json.loads(json.loads((EVENTS / POST).read_text())["body"])[0]
FAILED = f"The model failed to predict. Look up request {REQUEST_ID} in the logs."


class ExplodingModel:
    """A model with a bug: its predict raises what nobody anticipated."""

    def predict(self, x: Any) -> Any:
        raise RuntimeError("connection to feature store at 10.0.3.7 refused")


class NaNRegressor:
    """A regressor whose outputs include NaN and infinity, as real ones sometimes do."""

    def predict(self, x: Any) -> Any:
        return np.array([np.nan, np.inf, 1.5])[: len(x)]


class Mentions:
    """Equal to any string containing every fragment: an error must say these things."""

    def __init__(self, *fragments: str) -> None:
        self.fragments = fragments

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and all(f in other for f in self.fragments)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Mentions{self.fragments!r}"


def event(name: str, **changes: Any) -> dict[str, Any]:
    """A real event from tests/events/ with some fields replaced."""
    return {**json.loads((EVENTS / name).read_text()), **changes}


def without_body(name: str) -> dict[str, Any]:
    loaded = event(name)
    del loaded["body"]
    return loaded


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def response(status: int, body: Any) -> dict[str, Any]:
    """The proxy response the handler must return, with its body already parsed."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "x-lambdaserve-model-version": VERSION},
        "body": body,
        "isBase64Encoded": False,
    }


def invoke(
    service: PredictionService, evt: Any, capsys: pytest.CaptureFixture[str], context: Any = "default"
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Handle one event; return the response with its body parsed, the raw body, and the log line."""
    if context == "default":
        context = LocalContext(REQUEST_ID, int(time.time() * 1000) + 60_000)
    capsys.readouterr()
    result = service.handle(evt, context)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, f"expected one log line per invocation, got {lines}"
    assert isinstance(result["body"], str)
    return {**result, "body": json.loads(result["body"])}, result["body"], json.loads(lines[0])


@pytest.fixture(scope="module")
def services(iris_models: dict[str, Path], text_model: Path) -> dict[str, PredictionService]:
    iris = load_iris()
    arrays_model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    models = {
        "iris": load_model(iris_models["pickle"], "pickle"),
        "iris-onnx": load_model(iris_models["onnx"], "onnx"),
        "text": load_model(text_model, "pickle"),
        "arrays": EstimatorModel(arrays_model),
        "exploding": EstimatorModel(ExplodingModel()),
        "unfitted": EstimatorModel(LogisticRegression()),
        "nan": EstimatorModel(NaNRegressor()),
    }
    return {name: PredictionService(model, VERSION) for name, model in models.items()}


def case(service: str, evt: Any, status: int, body: Any, batch: int | None, id: str) -> Any:
    return pytest.param(service, evt, status, body, batch, id=id)


# fmt: off
CASES = [
    # 200: a batch in, one prediction per instance out, in order
    case("iris", event(POST, body=json.dumps([SETOSA, VIRGINICA])), 200, ["setosa", "virginica"], 2,
         id="json-array-of-records-is-a-batch"),
    case("iris", event(POST, body="[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]"), 200,
         ["setosa", "virginica"], 2, id="json-array-of-rows-is-a-batch"),
    case("iris", event(POST, body=json.dumps(SETOSA)), 200, ["setosa"], 1, id="one-object-is-a-batch-of-one"),
    case("text", event(POST, body='"the rocket reached orbit"'), 200, ["space"], 1,
         id="one-string-is-a-batch-of-one"),
    case("text", event(POST), 200, ["religion"], 1, id="recorded-rest-event"),
    case("text", event(BASE64), 200, ["religion"], 1, id="recorded-base64-event"),
    case("text", event(BASE64, body=b64('["the rocket reached orbit", "a prayer in church"]')), 200,
         ["space", "religion"], 2, id="base64-body-is-decoded"),
    case("text", event(DIRECT), 200, ["religion"], 1, id="recorded-direct-invocation"),
    case("text", event(DIRECT, body=["the rocket reached orbit"]), 200, ["space"], 1,
         id="direct-invocation-with-a-parsed-list"),
    case("iris", event(DIRECT, body=SETOSA), 200, ["setosa"], 1, id="direct-invocation-with-one-object"),
    case("nan", event(POST, body="[[1], [2], [3]]"), 200, [None, None, 1.5], 3,
         id="nan-and-infinity-in-predictions-are-null"),
    # 400: not JSON, or not a shape any model takes; the message says what to send
    case("text", without_body(POST), 400, {"error": Mentions("no body", "Send a JSON array")}, None,
         id="missing-body"),
    case("text", event(POST, body=""), 400, {"error": Mentions("no body", "Send a JSON array")}, None,
         id="empty-string-body"),
    case("text", event(DIRECT, body=None), 400, {"error": Mentions("no body", "Send a JSON array")}, None,
         id="direct-invocation-with-null-body"),
    case("text", event(POST, body="null"), 400, {"error": Mentions("null", "Send a JSON array")}, None,
         id="json-null-body"),
    case("text", event(POST, body="the rocket reached orbit"), 400,
         {"error": Mentions("not valid JSON", 'quote it as a JSON string: "some text"')}, None,
         id="unquoted-text-is-invalid-json-with-a-quoting-hint"),
    case("iris", event(POST, body='[{"sepal_length": 5.1,'), 400,
         {"error": Mentions("not valid JSON", "line 1", "Send a JSON array")}, None, id="truncated-json"),
    case("text", event(BASE64, body="%%% not base64 %%%"), 400, {"error": Mentions("not valid base64")},
         None, id="invalid-base64"),
    case("text", event(BASE64, body=b64(b"\xff\xfe[]")), 400, {"error": Mentions("not UTF-8")}, None,
         id="base64-of-non-utf8-bytes"),
    case("iris", event(POST, body="[]"), 400, {"error": Mentions("empty", "at least one instance")}, 0,
         id="empty-array"),
    case("iris", event(POST, body="[5.1, 3.5, 1.4, 0.2]"), 400,
         {"error": Mentions("bare number", "wrap it in another array", "[[5.1, 3.5, 1.4, 0.2]]")}, 4,
         id="bare-numbers-need-wrapping"),
    case("iris", event(POST, body="[[[5.1, 3.5, 1.4, 0.2]]]"), 400,
         {"error": Mentions("Instance 0 is a nested array", "flat row")}, 1, id="nested-arrays"),
    case("iris", event(POST, body=json.dumps([SETOSA, [6.7, 3.0, 5.2, 2.3]])), 400,
         {"error": Mentions("same kind", "array and record")}, 2, id="mixed-kinds"),
    case("iris", event(POST, body=json.dumps([{**SETOSA, "petal_width": [0.2]}])), 400,
         {"error": Mentions("'petal_width'", "is a array", "single string, number")}, 1,
         id="array-as-a-feature-value"),
    case("iris", event(POST, body="[true, false]"), 400, {"error": Mentions("Instance 0 is a boolean")}, 2,
         id="booleans-as-instances"),
    case("arrays", event(POST, body=json.dumps([SETOSA])), 400,
         {"error": Mentions("not fitted on named features", "Send rows of 4 numbers")}, 1,
         id="objects-for-a-model-without-feature-names"),
    case("nan", event(PROBA, body="[[1]]"), 400,
         {"error": "This model has no predict_proba. Use /predict instead."}, 1,
         id="predict-proba-on-a-model-without-it"),
    case("text", ["the rocket reached orbit"], 400, {"error": Mentions('{"body": ["some text"]}')}, None,
         id="event-is-a-list"),
    case("text", "the rocket reached orbit", 400, {"error": Mentions("must be an object")}, None,
         id="event-is-a-string"),
    case("text", None, 400, {"error": Mentions("must be an object")}, None, id="event-is-null"),
    # 413: Lambda's own body, for payloads over 6 MB (counted in bytes, not characters)
    case("text", event(POST, body=json.dumps(["a" * LAMBDA_PAYLOAD_LIMIT])), 413,
         {"message": "Request Too Long"}, None, id="body-over-6-mb"),
    case("text", event(POST, body=json.dumps(["é" * (LAMBDA_PAYLOAD_LIMIT // 2)], ensure_ascii=False)), 413,
         {"message": "Request Too Long"}, None, id="body-over-6-mb-in-utf8-bytes"),
    # 422: the model cannot use this input; the message names what it takes
    case("iris", event(POST, body="[[5.1, 3.5, 1.4]]"), 422,
         {"error": Mentions("Instance 0 has 3 values", "takes 4 in this order: " + FEATURE_ORDER)}, 1,
         id="wrong-row-width"),
    case("iris", event(POST, body="[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3, 9.9]]"), 422,
         {"error": Mentions("Instance 1 has 5 values", "takes 4")}, 2, id="wrong-width-in-a-later-row"),
    case("iris", event(POST, body=json.dumps([{"sepal_length": 5.1, "sepal_width": 3.5}])), 422,
         {"error": Mentions("missing 'petal_length', 'petal_width'", FEATURE_ORDER)}, 1,
         id="missing-columns"),
    case("iris", event(POST, body=json.dumps([{**SETOSA, "colour": "blue"}])), 422,
         {"error": Mentions("unknown 'colour'", FEATURE_ORDER)}, 1, id="unknown-columns"),
    case("iris", event(POST, body=json.dumps([{**SETOSA, "sepal_length": "big"}])), 422,
         {"error": Mentions("rejected the input", "'big'")}, 1, id="string-value-in-a-numeric-model"),
    # 500: the model itself failed; the caller gets a request id, the log gets the rest
    case("exploding", event(POST, body="[[1, 2]]"), 500, {"error": FAILED}, 1, id="model-raises"),
    case("unfitted", event(POST, body="[[1, 2]]"), 500, {"error": FAILED}, 1, id="model-not-fitted"),
]
# fmt: on


@pytest.mark.parametrize(("service", "evt", "status", "body", "batch"), CASES)
def test_handler_answers_each_case_of_the_contract(
    services: dict[str, PredictionService],
    capsys: pytest.CaptureFixture[str],
    service: str,
    evt: Any,
    status: int,
    body: Any,
    batch: int | None,
) -> None:
    # GIVEN a loaded model and a real event carrying the body under test
    # WHEN the handler is invoked
    result, raw_body, log = invoke(services[service], evt, capsys)
    # THEN the whole proxy response is as the contract says
    assert result == response(status, body)
    assert "Traceback" not in raw_body
    assert 'File "' not in raw_body
    # AND one log line tells who asked, how it ended and how many instances came in
    assert {key: log.get(key) for key in ("requestId", "status", "batchSize", "level")} == {
        "requestId": REQUEST_ID,
        "status": status,
        "batchSize": batch,
        "level": "ERROR" if status >= 500 else "INFO",
    }


def test_an_unexpected_model_failure_hides_its_internals_from_the_caller(
    services: dict[str, PredictionService], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a model that raises RuntimeError with a message about its own internals
    # WHEN it is asked to predict
    result, raw_body, log = invoke(services["exploding"], event(POST, body="[[1, 2]]"), capsys)
    # THEN the caller gets a 500 with only the request id to quote
    assert result == response(500, {"error": FAILED})
    for internal in ("RuntimeError", "10.0.3.7", "feature store", "Traceback"):
        assert internal not in raw_body
    # AND the log line has what an operator needs to find the cause
    assert log["errorType"] == "RuntimeError"
    assert "10.0.3.7" in log["errorMessage"]
    assert any("RuntimeError" in line for line in log["stackTrace"])


def test_a_request_without_a_context_still_gets_a_request_id_to_quote(
    services: dict[str, PredictionService], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an invocation without a Lambda context (as a plain function call)
    # WHEN the model fails
    result, _, log = invoke(services["exploding"], event(POST, body="[[1, 2]]"), capsys, context=None)
    # THEN the id in the answer is the one in the log line
    assert log["requestId"]
    assert result["body"] == {
        "error": f"The model failed to predict. Look up request {log['requestId']} in the logs."
    }


def test_a_model_that_is_not_fitted_is_logged_as_such(
    services: dict[str, PredictionService], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an estimator saved before it was fitted
    # WHEN it is asked to predict
    result, _, log = invoke(services["unfitted"], event(POST, body="[[1, 2]]"), capsys)
    # THEN it is a 500 (a broken model, not bad input), and the log says why
    assert result["statusCode"] == 500
    assert log["errorType"] == "NotFittedError"
    assert "not fitted" in log["errorMessage"]


@pytest.mark.parametrize(
    ("service", "body", "instances"),
    [
        pytest.param("iris", json.dumps([SETOSA, VIRGINICA]), [SETOSA, VIRGINICA], id="iris-records"),
        pytest.param("text", None, [FAQ], id="recorded-text-event"),
    ],
)
def test_predict_proba_route_answers_one_class_distribution_per_instance(
    services: dict[str, PredictionService],
    capsys: pytest.CaptureFixture[str],
    service: str,
    body: str | None,
    instances: list[Any],
) -> None:
    # GIVEN the recorded /predict_proba event, its body replaced when given
    evt = event(PROBA) if body is None else event(PROBA, body=body)
    estimator = services[service].model.estimator  # type: ignore[union-attr]
    x = pd.DataFrame(instances)[FEATURES] if isinstance(instances[0], dict) else instances
    classes = [str(c) for c in estimator.classes_]
    # WHEN the handler is invoked on that route
    result, _, log = invoke(services[service], evt, capsys)
    # THEN each instance gets {class: probability}, exactly the estimator's own
    expected = [dict(zip(classes, row.tolist(), strict=True)) for row in estimator.predict_proba(x)]
    assert result == response(200, expected)
    assert all(sum(row.values()) == pytest.approx(1.0) for row in result["body"])
    assert log["route"] == "predict_proba"


@pytest.mark.parametrize(
    "service",
    [
        pytest.param("iris-onnx", id="onnx"),
        pytest.param("iris", id="pickle"),
    ],
)
def test_text_for_a_tabular_model_is_a_bad_request(
    services: dict[str, PredictionService], capsys: pytest.CaptureFixture[str], service: str
) -> None:
    # GIVEN a model fitted on named numeric features
    # WHEN it is sent a batch of texts
    result, raw_body, _ = invoke(services[service], event(POST, body='["a pretty flower"]'), capsys)
    # THEN it is a 400 that says to send objects with its features, in its own words
    assert result["statusCode"] == 400
    assert "2D array" not in raw_body
    assert Mentions("objects", "feature") == result["body"]["error"]


def test_rows_of_numbers_for_a_text_model_are_the_callers_error(
    services: dict[str, PredictionService], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a text classifier
    # WHEN it is sent a row of numbers
    result, _, log = invoke(services["text"], event(POST, body="[[5.1, 3.5, 1.4, 0.2]]"), capsys)
    # THEN the caller is told to fix the input, and nobody is paged
    assert result["statusCode"] in (400, 422)
    assert log["level"] == "INFO"


def test_the_keep_warm_schedule_is_answered_without_a_prediction(
    monkeypatch: pytest.MonkeyPatch, iris_models: dict[str, Path]
) -> None:
    # GIVEN the handler module with a model loaded (as after INIT)
    from lambdaserve.runtime import handler as module

    monkeypatch.setenv("LAMBDASERVE_MODEL", str(iris_models["pickle"]))
    monkeypatch.setattr(module, "_service", None)  # a fresh INIT
    # WHEN deploy --keep-warm's EventBridge rule invokes it
    answer = module.handler({"lambdaserve": "warm"}, None)
    # THEN it answers at once, naming the version that is warm
    assert answer["warm"] is True
