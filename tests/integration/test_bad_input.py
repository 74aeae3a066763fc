"""Bad input over real sockets: a 4xx JSON that says what is wrong, never a 5xx, never a hang.

Three ways in: the cases that once answered 500 (deep nesting, numbers of thousands of
digits, counts past 64 bits), each on every route that reads a body; hypothesis building
admin API bodies of any shape; and schemathesis driving the prediction routes from the
gateway's own ``/_/openapi.json``, bounded to about a minute, failing on any 5xx, any
response slower than 10 s, or any status the document does not list.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from gateway_support import LAMBDASERVE, Served, ServerPool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gateway_surface import registered

DEEP = "[" * 10_000 + "]" * 10_000
HUGE = "9" * 4_300  # the most digits Python's int() reads by default
HUGE_ROW = f"[[{HUGE}, 1, 2, 3]]"
HUGER_ROW = f"[[{'9' * 5_000}, 1, 2, 3]]"  # past that limit: json.loads itself raises


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    topics_bundle: tuple[dict[str, Any], Path],
    iris_bundle: tuple[dict[str, Any], Path],
) -> Iterator[Served]:
    state = registered(tmp_path_factory.mktemp("bad-input") / "state", topics_bundle)
    registered(state, iris_bundle, "iris")
    pool = ServerPool()
    try:
        yield pool.start(state)
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def admin(served: Served) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {served.admin_token}"}
    with httpx.Client(base_url=served.base, headers=headers, timeout=30) as client:
        yield client


def message_of(answer: httpx.Response) -> str:
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body = answer.json()
    assert "Traceback" not in answer.text
    return str(body.get("error") or body.get("message"))


# -- the cases that once answered 500 --------------------------------------------------
@pytest.mark.parametrize(
    ("route", "body", "says"),
    [
        ("/test/topics/predict", DEEP, "nests arrays or objects too deeply"),
        ("/test/iris/predict", HUGE_ROW, "beyond what a 64-bit float holds"),
        ("/test/iris/predict", HUGER_ROW, "holds a number that cannot be read"),
        ("/test/iris/predict", "[[1e400, 1, 2, 3]]", "beyond what a 64-bit float holds"),
        ("/test/iris/predict", f"[[{'9' * 400}, 1, 2, 3]]", "beyond what a 64-bit float holds"),
        ("/test/iris/predict_proba", DEEP, "nests arrays or objects too deeply"),
    ],
    ids=[
        "deep-nesting",
        "4300-digit-integer",
        "5000-digit-integer",
        "1e400",
        "400-digit-integer",
        "deep-proba",
    ],
)
def test_prediction_routes_answer_400_that_says_what_is_wrong(
    served: Served, route: str, body: str, says: str
) -> None:
    answer = served.post(route, body)
    assert answer.status_code == 400
    assert says in message_of(answer)


@pytest.mark.parametrize("body", [DEEP, HUGER_ROW], ids=["deep-nesting", "5000-digit-integer"])
def test_the_invoke_api_answers_lambdas_400_in_json(served: Served, body: str) -> None:
    answer = httpx.post(f"{served.base}/2015-03-31/functions/iris/invocations", content=body, timeout=30)
    assert answer.status_code == 400
    assert answer.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "Could not parse request body into json" in message_of(answer)


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("POST", "/_/api/keys", DEEP, "nests too deeply"),
        ("POST", "/_/api/keys", '{"name": ' + HUGE + "}", "name must be a string"),
        ("POST", "/_/api/keys", '{"name": ' + "9" * 5_000 + "}", "not valid JSON"),
        ("POST", "/_/api/keys", '{"name": ["alice"]}', "name must be a string"),
        ("POST", "/_/api/keys", '{"plan": 7}', "plan must be a string"),
        (
            "POST",
            "/_/api/plans",
            '{"name": "big", "quota": "99999999999999999999999/DAY"}',
            "a quota counts from 1 to 2147483647",
        ),
        (
            "POST",
            "/_/api/plans",
            '{"name": "b", "rate": 5, "burst": 99999999999999999999999}',
            "burst must be a whole number from 1 to 2147483647",
        ),
        ("POST", "/_/api/plans", '{"name": "t", "rate": true, "burst": 1}', "rate must be a number"),
        ("POST", "/_/api/plans", '{"name": "n", "rate": 1e999, "burst": 1}', "rate must be a number"),
        (
            "PUT",
            "/_/api/models/topics/stages/prod",
            '{"version": 99999999999999999999999}',
            "version must be a whole number",
        ),
        ("PUT", "/_/api/models/topics/stages/prod", '{"version": true}', "version must be a whole number"),
        (
            "PUT",
            "/_/api/models/topics/stages/prod",
            '{"version": 1, "canary": {"version": 1e300}}',
            "version must be a whole number",
        ),
        (
            "PUT",
            "/_/api/models/topics/stages/prod",
            '{"version": 1, "canary": 5}',
            "canary must be an object",
        ),
        ("PUT", "/_/api/models/topics/stages/prod", "{}", "The body needs a version"),
        ("POST", "/_/api/models/topics/versions", DEEP, "nests too deeply"),
        ("GET", "/_/api/logs/topics?lines=" + HUGE, "", "lines must be a whole number"),
        ("GET", "/_/api/series?minutes=1e999", "", "minutes must be above 0"),
    ],
)
def test_the_admin_api_answers_400_that_names_the_field(
    admin: httpx.Client, method: str, path: str, body: str, says: str
) -> None:
    answer = admin.request(method, path, content=body)
    assert answer.status_code == 400, answer.text
    assert says in message_of(answer)


# -- any admin body -------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats()
    | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
FIELDS = ["name", "plan", "quota", "rate", "burst", "version", "canary", "weight", "upload", "stage", "key"]
objects = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
bodies = objects.map(json.dumps) | values.map(json.dumps) | st.binary(max_size=64)
routes = st.one_of(
    st.just(("POST", "/_/api/keys")),
    st.just(("POST", "/_/api/plans")),
    st.builds(
        lambda m, s: ("PUT", f"/_/api/models/{m}/stages/{s}"), st.sampled_from(["topics", "nope"]), names
    ),
    st.builds(lambda m: ("POST", f"/_/api/models/{m}/versions"), names),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=routes, body=bodies)
def test_any_admin_body_gets_a_json_answer_below_500(
    admin: httpx.Client, route: tuple[str, str], body: str | bytes
) -> None:
    method, path = route
    answer = admin.request(method, path, content=body)
    assert answer.status_code < 500, (method, path, body, answer.text)
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    answer.json()


# -- the OpenAPI document ----------------------------------------------------------------
SETOSA = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/test/iris/predict", "[]"),
        ("/test/iris/predict", "[[5.1, 3.5, 1.4, 0.2]]"),
        ("/test/iris/predict", "[5.1, 3.5, 1.4, 0.2]"),
        ("/test/iris/predict", "[[5.1, 3.5, 1.4]]"),
        ("/test/iris/predict", f"[{SETOSA}, [6.7, 3.0, 5.2, 2.3]]"),
        ("/test/iris/predict", SETOSA),
        ("/test/iris/predict", f"[{SETOSA}]"),
        ("/test/iris/predict", '[{"sepal_length": 5.1}]'),
        ("/test/iris/predict", SETOSA.replace("}", ', "colour": 1}')),
        ("/test/iris/predict", SETOSA.replace("5.1", '"big"')),
        ("/test/iris/predict", SETOSA.replace("5.1", "true")),
        ("/test/iris/predict", "[[true, false, 1, 2]]"),
        ("/test/iris/predict", "[true, false]"),
        ("/test/iris/predict", '["a flower"]'),
        ("/test/topics/predict", '"the rocket"'),
        ("/test/topics/predict", '["the rocket", "a prayer"]'),
        ("/test/topics/predict", "[]"),
        ("/test/topics/predict", "[1, 2]"),
        ("/test/topics/predict", "[[1, 2]]"),
    ],
)
def test_the_openapi_schema_and_the_gateway_agree_on_each_shape(
    served: Served, route: str, body: str
) -> None:
    # Shapes and types; values within a type are the model's to judge (a numeric string such
    # as "5.1" is read as a number by scikit-learn, and 1e308 overflows a scaler: 422).
    spec = httpx.get(f"{served.base}/_/openapi.json").json()
    schema = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
    valid = jsonschema.Draft4Validator(schema).is_valid(json.loads(body))
    answer = served.post(route, body)
    assert valid == (answer.status_code == 200), answer.text


# -- the OpenAPI document, fuzzed --------------------------------------------------------
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",  # every status is one the document lists
    "content_type_conformance",
    "negative_data_rejection",  # what the schema refuses, the gateway refuses too
]


def test_schemathesis_finds_no_5xx_no_slow_answer_and_no_undocumented_status(
    served: Served, tmp_path: Path
) -> None:
    schemathesis = LAMBDASERVE.parent / "schemathesis"
    report = tmp_path / "report.json"
    run = subprocess.run(
        [
            str(schemathesis), "run", f"{served.base}/_/openapi.json",
            "-H", f"x-api-key: {served.api_key}",
            "--checks", ",".join(CHECKS),
            "--max-response-time", "10",
            "--max-examples", "60",
            "--max-time", "60",
            "--seed", "20261203",
            "--workers", "2",
            "--phases", "examples,coverage,fuzzing",
            "--report", "json", "--report-json-path", str(report),
        ],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # its crash cache: each run starts from the fixed seed alone
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "operations" in run.stdout.lower() or "passed" in run.stdout.lower()
