"""The usage limiter alone, on injected clocks: a throttle admits exactly B + R*T, a quota
exactly its limit per UTC period, and counts reach the store before an answer leaves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lambdaserve.apigateway.errors import GatewayError
from lambdaserve.apigateway.usage import UsageLimiter
from lambdaserve.store import ApiKey, Store, UsagePlan
from lambdaserve.store.records import period_end, period_start


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state")
    yield store
    store.close()


def key_in(store: Store, plan: UsagePlan) -> ApiKey:
    key, _ = store.create_key("k", plan.id)
    return key


def admitted(limiter: UsageLimiter, key: ApiKey, plan: UsagePlan, tries: int) -> int:
    refused: list[int] = []
    for _ in range(tries):
        try:
            limiter.admit(key, plan)
        except GatewayError as error:
            refused.append(error.status)
    assert set(refused) <= {429}
    return tries - len(refused)


def test_a_throttle_admits_the_burst_then_the_rate_and_no_more(store: Store) -> None:
    # GIVEN a plan of 2 requests per second with a burst of 5, on a clock that we move
    plan = store.create_plan("p", rate=2, burst=5)
    key = key_in(store, plan)
    clock = Clock(1000.0)
    limiter = UsageLimiter(store, clock=clock, wall=Clock(1.8e9))
    # WHEN 20 requests come at once, then 20 more 2 seconds later, then 10 s later
    first = admitted(limiter, key, plan, 20)
    clock.now += 2.0
    later = admitted(limiter, key, plan, 20)
    clock.now += 10.0
    rested = admitted(limiter, key, plan, 20)
    # THEN the burst passes, then rate * 2 s (B + R*T over the 2 s), and a rest refills only the burst
    assert (first, later, rested) == (5, 4, 5)


def test_a_quota_admits_its_limit_and_a_refused_request_uses_no_token(store: Store) -> None:
    plan = store.create_plan("p", rate=1, burst=1, quota_limit=3, quota_period="DAY")
    key = key_in(store, plan)
    clock, wall = Clock(0.0), Clock(datetime(2026, 12, 3, 12, tzinfo=timezone.utc).timestamp())
    limiter = UsageLimiter(store, clock=clock, wall=wall)
    passed = 0
    for _ in range(10):  # one a second: never throttled, so only the quota refuses
        passed += admitted(limiter, key, plan, 1)
        clock.now += 1.0
    assert passed == 3
    assert limiter.used(key, plan) == 3


def test_the_quota_starts_again_when_its_utc_period_ends(store: Store) -> None:
    plan = store.create_plan("p", quota_limit=2, quota_period="WEEK")
    key = key_in(store, plan)
    thursday = datetime(2026, 12, 3, 23, 59, tzinfo=timezone.utc).timestamp()
    wall = Clock(thursday)
    limiter = UsageLimiter(store, clock=Clock(0.0), wall=wall)
    assert admitted(limiter, key, plan, 5) == 2
    wall.now = period_end("WEEK", thursday) - 1  # Sunday 23:59:59: the same week
    assert admitted(limiter, key, plan, 1) == 0
    wall.now += 1  # Monday 00:00 UTC
    assert admitted(limiter, key, plan, 5) == 2
    assert period_start("WEEK", wall.now) == "WEEK:2026-12-07"


def test_a_counted_request_is_in_the_store_before_it_is_answered(store: Store, tmp_path: Path) -> None:
    plan = store.create_plan("p", quota_limit=100, quota_period="MONTH")
    key = key_in(store, plan)
    wall = Clock(datetime(2026, 12, 3, tzinfo=timezone.utc).timestamp())
    limiter = UsageLimiter(store, clock=Clock(0.0), wall=wall)
    numbers = [limiter.admit(key, plan) for _ in range(3)]
    assert numbers == [1, 2, 3]
    other = Store(tmp_path / "state")  # another process's view
    assert other.usage(key.id, "MONTH:2026-12-01") == 0  # nothing answered yet
    limiter.written(2)  # answering request 2 writes every count so far, in one transaction
    assert other.usage(key.id, "MONTH:2026-12-01") == 3
    other.close()


def test_a_new_limiter_picks_up_the_count_where_the_store_left_it(store: Store) -> None:
    plan = store.create_plan("p", quota_limit=4, quota_period="DAY")
    key = key_in(store, plan)
    wall = Clock(datetime(2026, 12, 3, 8, tzinfo=timezone.utc).timestamp())
    before = UsageLimiter(store, clock=Clock(0.0), wall=wall)
    assert admitted(before, key, plan, 3) == 3
    before.flush()
    after = UsageLimiter(store, clock=Clock(0.0), wall=wall)  # the gateway restarted
    assert admitted(after, key, plan, 3) == 1
