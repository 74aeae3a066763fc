"""API keys and usage plans: throttle exactness and quota periods with injected clocks
(in-process), quota persistence across restarts and ``kill -9``, and keys and plans changed
by another process while a server runs (real sockets)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from gateway_support import FakeClock, ServerPool, body_of, predict, run_gateway, wait_until

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.functions.service import HandlerSpec
from lambdaserve.store import Store
from lambdaserve.store.records import period_start

TOO_MANY = {"message": "Too Many Requests"}
LIMIT = {"message": "Limit Exceeded"}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def tools_settings(tools_dir: Path) -> GatewaySettings:
    return GatewaySettings(handlers=[HandlerSpec("tools", "tools.handler", str(tools_dir))])


def make_key(state: Path, plan: str, **limits: Any) -> tuple[str, str]:
    """A plan and a key on it, written as the CLI would; returns (key id, key value)."""
    store = Store(state)
    store.create_plan(plan, **limits)
    key, value = store.create_key(f"{plan}-caller", plan)
    store.close()
    return key.id, value


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """Run in a local time zone 13 hours from UTC, so local dates are not UTC dates."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Auckland"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


# -- throttle -------------------------------------------------------------------------------
def test_at_most_burst_plus_rate_times_t_requests_pass_under_concurrency(
    tmp_path: Path, tools_dir: Path
) -> None:
    # GIVEN a key throttled to R=4/s with a bucket of B=3, and a clock the test moves
    state = tmp_path / "state"
    _, key = make_key(state, "metered", rate=4, burst=3)
    clock = FakeClock(1000.0)
    seconds, step, callers = 5, 0.25, 10

    async def scenario(gateway: Gateway) -> list[tuple[int, Any]]:
        answers = []
        # WHEN 10 callers fire at once every quarter second for T=5 simulated seconds
        for tick in range(int(seconds / step) + 1):
            if tick:
                clock.advance(step)
            burst = [gateway.handle(predict("/test/tools", '"hi"', key)) for _ in range(callers)]
            answers += [(r.status, body_of(r)) for r in await asyncio.gather(*burst)]
        return answers

    answers = run_gateway(state, tools_settings(tools_dir), scenario, clock=clock)
    # THEN exactly B + R*T pass, and every other one is throttled with API Gateway's body
    passed = [a for a in answers if a[0] == 200]
    assert len(passed) == 3 + 4 * seconds
    assert all(a == (429, TOO_MANY) for a in answers if a[0] != 200)


def test_a_refused_request_uses_neither_a_token_nor_the_quota(tmp_path: Path, tools_dir: Path) -> None:
    # GIVEN a key with 1 request/s (bucket 1) and 2 requests a day
    state = tmp_path / "state"
    key_id, key = make_key(state, "small", rate=1, burst=1, quota_limit=2, quota_period="DAY")
    clock, wall = FakeClock(), FakeClock(utc("2024-03-10T12:00:00"))

    async def scenario(gateway: Gateway) -> list[int]:
        statuses = []
        for advance in (0, 0, 1, 1, 0):
            clock.advance(advance)
            statuses.append((await gateway.handle(predict("/test/tools", '"hi"', key))).status)
        return statuses

    # WHEN calls come faster than the throttle, then past the quota
    statuses = run_gateway(state, tools_settings(tools_dir), scenario, clock=clock, wall=wall)
    # THEN the throttled call did not count against the quota, and the quota refusal took no token
    assert statuses == [200, 429, 200, 429, 429]
    store = Store(state)
    assert store.usage(key_id, period_start("DAY", wall())) == 2
    store.close()


# -- quota periods --------------------------------------------------------------------------
@pytest.mark.usefixtures("far_from_utc")
@pytest.mark.parametrize(
    ("period", "first", "same_period", "next_period"),
    [
        ("DAY", "2024-03-10T23:59:58", "2024-03-10T23:59:59.999", "2024-03-11T00:00:00"),
        ("WEEK", "2024-03-04T10:00:00", "2024-03-10T23:59:59.999", "2024-03-11T00:00:00"),  # Mon..Sun
        ("MONTH", "2024-02-01T00:00:00", "2024-02-29T23:59:59.999", "2024-03-01T00:00:00"),
    ],
)
def test_a_quota_resets_when_its_utc_period_ends(
    tmp_path: Path, tools_dir: Path, period: str, first: str, same_period: str, next_period: str
) -> None:
    # GIVEN a key with a quota of 2 per period
    state = tmp_path / "state"
    _, key = make_key(state, "quota", quota_limit=2, quota_period=period)
    wall = FakeClock(utc(first))

    async def call(gateway: Gateway) -> tuple[int, Any]:
        response = await gateway.handle(predict("/test/tools", '"hi"', key))
        return response.status, body_of(response)

    async def scenario(gateway: Gateway) -> list[tuple[int, Any]]:
        answers = [await call(gateway) for _ in range(3)]
        wall.now = utc(same_period)
        answers.append(await call(gateway))
        wall.now = utc(next_period)
        answers.append(await call(gateway))
        return answers

    answers = run_gateway(state, tools_settings(tools_dir), scenario, wall=wall)
    # THEN the third call and any before the period's end in UTC are refused; the next period is fresh
    assert [status for status, _ in answers] == [200, 200, 429, 429, 200]
    assert answers[2][1] == answers[3][1] == LIMIT


def test_the_quota_survives_a_restart(tmp_path: Path, tools_dir: Path) -> None:
    # GIVEN a key with 3 requests a day, 2 of them used on a gateway that then stops
    state = tmp_path / "state"
    _, key = make_key(state, "daily", quota_limit=3, quota_period="DAY")
    wall = FakeClock(utc("2024-03-10T12:00:00"))

    def calls(count: int) -> list[int]:
        async def scenario(gateway: Gateway) -> list[int]:
            statuses = [
                (await gateway.handle(predict("/test/tools", '"hi"', key))).status for _ in range(count)
            ]
            return statuses

        return run_gateway(state, tools_settings(tools_dir), scenario, wall=wall)

    assert calls(2) == [200, 200]
    # WHEN a new gateway starts on the same state directory
    # THEN only the one remaining call passes
    assert calls(2) == [200, 429]


def test_a_call_to_a_route_that_does_not_exist_uses_no_quota(
    tmp_path: Path, sizes_bundle: tuple[dict[str, Any], Path]
) -> None:
    # GIVEN a model without predict_proba and a key with 1 request a day
    state = tmp_path / "state"
    store = Store(state)
    store.add_version("sizes", *sizes_bundle)
    store.set_alias("sizes", "test", 1)
    store.close()
    _, key = make_key(state, "one", quota_limit=1, quota_period="DAY")

    async def scenario(gateway: Gateway) -> list[int]:
        missing = [
            await gateway.handle(predict("/test/sizes/predict_proba", "[[1, 1]]", key)) for _ in range(2)
        ]
        real = await gateway.handle(predict("/test/sizes/predict", "[[1, 1]]", key))
        return [r.status for r in [*missing, real]]

    # WHEN the missing route is called twice, THEN both are 403 and the real route still has its call
    assert run_gateway(state, GatewaySettings(env_mode="local"), scenario) == [403, 403, 200]


# -- real servers ---------------------------------------------------------------------------
@pytest.mark.parametrize("concurrent", [False, True], ids=["one-by-one", "a-burst-of-30-at-once"])
def test_kill_9_right_after_n_answers_leaves_exactly_quota_minus_n(
    tmp_path: Path, tools_dir: Path, concurrent: bool
) -> None:
    # GIVEN a server whose default plan allows 50 requests a day, and 30 of them answered
    state = tmp_path / "state"
    pool = ServerPool()
    try:
        first = pool.start(state, "--handler", "tools.handler", "--quota", "50/DAY", cwd=tools_dir)
        if concurrent:
            with ThreadPoolExecutor(30) as threads:
                answered = list(
                    threads.map(lambda _: first.post("/test/tools", '"hi"').status_code, range(30))
                )
        else:
            answered = [first.post("/test/tools", '"hi"').status_code for _ in range(30)]
        assert answered == [200] * 30
        # WHEN the server is killed with SIGKILL at once, and started again
        first.kill9()
        second = pool.start(state, "--handler", "tools.handler", "--quota", "50/DAY", cwd=tools_dir)
        assert "api_key" not in second.info  # the key made by the first run is kept
        # THEN exactly the 20 remaining calls pass
        statuses = [second.post("/test/tools", '"hi"', key=first.api_key).status_code for _ in range(22)]
    finally:
        pool.stop_all()
    assert statuses == [200] * 20 + [429] * 2


def test_an_answered_request_is_already_counted_in_the_store(tmp_path: Path, tools_dir: Path) -> None:
    # GIVEN a key with a quota
    state = tmp_path / "state"
    key_id, key = make_key(state, "daily", quota_limit=100, quota_period="DAY")
    wall = FakeClock(utc("2024-03-10T12:00:00"))

    async def scenario(gateway: Gateway) -> list[int]:
        reader = Store(state)  # another connection, as a process started after a crash
        seen = []
        for _ in range(3):
            # WHEN a request is answered (no flush, no housekeeping in between)
            assert (await gateway.handle(predict("/test/tools", '"hi"', key))).status == 200
            # THEN its count is committed already
            seen.append(reader.usage(key_id, "DAY:2024-03-10"))
        reader.close()
        return seen

    assert run_gateway(state, tools_settings(tools_dir), scenario, wall=wall) == [1, 2, 3]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Any]:
    pool = ServerPool()
    try:
        yield pool.start(
            tmp_path_factory.mktemp("usage") / "state", "--handler", "tools.handler", cwd=tools_dir
        )
    finally:
        pool.stop_all()


def test_a_key_revoked_while_the_server_runs_is_refused_within_2_seconds(running: Any) -> None:
    # GIVEN a key made by another process (the CLI) while the server runs
    store = Store(running.state_dir)
    key, value = store.create_key("bob", "default")
    made = time.monotonic()
    wait_until(lambda: running.post("/test/tools", '"hi"', key=value).status_code == 200, 2.0)
    assert time.monotonic() - made <= 2.0
    # WHEN it is revoked
    store.revoke_key(key.id)
    revoked = time.monotonic()
    # THEN the server refuses it within 2 s
    refused = wait_until(
        lambda: (r := running.post("/test/tools", '"hi"', key=value)).status_code == 403 and r, 3.0
    )
    assert time.monotonic() - revoked <= 2.0
    assert refused.json() == {"message": "Forbidden"}
    store.close()


def test_a_plan_and_key_made_while_the_server_runs_apply_within_2_seconds(running: Any) -> None:
    # GIVEN a plan of 1 request a day and a key on it, made while the server runs
    store = Store(running.state_dir)
    store.create_plan("one-a-day", quota_limit=1, quota_period="DAY")
    _, value = store.create_key("carol", "one-a-day")
    store.close()
    made = time.monotonic()
    # WHEN the caller tries it
    first = wait_until(
        lambda: (r := running.post("/test/tools", '"hi"', key=value)).status_code != 403 and r, 3.0
    )
    # THEN it works within 2 s, with its plan's quota
    assert time.monotonic() - made <= 2.0
    assert first.status_code == 200
    second = running.post("/test/tools", '"hi"', key=value)
    assert (second.status_code, second.json()) == (429, LIMIT)


# -- keys and the stages of their plans ------------------------------------------------------
def test_a_key_works_only_on_the_stages_of_its_plan(
    tmp_path: Path, topics_bundle: tuple[dict[str, Any], Path]
) -> None:
    # GIVEN topics served on test and on prod, and serve's key, whose default plan it attaches
    # to the stage it serves (test)
    state = tmp_path / "state"
    store = Store(state)
    record, _ = store.add_version("topics", *topics_bundle)
    store.set_alias("topics", "test", record.version)
    store.set_alias("topics", "prod", record.version)
    store.close()
    pool = ServerPool()
    try:
        served = pool.start(state)
        # WHEN its key calls both stages
        on_test = served.post("/test/topics/predict", '["the rocket"]')
        on_prod = served.post("/prod/topics/predict", '["the rocket"]')
        # THEN it works on test only; prod answers as API Gateway does, before reading the body
        assert on_test.status_code == 200
        assert (on_prod.status_code, on_prod.json()) == (403, {"message": "Forbidden"})
        # AND a plan on prod only gives a key that works there and not on test
        store = Store(state)
        store.create_plan("prod-only", stages=["prod"])
        _, prod_key = store.create_key("partner", "prod-only")
        wait_until(lambda: served.post("/prod/topics/predict", '["a"]', key=prod_key).status_code == 200, 3.0)
        assert served.post("/test/topics/predict", '["a"]', key=prod_key).status_code == 403
        # AND attaching prod to the default plan (plans update) lets serve's key in, within 2 s
        store.update_plan("default", None, None, None, None, ["test", "prod"])
        store.close()
        wait_until(lambda: served.post("/prod/topics/predict", '["a"]').status_code == 200, 3.0)
    finally:
        pool.stop_all()


def test_serve_attaches_the_stage_it_serves_to_its_default_plan(tmp_path: Path, tools_dir: Path) -> None:
    # GIVEN a state directory whose default plan and key were made by serving test
    state = tmp_path / "state"
    pool = ServerPool()
    try:
        first = pool.start(state, "--handler", "tools.handler", cwd=tools_dir)
        first.stop()
        # WHEN the same state serves prod
        second = pool.start(state, "--handler", "tools.handler", "--stage", "prod", cwd=tools_dir)
        # THEN the key made the first time works on prod too
        answer = second.post("/prod/tools", '"hi"', key=first.api_key)
    finally:
        pool.stop_all()
    assert answer.status_code == 200
    store = Store(state)
    assert store.plan("default").stages == ("test", "prod")
    store.close()
