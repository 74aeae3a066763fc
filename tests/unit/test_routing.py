"""The front's routing alone, without processes: which requests reach which version.

A stand-in for the local Lambda service answers every invocation with the version it was
asked for, so the routing (stages, routes, keys on their plan's stages, the canary's
weight on an injected random number) is tested exactly and fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.apigateway.http import Request, Response
from lambdaserve.functions.function import Outcome
from lambdaserve.store import Store


class EchoFunction:
    """Answers each event with the version it runs, as a 200 proxy response."""

    def __init__(self, version: str) -> None:
        self.version = version

    def submit(self, event: Any, request_id: str) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        body = json.dumps({"version": self.version})
        future.set_result(Outcome(payload={"statusCode": 200, "body": body}))
        return future


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """iris v1 (no predict_proba) and v2 (with it); prod serves 1 with 2 as a 25% canary."""
    store = Store(tmp_path / "state")
    for number, has_proba in ((1, False), (2, True)):
        model = tmp_path / f"iris{number}.pickle"
        model.write_bytes(b"model %d" % number)
        manifest = {"sha256": f"{number:064x}", "format": "pickle", "has_proba": has_proba}
        store.add_version("iris", manifest, model)
    store.set_alias("iris", "prod", 1, canary_version=2, canary_weight=25.0)
    yield store
    store.close()


def gateway_on(store: Store, rng: float, *, keys: bool = False) -> Gateway:
    gateway = Gateway(store, GatewaySettings(api_key_required=keys), rng=lambda: rng)

    async def function(name: str, version: str) -> EchoFunction:
        return EchoFunction(version)

    gateway.lambdas.function = function  # type: ignore[method-assign,assignment]
    return gateway


def ask(gateway: Gateway, *requests: tuple[str, str, str | None]) -> list[Response]:
    """(method, path, key) each in turn; then the gateway closes."""

    async def asking() -> list[Response]:
        try:
            return [
                await gateway.handle(Request(method, path, {"x-api-key": key} if key else {}, b"[[1, 2]]"))
                for method, path, key in requests
            ]
        finally:
            await gateway.close()

    return asyncio.run(asking())


@pytest.mark.parametrize(("rng", "version"), [(0.0, "2"), (0.2499, "2"), (0.25, "1"), (0.99, "1")])
def test_the_canary_takes_its_weight_of_requests(store: Store, rng: float, version: str) -> None:
    [answer] = ask(gateway_on(store, rng), ("POST", "/prod/iris/predict", None))
    assert (answer.status, json.loads(answer.body)) == (200, {"version": version})


IRIS_ROUTES = "POST /prod/iris/predict, POST /prod/iris/explain"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/test/iris/predict"),  # a stage that does not serve iris
        ("POST", "/prod/other/predict"),  # a model not on the stage
        ("POST", "/prod/iris/describe"),  # a route that does not exist
        ("GET", "/prod/iris/predict"),  # a method that does not exist
        ("POST", "/prod/iris/predict_proba"),  # version 1 has no predict_proba
        ("POST", "/prod/iris"),
        ("POST", "/prod/iris/predict/more"),
    ],
)
def test_what_is_not_deployed_is_missing_authentication_token(store: Store, method: str, path: str) -> None:
    [answer] = ask(gateway_on(store, 0.99), (method, path, None))
    assert (answer.status, json.loads(answer.body)) == (403, {"message": "Missing Authentication Token"})
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_a_key_is_accepted_only_on_the_stages_of_its_plan(store: Store) -> None:
    store.set_alias("iris", "test", 2)
    plan = store.create_plan("prod-only", stages=["prod"])
    _, value = store.create_key("partner", plan.id)
    gateway = gateway_on(store, 0.99, keys=True)
    answers = ask(
        gateway,
        ("POST", "/prod/iris/predict", value),
        ("POST", "/test/iris/predict", value),  # a stage its plan lacks
        ("POST", "/prod/iris/predict", "not-a-key"),
        ("POST", "/prod/iris/predict", None),
    )
    assert [a.status for a in answers] == [200, 403, 403, 403]


def test_an_unknown_route_keeps_aws_body_and_a_header_names_the_routes_there_are(store: Store) -> None:
    # GIVEN a gateway whose prod stage serves iris (version 1: predict only)
    events: list[dict[str, Any]] = []
    settings = GatewaySettings(api_key_required=False, on_event=events.append)
    gateway = Gateway(store, settings, rng=lambda: 0.99)
    # WHEN a path with a typo, the same again, and a stage that does not exist are asked for
    answers = ask(
        gateway,
        ("POST", "/prod/iirs/predict", None),
        ("POST", "/prod/iirs/predict", None),
        ("POST", "/nope/iris/predict", None),
    )
    # THEN AWS's body is unchanged, the header says which routes exist, and serve is told once per route
    assert {a.body for a in answers} == {b'{"message":"Missing Authentication Token"}'}
    assert [a.headers["x-lambdaserve-hint"] for a in answers] == [
        f"No POST /prod/iirs/predict on stage prod. Routes: {IRIS_ROUTES}.",
        f"No POST /prod/iirs/predict on stage prod. Routes: {IRIS_ROUTES}.",
        f"No POST /nope/iris/predict (no such stage here). Routes: {IRIS_ROUTES}.",
    ]
    assert [e["request"] for e in events] == ["POST /prod/iirs/predict", "POST /nope/iris/predict"]
