"""The HTTP contract of DESIGN.md §4, over real sockets, against one ``lambdaserve serve``.

The server serves a text model (``topics``), the iris pipeline (``iris``), a regressor without
``predict_proba`` (``sizes``), all registered in its state directory beforehand, and a plain
user handler (``tools``, from ``--handler``) that can crash on demand. Two extra keys have
tight usage plans: one throttled to 1 request/s with a bucket of 1, one with a quota of 3/DAY.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from gateway_support import Served, ServerPool, body_of, predict, run_gateway
from prometheus_client.parser import text_string_to_metric_families

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.functions.service import HandlerSpec
from lambdaserve.store import Store

MISSING_TOKEN = {"message": "Missing Authentication Token"}
ORBIT = '["the rocket reached orbit"]'
FLOWER = "[[5.1, 3.5, 1.4, 0.2]]"


@dataclass
class Contract:
    served: Served
    tight_key: str  # 1 request/s, bucket of 1
    quota_key: str  # 3 requests a day


@pytest.fixture(scope="module")
def contract(
    tmp_path_factory: pytest.TempPathFactory,
    topics_bundle: tuple[dict[str, Any], Path],
    iris_bundle: tuple[dict[str, Any], Path],
    sizes_bundle: tuple[dict[str, Any], Path],
    tools_dir: Path,
) -> Iterator[Contract]:
    state = tmp_path_factory.mktemp("contract") / "state"
    store = Store(state)
    for name, (manifest, model_file) in {
        "topics": topics_bundle,
        "iris": iris_bundle,
        "sizes": sizes_bundle,
    }.items():
        store.add_version(name, manifest, model_file)
        store.set_alias(name, "test", 1)
    store.create_plan("tight", rate=1, burst=1)
    store.create_plan("daily3", quota_limit=3, quota_period="DAY")
    _, tight_key = store.create_key("tight-caller", "tight")
    _, quota_key = store.create_key("quota-caller", "daily3")
    store.close()
    pool = ServerPool()
    try:
        served = pool.start(state, "--handler", "tools.handler", "--name", "tools", cwd=tools_dir)
        yield Contract(served, tight_key, quota_key)
    finally:
        pool.stop_all()


def lambda_client(base: str) -> Any:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    return session.client("lambda", endpoint_url=base)


def assert_request_id(response: httpx.Response) -> None:
    assert uuid.UUID(response.headers["x-amzn-RequestId"])


# -- predictions ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "answer"),
    [
        ("/test/topics/predict", ORBIT, ["space"]),
        ("/test/topics/predict", '"a prayer in church"', ["religion"]),
        ("/test/iris/predict", FLOWER, ["setosa"]),
    ],
)
def test_a_prediction_answers_200_with_request_id_and_model_version(
    contract: Contract, path: str, body: str, answer: list[str]
) -> None:
    # WHEN a caller with the server's key posts instances
    response = contract.served.post(path, body)
    # THEN one prediction per instance comes back, with the request id and the version
    assert (response.status_code, response.json()) == (200, answer)
    assert_request_id(response)
    assert response.headers["x-lambdaserve-model-version"] == "1"


def test_predict_proba_answers_one_probability_object_per_instance(contract: Contract) -> None:
    response = contract.served.post("/test/iris/predict_proba", FLOWER)
    assert response.status_code == 200
    [probabilities] = response.json()
    assert set(probabilities) == {"setosa", "versicolor", "virginica"}
    assert max(probabilities, key=probabilities.get) == "setosa"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/test/topics/predict", "this is not json", 400),
        ("/test/topics/predict", "null", 400),
        ("/test/iris/predict", "[[1.0, 2.0]]", 422),
    ],
)
def test_the_handlers_client_errors_pass_through(
    contract: Contract, path: str, body: str, status: int
) -> None:
    # WHEN the body is not JSON, or not a shape the model takes
    response = contract.served.post(path, body)
    # THEN the handler's own status and {"error": ...} reach the caller unchanged
    assert response.status_code == status
    assert list(response.json()) == ["error"]
    assert "Traceback" not in response.text
    assert_request_id(response)
    assert response.headers["x-lambdaserve-model-version"] == "1"


# -- API Gateway's own errors ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/test/nothing/predict"),  # unknown model
        ("POST", "/prod/topics/predict"),  # unknown stage
        ("GET", "/test/topics/predict"),  # wrong method
        ("POST", "/test/topics/describe"),  # unknown route
        ("POST", "/test/topics"),
        ("POST", "/anything"),
        ("POST", "/test/sizes/predict_proba"),  # a model without predict_proba
    ],
)
def test_an_unknown_route_is_missing_authentication_token(contract: Contract, method: str, path: str) -> None:
    response = httpx.request(
        method, contract.served.base + path, content=ORBIT, headers={"x-api-key": contract.served.api_key}
    )
    assert (response.status_code, response.json()) == (403, MISSING_TOKEN)
    assert_request_id(response)


def test_predict_proba_on_a_model_without_it_is_unknown_even_without_a_key(contract: Contract) -> None:
    # GIVEN a route that does not exist: sizes has no predict_proba
    # WHEN it is called without a key
    response = contract.served.post("/test/sizes/predict_proba", "[[1.0, 1.0]]", key="")
    # THEN API Gateway finds no route before it looks at the key
    assert (response.status_code, response.json()) == (403, MISSING_TOKEN)


@pytest.mark.parametrize("key", ["", "not-a-key", "x" * 40])
def test_a_missing_or_invalid_key_is_forbidden(contract: Contract, key: str) -> None:
    response = contract.served.post("/test/topics/predict", ORBIT, key=key)
    assert (response.status_code, response.json()) == (403, {"message": "Forbidden"})
    assert_request_id(response)


@pytest.mark.parametrize("megabytes", [11, 7])
def test_a_body_over_api_gateways_or_lambdas_limit_is_request_too_long(
    contract: Contract, megabytes: int
) -> None:
    # GIVEN a body over API Gateway's 10 MB, or one whose event exceeds Lambda's 6 MB
    body = json.dumps(["w" * 1024] * (megabytes * 1024))
    assert len(body) > megabytes * 1024 * 1024
    # WHEN it is posted
    response = contract.served.post("/test/topics/predict", body, timeout=60)
    # THEN it is refused with API Gateway's body
    assert (response.status_code, response.json()) == (413, {"message": "Request Too Long"})
    assert_request_id(response)


def test_the_fourth_call_of_a_3_per_day_quota_is_limit_exceeded(contract: Contract) -> None:
    statuses = [contract.served.post("/test/topics/predict", ORBIT, key=contract.quota_key) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[3].json() == {"message": "Limit Exceeded"}
    assert_request_id(statuses[3])


def test_a_second_immediate_call_at_1_per_second_is_too_many_requests(contract: Contract) -> None:
    # WHEN three calls with a key throttled to 1/s (bucket 1) arrive at once
    with ThreadPoolExecutor(3) as pool:
        responses = list(
            pool.map(lambda _: contract.served.post("/test/tools", '"hi"', key=contract.tight_key), range(3))
        )
    # THEN one passes and the others are throttled
    assert sorted(r.status_code for r in responses) == [200, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json() == {"message": "Too Many Requests"}


@pytest.mark.parametrize("body", ['"crash"', '"malformed"'])
def test_a_crashing_or_malformed_handler_fails_only_its_own_request(contract: Contract, body: str) -> None:
    # WHEN the handler's process exits (or it answers something that is no proxy response)
    failed = contract.served.post("/test/tools", body)
    # THEN that request gets 502, and the next one is served
    assert (failed.status_code, failed.json()) == (502, {"message": "Internal server error"})
    assert_request_id(failed)
    after = contract.served.post("/test/tools", '"after"')
    assert (after.status_code, after.json()["body"]) == (200, "after")


def test_an_integration_slower_than_its_timeout_is_endpoint_request_timed_out(
    tmp_path: Path, tools_dir: Path
) -> None:
    # GIVEN an in-process gateway whose integration timeout (29 s by default, not a serve flag)
    # is half a second, serving a handler that takes 3 s
    settings = GatewaySettings(
        api_key_required=False,
        integration_timeout_s=0.5,
        handlers=[HandlerSpec("tools", "tools.handler", str(tools_dir))],
    )

    async def scenario(gateway: Gateway) -> tuple[Any, ...]:
        slow = await gateway.handle(predict("/test/tools", '{"sleep": 3}'))
        quick = await gateway.handle(predict("/test/tools", '"quick"'))
        return slow.status, body_of(slow), "x-amzn-RequestId" in slow.headers, quick.status

    # WHEN the slow request is made, THEN API Gateway gives up with 504; the next one is served
    assert run_gateway(tmp_path / "state", settings, scenario) == (
        504,
        {"message": "Endpoint request timed out"},
        True,
        200,
    )


# -- reserved paths -------------------------------------------------------------------------
def test_the_root_redirects_to_the_console(contract: Contract) -> None:
    response = httpx.get(contract.served.base + "/")
    assert response.status_code in (301, 302, 307, 308)
    assert response.headers["location"].endswith("/_/")
    assert httpx.get(contract.served.base + "/_/").status_code == 200


def test_health_says_ok(contract: Contract) -> None:
    response = httpx.get(contract.served.base + "/_/health")
    assert (response.status_code, response.json()["status"]) == (200, "ok")


def test_each_answer_carries_the_apigw_id_the_event_had_and_one_content_type(contract: Contract) -> None:
    # GIVEN a handler that answers with a lower-case content-type, and a header given twice
    asked = {
        "answer_headers": {"content-type": "text/plain", "X-Colour": "red"},
        "answer_multi_headers": {"x-colour": ["blue", "green"]},
    }
    # WHEN it is called
    response = contract.served.post("/test/tools", json.dumps(asked))
    # THEN one Content-Type, the handler's; multiValueHeaders win for a name given twice
    assert response.headers.get_list("content-type") == ["text/plain"]
    assert response.headers.get_list("x-colour") == ["blue, green"]
    # AND x-amz-apigw-id, 16 characters of base64, is the event's extendedRequestId
    apigw_id = response.headers["x-amz-apigw-id"]
    assert len(apigw_id) == 16
    assert base64.b64decode(apigw_id)
    assert response.json()["extendedRequestId"] == apigw_id
    # AND API Gateway's own answers carry one too, in compact JSON as AWS writes them
    refused = contract.served.post("/test/topics/predict", ORBIT, key="not-a-key")
    assert (refused.status_code, refused.content) == (403, b'{"message":"Forbidden"}')
    assert len(refused.headers["x-amz-apigw-id"]) == 16
    missing = httpx.post(contract.served.base + "/test/nothing/predict", content=ORBIT)
    assert missing.content == b'{"message":"Missing Authentication Token"}'


@pytest.mark.parametrize("path", ["/", "/_/health", "/_/metrics", "/_/openapi.json"])
def test_lambdaserves_own_paths_carry_a_request_id_too(contract: Contract, path: str) -> None:
    assert_request_id(httpx.get(contract.served.base + path))


def test_metrics_need_the_admin_token_and_count_requests_throttles_and_cold_starts(
    contract: Contract,
) -> None:
    # GIVEN some traffic, some of it throttled
    assert contract.served.post("/test/topics/predict", ORBIT).status_code == 200
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: contract.served.post("/test/tools", "1", key=contract.tight_key), range(2)))
    url = contract.served.base + "/_/metrics"
    # THEN metrics are refused without the admin token, or with a wrong one
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # AND with it they count requests, refusals and cold starts by model, stage and version
    response = httpx.get(url, headers={"Authorization": f"Bearer {contract.served.admin_token}"})
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))

    def value(name: str, **labels: str) -> float:
        return next(s.value for f in families for s in f.samples if s.name == name and s.labels == labels)

    assert value("lambdaserve_requests_total", model="topics", stage="test", version="1", status="200") >= 1
    assert value("lambdaserve_throttled_requests_total", model="tools", stage="test", reason="throttle") >= 1
    assert value("lambdaserve_cold_starts_total", model="topics", version="1", kind="init") == 1
    assert value("lambdaserve_environments", model="topics", version="1", state="total") >= 1


def test_openapi_lists_every_served_prediction_route(contract: Contract) -> None:
    spec = httpx.get(contract.served.base + "/_/openapi.json").json()
    assert set(spec["paths"]) == {
        "/test/topics/predict",
        "/test/topics/predict_proba",
        "/test/iris/predict",
        "/test/iris/predict_proba",
        "/test/sizes/predict",
        *(f"/test/{model}/explain" for model in ("topics", "iris", "sizes")),
    }
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"


# -- the Lambda Invoke API ------------------------------------------------------------------
def test_boto3_invokes_a_model_and_gets_its_proxy_response_and_logs(contract: Contract) -> None:
    # WHEN the post's own client code calls the function through the local endpoint
    result = lambda_client(contract.served.base).invoke(
        FunctionName="topics",
        Qualifier="test",
        Payload=json.dumps({"body": ["the rocket reached orbit"]}),
        LogType="Tail",
    )
    # THEN it gets the handler's proxy response and the invocation's Lambda log lines
    assert result["StatusCode"] == 200
    assert "FunctionError" not in result
    assert result["ExecutedVersion"] == "1"
    assert json.loads(result["Payload"].read()) == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "x-lambdaserve-model-version": "1"},
        "body": '["space"]',
        "isBase64Encoded": False,
    }
    logs = base64.b64decode(result["LogResult"]).decode()
    request_id = result["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {request_id} Version: 1" in logs
    assert f"END RequestId: {request_id}" in logs
    assert f"REPORT RequestId: {request_id}\tDuration: " in logs


def test_boto3_sees_a_crash_as_an_unhandled_function_error(contract: Contract) -> None:
    result = lambda_client(contract.served.base).invoke(
        FunctionName="tools", Payload=json.dumps({"body": '"crash"'})
    )
    assert (result["StatusCode"], result["FunctionError"]) == (200, "Unhandled")
    assert json.loads(result["Payload"].read())["errorType"] == "Runtime.ExitError"


def test_boto3_invoking_with_a_payload_over_6_mb_gets_request_entity_too_large(contract: Contract) -> None:
    # Lambda answers 413 RequestEntityTooLargeException, a code botocore's model does not name
    with pytest.raises(ClientError) as raised:
        lambda_client(contract.served.base).invoke(
            FunctionName="topics", Payload=json.dumps({"body": ["w" * 1024] * 7 * 1024})
        )
    error = raised.value.response
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413


@pytest.mark.parametrize(("name", "qualifier"), [("nothing", "test"), ("topics", "prod"), ("topics", "9")])
def test_boto3_invoking_an_unknown_function_gets_resource_not_found(
    contract: Contract, name: str, qualifier: str
) -> None:
    client = lambda_client(contract.served.base)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}")
