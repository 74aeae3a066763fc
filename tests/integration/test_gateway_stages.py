"""Stages as Lambda aliases: canary weights, promotion under load, rollback.

Versions 1 and 2 of ``topics`` give the same answers (v2 is the same classifier written with
another pickle protocol); the ``x-lambdaserve-model-version`` header tells them apart.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from gateway_support import ServerPool, predict, run_gateway, wait_until

from lambdaserve.gateway.core import Gateway, GatewaySettings
from lambdaserve.store import Store

Bundle = tuple[dict[str, Any], Path]
ORBIT = '["the rocket reached orbit"]'
VERSION = "x-lambdaserve-model-version"


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


def test_rollback_restores_the_previous_version(
    tmp_path: Path, topics_bundle: Bundle, topics_v2_bundle: Bundle
) -> None:
    # GIVEN a running gateway with stage test on version 1
    state = tmp_path / "state"
    register(state, topics_bundle, topics_v2_bundle)
    cli = Store(state)  # another connection, as the CLI's

    async def answered_by(gateway: Gateway) -> str:
        gateway.catalog.refresh()  # what the server's housekeeping does every half second
        response = await gateway.handle(predict("/test/topics/predict", ORBIT))
        assert response.status == 200
        return response.headers[VERSION]

    async def scenario(gateway: Gateway) -> list[Any]:
        before = await answered_by(gateway)
        cli.set_alias("topics", "test", 2)  # WHEN version 2 is promoted
        promoted = await answered_by(gateway)
        cli.rollback("topics", "test")  # AND rolled back
        rolled_back = await answered_by(gateway)
        return [before, promoted, rolled_back]

    # THEN the stage answers with 1, then 2, then 1 again, with no canary left behind
    assert run_gateway(state, GatewaySettings(api_key_required=False), scenario) == ["1", "2", "1"]
    alias = cli.alias("topics", "test")
    assert alias is not None
    assert (alias.version, alias.canary_version, alias.canary_weight) == (1, None, 0.0)
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
