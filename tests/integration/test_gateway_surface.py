"""The rest of the gateway's surface: AWS's runtime client as the environment, the admin API,
the docs page, and idle environments being reaped."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Bundle
from gateway_support import Served, ServerPool, predict, run_gateway, wait_until

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.functions.settings import FunctionSettings
from lambdaserve.store import Store

ROCKET = '["the rocket reached orbit"]'


def registered(state: Path, bundle: Bundle, name: str = "topics") -> Path:
    store = Store(state)
    manifest, model_file = bundle
    record, _ = store.add_version(name, manifest, model_file)
    store.set_alias(name, "test", record.version)
    store.close()
    return state


@pytest.fixture
def pool() -> Iterator[ServerPool]:
    servers = ServerPool()
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.mark.parametrize("runtime", ["default", "awslambdaric"])
def test_each_runtime_answers_alike_through_the_gateway(
    tmp_path: Path, topics_bundle: Bundle, pool: ServerPool, runtime: str
) -> None:
    # GIVEN a model served by forked environments (default), or by AWS's own runtime client
    # polling the Runtime API the gateway serves for it (awslambdaric)
    served = pool.start(registered(tmp_path / "state", topics_bundle), "--runtime", runtime, "--no-api-key")
    # WHEN it is called, well and badly
    good = served.post("/test/topics/predict", ROCKET)
    bad = served.post("/test/topics/predict", "not json")
    # THEN the answers are the handler's, the same from either runtime
    assert (good.status_code, good.json()) == (200, ["space"])
    assert good.headers["x-lambdaserve-model-version"] == "1"
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]
    log = wait_until(
        lambda: (text := served.model_log("topics")).count("REPORT RequestId") >= 2 and text, 5.0
    )
    assert "Init Duration: " in log


def test_the_try_line_works_when_pasted_with_a_new_key_and_with_an_existing_one(
    tmp_path: Path, iris_bundle: Bundle, pool: ServerPool
) -> None:
    # GIVEN a tabular model served twice from one state: first with a new key, then with it
    state = registered(tmp_path / "state", iris_bundle, "iris")
    first = pool.start(state)
    first.stop()
    again = pool.start(state)
    # WHEN each announced Try line is pasted into a shell (KEY set, as the line asks the second time)
    lines = [first.info["try"], again.info["try"]]

    def pasted(line: str) -> str:
        shell = ["bash", "-c", line + " -s -w ' %{http_code}'"]
        env = {**os.environ, "KEY": first.api_key}
        return subprocess.run(shell, capture_output=True, text=True, timeout=30, env=env).stdout

    answers = [pasted(lines[0].replace(first.base, again.base)), pasted(lines[1])]
    # THEN both send the bundle's own sample with a working key, and get the prediction
    assert "[[5.1, 3.5, 1.4, 0.2]]" in lines[0]
    assert first.api_key in lines[0]
    assert '-H "x-api-key: $KEY"' in lines[1]
    assert answers == ['["setosa"] 200', '["setosa"] 200']


def test_admin_api_manages_stages_plans_and_keys(
    tmp_path: Path, topics_bundle: Bundle, pool: ServerPool
) -> None:
    served: Served = pool.start(registered(tmp_path / "state", topics_bundle))
    auth = {"Authorization": f"Bearer {served.admin_token}"}
    api = served.base + "/_/api"
    # GIVEN the admin API: without the token nothing is told
    assert httpx.get(api + "/models").status_code == 401
    # WHEN a plan and a key are made through it, and the key is used
    plan = httpx.post(
        api + "/plans", json={"name": "partners", "rate": 5, "burst": 5, "quota": "2/DAY"}, headers=auth
    )
    key = httpx.post(api + "/keys", json={"name": "bob", "plan": "partners"}, headers=auth)
    assert (plan.status_code, key.status_code) == (201, 201)
    value = key.json()["value"]
    answers = [served.post("/test/topics/predict", ROCKET, key=value).status_code for _ in range(3)]
    # THEN the plan applies at once, the key's usage is listed, and bad input is a 400
    assert answers == [200, 200, 429]
    keys = httpx.get(api + "/keys", headers=auth).json()["keys"]
    assert next(k for k in keys if k["name"] == "bob")["used"] == 2
    assert httpx.post(api + "/plans", json={"name": "x", "quota": "lots"}, headers=auth).status_code == 400
    # AND the key can be revoked, and the stage read and changed
    assert httpx.delete(api + f"/keys/{key.json()['id']}", headers=auth).json()["enabled"] is False
    model = httpx.get(api + "/models/topics", headers=auth).json()
    assert model["stages"][0]["version"] == 1
    assert httpx.put(api + "/models/topics/stages/test", json={"version": 9}, headers=auth).status_code == 400
    logs = httpx.get(api + "/logs/topics?lines=10", headers=auth).json()["lines"]
    assert any("REPORT RequestId" in line for line in logs)


def test_the_docs_page_shows_each_route_with_a_curl_line(
    tmp_path: Path, topics_bundle: Bundle, pool: ServerPool
) -> None:
    served = pool.start(registered(tmp_path / "state", topics_bundle))
    page = httpx.get(served.base + "/_/docs").text
    assert "POST /test/topics/predict" in page
    assert f"curl -X POST {served.base}/test/topics/predict" in page
    assert "<script" not in page  # nothing to fetch: works offline


def test_idle_environments_are_reaped_but_provisioned_ones_stay(
    tmp_path: Path, topics_bundle: Bundle
) -> None:
    # GIVEN a function allowed 2 environments, 1 provisioned, reaped after 0.2 s idle
    settings = GatewaySettings(
        api_key_required=False,
        function=FunctionSettings(provisioned=1, max_environments=2, idle_s=0.2, mode="lambda"),
    )

    async def scenario(gateway: Gateway) -> tuple[int, int]:
        # WHEN two concurrent requests make it grow to 2 environments, then it idles
        await asyncio.gather(*(gateway.handle(predict("/test/topics/predict", ROCKET)) for _ in range(2)))
        function = gateway.functions[("topics", "1")]
        # The second environment may still be forking when the first has answered both.
        for _ in range(1000):
            if not function.forking:
                break
            await asyncio.sleep(0.01)
        grown = len(function.environments)
        # AND the clock moves past the idle limit (the reaper reads it; nothing waits)
        gateway.housekeeping(now=time.monotonic() + 1.0)
        return grown, len(function.environments)

    grown, after = run_gateway(registered(tmp_path / "state", topics_bundle), settings, scenario)
    # THEN the extra environment is reaped and the provisioned one kept
    assert (grown, after) == (2, 1)


def test_metrics_count_requests_by_status_and_cold_starts(
    tmp_path: Path, topics_bundle: Bundle, pool: ServerPool
) -> None:
    served = pool.start(registered(tmp_path / "state", topics_bundle), "--no-api-key")
    for body in (ROCKET, ROCKET, "nope"):
        served.post("/test/topics/predict", body)
    text = httpx.get(
        served.base + "/_/metrics", headers={"Authorization": f"Bearer {served.admin_token}"}
    ).text
    assert 'lambdaserve_requests_total{model="topics",stage="test",status="200",version="1"} 2.0' in text
    assert 'lambdaserve_requests_total{model="topics",stage="test",status="400",version="1"} 1.0' in text
    assert 'lambdaserve_cold_starts_total{kind="init",model="topics",version="1"} 1.0' in text
    assert json.loads(httpx.get(served.base + "/_/health").text)["status"] == "ok"
