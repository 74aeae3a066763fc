"""Property: whatever event arrives, the handler answers a 2xx or 4xx JSON, never a 500.

A 500 means "the model failed"; it must never be how the handler reports an event it could
not read. Hypothesis builds events from the recorded REST event with any body: any text,
any JSON (deep, wide, huge numbers, wrong types), base64 or not, and bodies that are not
strings at all; and events that are not the API Gateway shape. Each answer must be a proxy
response whose body is JSON and whose status the contract lists for bad input.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdaserve.runtime.handler import PredictionService
from lambdaserve.runtime.lambda_init import LocalContext
from lambdaserve.runtime.models import load_model

EVENTS = Path(__file__).resolve().parent.parent / "events"
REST = json.loads((EVENTS / "apigw-rest-post.json").read_text())
PROBA = json.loads((EVENTS / "apigw-rest-predict-proba.json").read_text())
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ANSWERS = {200, 400, 413, 422}  # what the contract allows for any input to a working model

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**320)  # past a 64-bit float
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
rows = st.lists(st.one_of(scalars, st.floats(-10, 10)), min_size=0, max_size=6)
records = st.fixed_dictionaries({}, optional=dict.fromkeys([*FEATURES, "colour"], scalars)) | st.dictionaries(
    st.sampled_from([*FEATURES, "x"]), json_values, max_size=5
)
batches = st.lists(rows | records | st.text(max_size=30), max_size=4)
bodies = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    batches.map(json.dumps),
    st.integers(1, 30_000).map(lambda depth: "[" * depth + "]" * depth),  # deep nesting
    st.integers(4_000, 6_000).map(lambda digits: f"[[{'9' * digits}, 1, 2, 3]]"),  # a huge integer
    st.sampled_from(["[1e400, 1, 2, 3]", "[[NaN, 1, 2, 3]]", "[[Infinity, -Infinity, 1, 2]]"]),
)


def encoded(body: str, as_base64: bool) -> dict[str, Any]:
    if as_base64:
        return {
            "body": base64.b64encode(body.encode("utf-8", "surrogatepass")).decode(),
            "isBase64Encoded": True,
        }
    return {"body": body, "isBase64Encoded": False}


events = st.one_of(
    st.builds(
        lambda body, b64, proba: {**(PROBA if proba else REST), **encoded(body, b64)},
        bodies,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(lambda body: {**REST, "body": body}, json_values),  # a body that is not a string
    st.builds(lambda b64: {**REST, "body": "[]", "isBase64Encoded": b64}, json_values),
    json_values,  # not an API Gateway event at all
)


@pytest.fixture(scope="module")
def services(iris_models: dict[str, Path], text_model: Path) -> dict[str, PredictionService]:
    return {
        "iris": PredictionService(load_model(iris_models["pickle"], "pickle"), "v1"),
        "iris-onnx": PredictionService(load_model(iris_models["onnx"], "onnx"), "v1"),
        "text": PredictionService(load_model(text_model, "pickle"), "v1"),
    }


@pytest.mark.parametrize("service", ["iris", "iris-onnx", "text"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evt=events)
def test_any_event_gets_a_json_answer_the_contract_lists_never_a_500(
    services: dict[str, PredictionService], capsys: pytest.CaptureFixture[str], service: str, evt: Any
) -> None:
    context = LocalContext("5d4c1f0e-8a7b-4c3d-9e2f-1a0b9c8d7e6f", int(time.time() * 1000) + 60_000)
    result = services[service].handle(evt, context)
    capsys.readouterr()
    assert result["statusCode"] in ANSWERS, result["body"]
    body = json.loads(result["body"])
    if result["statusCode"] == 200:
        assert isinstance(body, list)
    else:
        assert set(body) in ({"error"}, {"message"})
        assert "Traceback" not in result["body"]
