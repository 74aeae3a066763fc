"""Stages as Lambda aliases: canary weights, promotion under load, rollback.

Versions 1 and 2 of ``topics`` give the same answers (v2 is the same classifier written with
another pickle protocol); the ``x-lambdaserve-model-version`` header tells them apart.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from gateway_support import ServerPool, predict, run_gateway, wait_until

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.store import Store

Bundle = tuple[dict[str, Any], Path]
ORBIT = '["the rocket reached orbit"]'
VERSION = "x-lambdaserve-model-version"
PACE_S = 1 / 75  # each caller's pace under load: 4 callers, 300 requests/s, a core to spare


def register(state: Path, *bundles: Bundle) -> None:
    """Versions 1..n of topics, with stage test on version 1 (as ``models push`` would)."""
    store = Store(state)
    for manifest, model_file in bundles:
        store.add_version("topics", manifest, model_file)
    store.set_alias("topics", "test", 1)
    store.close()


def test_a_canary_at_25_percent_answers_about_a_quarter_of_requests(
    tmp_path: Path, topics_bundle: Bundle, topics_v2_bundle: Bundle
) -> None:
    # GIVEN stage test on version 1 with version 2 as a 25 % canary, and a seeded random source
    state = tmp_path / "state"
    register(state, topics_bundle, topics_v2_bundle)
    store = Store(state)
    store.set_alias("topics", "test", 1, canary_version=2, canary_weight=25)
    store.close()

    async def scenario(gateway: Gateway) -> Counter[tuple[int, str]]:
        seen: Counter[tuple[int, str]] = Counter()
        for _ in range(8):  # WHEN 400 requests arrive, 50 at a time
            requests = [gateway.handle(predict("/test/topics/predict", ORBIT)) for _ in range(50)]
            seen.update((r.status, r.headers[VERSION]) for r in await asyncio.gather(*requests))
        return seen

    settings = GatewaySettings(api_key_required=False)
    seen = run_gateway(state, settings, scenario, rng=random.Random(2024).random)
    # THEN all succeed and the canary answers between 15 % and 35 % of them
    assert set(seen) == {(200, "1"), (200, "2")}
    assert 60 <= seen[(200, "2")] <= 140


def test_a_promoted_version_serves_once_initialised_and_rollback_is_immediate(
    tmp_path: Path, topics_bundle: Bundle, topics_v2_bundle: Bundle
) -> None:
    # GIVEN a running gateway with stage test on version 1, and version 2 never run
    state = tmp_path / "state"
    register(state, topics_bundle, topics_v2_bundle)
    cli = Store(state)  # another connection, as the CLI's

    async def answered_by(gateway: Gateway) -> str:
        gateway.refresh()  # what the server's housekeeping does every half second
        response = await gateway.handle(predict("/test/topics/predict", ORBIT))
        assert response.status == 200
        return response.headers[VERSION]

    async def scenario(gateway: Gateway) -> list[Any]:
        before = await answered_by(gateway)
        cli.set_alias("topics", "test", 2)  # WHEN version 2 is promoted
        during_init = await answered_by(gateway)  # its INIT has started, not finished
        await gateway.following()
        promoted = await answered_by(gateway)
        cli.rollback("topics", "test")  # AND rolled back, to a version still initialised
        rolled_back = await answered_by(gateway)
        return [before, during_init, promoted, rolled_back]

    # THEN the stage answers with 1, still 1 while 2 runs INIT, then 2, then 1 again at once
    assert run_gateway(state, GatewaySettings(api_key_required=False), scenario) == ["1", "1", "2", "1"]
    alias = cli.alias("topics", "test")
    assert alias is not None
    assert (alias.version, alias.canary_version, alias.canary_weight) == (1, None, 0.0)
    cli.close()


def test_a_new_stage_and_a_version_that_fails_init_are_followed_at_once(
    tmp_path: Path, topics_bundle: Bundle, topics_v2_bundle: Bundle
) -> None:
    # GIVEN a gateway serving test on version 1, and a version 2 whose model file is damaged
    state = tmp_path / "state"
    register(state, topics_bundle, topics_v2_bundle)
    cli = Store(state)
    broken = cli.model_path(cli.version("topics", 2))
    broken.chmod(0o644)
    broken.write_bytes(b"not a pickle")

    async def scenario(gateway: Gateway) -> list[tuple[int, str | None]]:
        cli.set_alias("topics", "prod", 1)  # WHEN a new stage appears: nothing to keep serving
        gateway.refresh()
        first_on_prod = await gateway.handle(predict("/prod/topics/predict", ORBIT))
        cli.set_alias("topics", "test", 2)  # AND test is promoted to the broken version
        gateway.refresh()
        await gateway.following()
        on_test = await gateway.handle(predict("/test/topics/predict", ORBIT))
        return [(r.status, r.headers.get(VERSION)) for r in (first_on_prod, on_test)]

    # THEN prod answers at once, and test flips to version 2 once its INIT failed: callers see
    # the failure (as on AWS) instead of a stage that silently stays behind
    results = run_gateway(state, GatewaySettings(api_key_required=False), scenario)
    assert results[0] == (200, "1")
    assert results[1][0] == 502
    cli.close()


def test_promotion_and_rollback_under_load_lose_no_request(
    tmp_path: Path, topics_bundle: Bundle, topics_v2_bundle: Bundle
) -> None:
    # GIVEN a server on version 1 of topics, and 4 callers sending requests without pause
    state = tmp_path / "state"
    register(state, topics_bundle)
    pool = ServerPool()
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def caller(url: str, key: str) -> None:
        with httpx.Client(headers={"x-api-key": key}, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(url, content=ORBIT)
                    answers.append((response.status_code, response.headers.get(VERSION)))
                except httpx.HTTPError as exc:
                    answers.append((0, repr(exc)))

    def recent(count: int) -> list[tuple[int, str | None]]:
        return answers[-count:]

    callers: list[threading.Thread] = []
    try:
        served = pool.start(state)
        url = served.base + "/test/topics/predict"
        callers = [threading.Thread(target=caller, args=(url, served.api_key)) for _ in range(4)]
        for thread in callers:
            thread.start()
        wait_until(lambda: len(answers) >= 20, 30.0)
        # WHEN version 2 is pushed and promoted by another process (as the CLI does)
        cli = Store(state)
        cli.add_version("topics", *topics_v2_bundle)
        cli.set_alias("topics", "test", 2)
        cli.close()
        wait_until(lambda: all(v == "2" for _, v in recent(20)), 30.0)
        # AND then rolled back through the admin API
        rollback = httpx.post(
            served.base + "/_/api/models/topics/stages/test/rollback",
            headers={"Authorization": f"Bearer {served.admin_token}"},
        )
        assert rollback.status_code == 200
        assert rollback.json()["version"] == 1
        wait_until(lambda: all(v == "1" for _, v in recent(20)), 10.0)
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in callers:
            thread.join(35)
        pool.stop_all()
    # THEN every request succeeded, and both versions answered
    assert Counter(status for status, _ in answers) == Counter({200: len(answers)})
    assert {version for _, version in answers} == {"1", "2"}


def test_promoting_a_cold_version_under_load_makes_no_caller_wait_for_init(
    tmp_path: Path, topics_bundle: Bundle, topics_v2_bundle: Bundle
) -> None:
    # GIVEN a server on version 1 of topics, version 2 pushed but never run, and 4 callers at
    # 75 requests/s each, measured 3 s steady
    state = tmp_path / "state"
    register(state, topics_bundle, topics_v2_bundle)
    pool = ServerPool()
    timings: list[tuple[float, float, str | None]] = []  # (sent at, seconds, version)
    stop = threading.Event()

    def caller(url: str, key: str) -> None:
        with httpx.Client(headers={"x-api-key": key}, timeout=30) as client:
            next_at = time.perf_counter()
            while not stop.is_set():
                sent = time.perf_counter()
                response = client.post(url, content=ORBIT)
                timings.append((sent, time.perf_counter() - sent, response.headers.get(VERSION)))
                assert response.status_code == 200
                next_at += PACE_S
                time.sleep(max(0.0, next_at - time.perf_counter()))

    callers: list[threading.Thread] = []
    gc.disable()  # this process's own collections would pause the callers: the server is measured
    try:
        served = pool.start(state)
        url = served.base + "/test/topics/predict"
        callers = [threading.Thread(target=caller, args=(url, served.api_key)) for _ in range(4)]
        for thread in callers:
            thread.start()
        wait_until(lambda: len(timings) >= 100, 30.0)
        steady_from = time.perf_counter()
        time.sleep(3)
        # WHEN version 2 is promoted through another connection to the store (as the CLI does)
        cli = Store(state)
        promoted_at = time.perf_counter()
        cli.set_alias("topics", "test", 2)
        cli.close()
        wait_until(lambda: all(v == "2" for _, _, v in timings[-20:]), 30.0)
        flipped_at = next(sent for sent, _, v in timings if v == "2")
        time.sleep(1)
    finally:
        stop.set()
        for thread in callers:
            thread.join(35)
        gc.enable()
        pool.stop_all()
    steady = sorted(s for sent, s, _ in timings if steady_from <= sent < promoted_at)
    during = sorted(s for sent, s, _ in timings if promoted_at <= sent)
    p99 = steady[int(len(steady) * 0.99)]
    print(  # the figures docs/performance.md quotes
        f"steady: {len(steady)} requests, p50 {steady[len(steady) // 2] * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {steady[-1] * 1000:.1f} ms; "
        f"promote to flip {flipped_at - promoted_at:.2f} s; "
        f"during: {len(during)} requests, "
        f"p99 {during[int(len(during) * 0.99)] * 1000:.1f} ms, max {during[-1] * 1000:.1f} ms"
    )
    # THEN the stage flipped only once version 2 was initialised (INIT takes over a second here),
    # no request waited for that INIT, and the p99 stayed within twice the steady one.
    # (The slowest request is printed, not asserted: this VM stalls 25-45 ms now and then in
    # steady state too, so "none over twice the steady p99" fails on noise alone in some runs;
    # docs/performance.md has the measurements.)
    assert flipped_at - promoted_at > 0.3
    assert during[-1] < 0.25
    assert during[int(len(during) * 0.99)] <= 2 * p99
