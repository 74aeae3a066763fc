"""Model outputs become valid JSON: numpy and pandas values, NaN and infinities included."""

from __future__ import annotations

import datetime
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lambdaserve.runtime.responses import jsonable, proxy_response, to_json


def strict_loads(text: str) -> Any:
    """Parse as a strict JSON parser (JavaScript's, API clients') would: no NaN or Infinity."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(["setosa", 1, 2.5, True, None], '["setosa",1,2.5,true,null]', id="plain-values"),
        pytest.param(np.int64(3), "3", id="numpy-int"),
        pytest.param(np.float32(0.5), "0.5", id="numpy-float32"),
        pytest.param(np.float64(0.25), "0.25", id="numpy-float64"),
        pytest.param(np.bool_(True), "true", id="numpy-bool"),
        pytest.param(np.str_("virginica"), '"virginica"', id="numpy-str"),
        pytest.param(np.array(3.5), "3.5", id="numpy-0d-array"),
        pytest.param(np.array([[1, 2], [3, 4]]), "[[1,2],[3,4]]", id="numpy-2d-int-array"),
        pytest.param(np.array(["space", "religion"]), '["space","religion"]', id="numpy-label-array"),
        pytest.param(np.array([True, False]), "[true,false]", id="numpy-bool-array"),
        pytest.param((1, np.int8(2)), "[1,2]", id="tuple-with-numpy"),
        pytest.param(datetime.date(2024, 1, 2), '"2024-01-02"', id="other-objects-as-strings"),
    ],
)
def test_to_json_writes_numpy_values_as_plain_json(value: Any, expected: str) -> None:
    assert to_json(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(float("nan"), None, id="float-nan"),
        pytest.param([float("inf"), -float("inf"), 1.0], [None, None, 1.0], id="float-infinities-in-a-list"),
        pytest.param(np.float64("nan"), None, id="numpy-nan"),
        pytest.param(np.array([np.nan, np.inf, -np.inf, 1.0]), [None, None, None, 1.0], id="numpy-array"),
        pytest.param(np.array([[np.nan], [2.0]], dtype=np.float32), [[None], [2.0]], id="float32-matrix"),
        pytest.param({"a": {"b": [np.nan]}}, {"a": {"b": [None]}}, id="deep-in-a-dict"),
    ],
)
def test_nan_and_infinities_become_null(value: Any, expected: Any) -> None:
    text = to_json(value)
    assert strict_loads(text) == expected
    assert jsonable(value) == expected


def test_nested_dicts_with_numpy_keys_get_string_keys() -> None:
    value = {
        np.int64(1): {np.str_("setosa"): np.float64(0.75)},
        np.float64(0.5): [np.int32(7)],
        "plain": {np.int16(2): np.nan},
    }
    assert strict_loads(to_json(value)) == {"1": {"setosa": 0.75}, "0.5": [7], "plain": {"2": None}}


def test_a_list_of_probability_dicts_from_numpy_rows_is_valid_json() -> None:
    rows = np.array([[0.9, 0.1], [np.nan, 1.0]])
    value = [dict(zip(["religion", "space"], row, strict=True)) for row in rows]
    assert strict_loads(to_json(value)) == [{"religion": 0.9, "space": 0.1}, {"religion": None, "space": 1.0}]


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        pytest.param(pd.Series([1.0, np.nan, np.inf]), [1.0, None, None], id="float-with-nan"),
        pytest.param(pd.Series(["a", "b"], index=["x", "y"]), ["a", "b"], id="strings-index-dropped"),
        pytest.param(pd.Series([1, 2], dtype="int64"), [1, 2], id="ints"),
        pytest.param(
            pd.Series(pd.Categorical(["setosa", "virginica"])), ["setosa", "virginica"], id="category"
        ),
        pytest.param(
            pd.Series([1, None], dtype="Int64"),
            [1, None],
            id="nullable-int-with-missing",
        ),
    ],
)
def test_pandas_series_become_json_arrays(series: pd.Series, expected: list[Any]) -> None:
    assert strict_loads(to_json(series)) == expected


@pytest.mark.parametrize(
    ("plain", "with_numpy"),
    [
        pytest.param({True: 1}, {True: np.int64(1)}, id="bool-key"),
        pytest.param({None: 1.0}, {None: float("nan")}, id="none-key"),
    ],
)
def test_dict_keys_are_spelled_the_same_whatever_the_values(plain: Any, with_numpy: Any) -> None:
    assert list(json.loads(to_json(with_numpy))) == list(json.loads(to_json(plain)))


def test_to_json_is_compact_and_keeps_non_ascii_text_valid() -> None:
    text = to_json({"label": "café", "scores": [1, 2]})
    assert " " not in text
    assert json.loads(text) == {"label": "café", "scores": [1, 2]}


def test_proxy_response_is_what_api_gateway_expects() -> None:
    response = proxy_response(200, np.array(["setosa"]), {"x-lambdaserve-model-version": "abc123"})
    assert response == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "x-lambdaserve-model-version": "abc123"},
        "body": '["setosa"]',
        "isBase64Encoded": False,
    }


def test_proxy_response_without_extra_headers() -> None:
    assert proxy_response(413, {"message": "Request Too Long"}) == {
        "statusCode": 413,
        "headers": {"Content-Type": "application/json"},
        "body": '{"message":"Request Too Long"}',
        "isBase64Encoded": False,
    }
