"""Prediction capture on the local gateway: off by default, set while serving, pulled back by request id.

The id in a record is the one the handler sees, the Lambda request id (``context.aws_request_id``).
Locally the gateway gives the invocation the same id it answers in ``x-amzn-RequestId``, so they
match; on AWS ``x-amzn-RequestId`` is API Gateway's own id and the record holds Lambda's
(docs/emulation.md).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
from gateway_support import LAMBDASERVE, ServerPool, body_of, predict, run_gateway, wait_until
from typer.testing import CliRunner

from lambdaserve.apigateway.gateway import Gateway, GatewaySettings
from lambdaserve.cli.app import app
from lambdaserve.functions.logbook import log_path
from lambdaserve.monitoring.capture import capture_path, read_records
from lambdaserve.store import Store
from lambdaserve.store.captures import capture_rates, set_capture_rate

Bundle = tuple[dict[str, Any], Path]
ORBIT = '["the rocket reached orbit"]'


def register(state: Path, bundle: Bundle) -> None:
    store = Store(state)
    store.add_version("topics", *bundle)
    store.set_alias("topics", "test", 1)
    store.close()


def test_capture_is_off_by_default_and_a_stage_rate_reaches_the_handler(
    tmp_path: Path, topics_bundle: Bundle
) -> None:
    # GIVEN a served model, capture never set
    state = tmp_path / "state"
    register(state, topics_bundle)

    async def scenario(gateway: Gateway) -> list[str]:
        ids = []
        for _ in range(3):  # WHEN requests arrive with capture off, then at 100 %
            response = await gateway.handle(predict("/test/topics/predict", ORBIT))
            assert response.status == 200
        gateway.housekeeping()
        assert not capture_path(state, "topics").exists()  # THEN nothing is written while off
        other = Store(state)  # as the CLI would, beside the server
        set_capture_rate(other, "topics", "test", 1.0)
        other.close()
        gateway.housekeeping()  # the catalog follows the store's commit
        for _ in range(3):
            response = await gateway.handle(predict("/test/topics/predict", ORBIT))
            ids.append(response.headers["x-amzn-RequestId"])
            assert body_of(response) == ["space"]
        gateway.housekeeping()
        return ids

    ids = run_gateway(state, GatewaySettings(api_key_required=False), scenario)
    records = list(read_records(state, "topics"))
    assert [r["requestId"] for r in records] == ids
    assert {(r["stage"], r["version"], r["route"]) for r in records} == {("test", "1", "predict")}
    assert records[0]["instances"] == ["the rocket reached orbit"]
    assert records[0]["predictions"] == ["space"]
    assert records[0]["probabilities"] is not None
    # AND the model's log keeps its own lines and no record
    log = log_path(state, "topics").read_text()
    assert ids[0] in log
    assert "lambdaserveCapture" not in log


def test_capture_set_while_serving_then_pull_returns_the_records_by_request_id(
    tmp_path: Path, topics_bundle: Bundle
) -> None:
    # GIVEN lambdaserve serve running on a registered model
    state = tmp_path / "state"
    register(state, topics_bundle)
    pool = ServerPool()
    try:
        served = pool.start(state)
        # WHEN capture is set to 100 % from the CLI, a separate process, while it serves
        command = ["capture", "set", "topics", "--stage", "test", "100%", "--state-dir", str(state)]
        subprocess.run(
            [str(LAMBDASERVE), *command],
            check=True,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

        def first_captured() -> str | None:  # the server follows the store within a second or two
            response = served.post("/test/topics/predict", ORBIT)
            assert response.status_code == 200
            found = [r["requestId"] for r in read_records(state, "topics")]
            return response.headers["x-amzn-RequestId"] if found else None

        wait_until(first_captured, timeout_s=20)
        ids = []
        for text in ("a new moon lander", "the goalie saved it", "a GPU driver update"):
            response = served.post("/test/topics/predict", json.dumps([text]))
            assert response.status_code == 200
            ids.append(response.headers["x-amzn-RequestId"])

        # THEN capture pull returns them, each under the id its caller got in x-amzn-RequestId
        def pulled() -> list[dict[str, Any]] | None:
            result = CliRunner().invoke(
                app, ["capture", "pull", "topics", "--stage", "test", "--state-dir", str(state)]
            )
            assert result.exit_code == 0, result.output
            records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
            return records if {r["requestId"] for r in records} >= set(ids) else None

        records = {r["requestId"]: r for r in wait_until(pulled, timeout_s=20)}
        assert [records[i]["instances"] for i in ids] == [
            ["a new moon lander"],
            ["the goalie saved it"],
            ["a GPU driver update"],
        ]
        # AND show prints them as a table, and set off stops it
        shown = CliRunner().invoke(app, ["capture", "show", "topics", "--state-dir", str(state)])
        assert shown.exit_code == 0
        assert "test 100%" in shown.stdout
        assert "space" in shown.stdout
        out = tmp_path / "out.jsonl"
        written = CliRunner().invoke(
            app, ["capture", "pull", "topics", "-o", str(out), "--json", "--state-dir", str(state)]
        )
        assert json.loads(written.stdout)["records"] == len(out.read_text().splitlines()) >= 4
    finally:
        pool.stop_all()


def test_the_console_route_sets_a_stage_rate_with_the_admin_token(
    tmp_path: Path, topics_bundle: Bundle
) -> None:
    state = tmp_path / "state"
    register(state, topics_bundle)
    pool = ServerPool()
    try:
        served = pool.start(state)
        url = f"{served.base}/_/api/models/topics/stages/test/capture"
        auth = {"Authorization": f"Bearer {served.admin_token}"}
        assert httpx.put(url, json={"rate": 0.1}).status_code == 401
        assert httpx.put(url, json={"rate": 5}, headers=auth).status_code == 400
        assert httpx.put(url.replace("/test/", "/prod/"), json={"rate": 0.1}, headers=auth).status_code == 404
        answer = httpx.put(url, json={"rate": 0.1}, headers=auth)
        assert answer.json() == {"model": "topics", "stage": "test", "rate": 0.1}
        [stage] = httpx.get(f"{served.base}/_/api/models/topics", headers=auth).json()["stages"]
        assert stage["capture"] == 0.1
        assert httpx.put(url, json={"rate": 0}, headers=auth).json()["rate"] == 0.0
    finally:
        pool.stop_all()


def test_capture_commands_refuse_what_they_cannot_do_and_say_how(
    tmp_path: Path, topics_bundle: Bundle
) -> None:
    state = tmp_path / "state"
    register(state, topics_bundle)
    runner = CliRunner()
    wrong_rate = runner.invoke(
        app, ["capture", "set", "topics", "10", "--stage", "test", "--state-dir", str(state)]
    )
    assert wrong_rate.exit_code == 1
    assert "10%" in wrong_rate.output
    no_stage = runner.invoke(
        app, ["capture", "set", "topics", "10%", "--stage", "prod", "--state-dir", str(state)]
    )
    assert no_stage.exit_code == 1
    assert "Its stages: test" in no_stage.output
    nothing = runner.invoke(app, ["capture", "pull", "topics", "--state-dir", str(state)])
    assert nothing.exit_code == 0
    assert "capture set topics 10%" in nothing.output
    for command in ("set", "pull", "show"):
        assert "Example" in runner.invoke(app, ["capture", command, "--help"]).output


def test_serve_capture_sets_the_rate_of_the_stages_it_serves(tmp_path: Path, topics_bundle: Bundle) -> None:
    state = tmp_path / "state"
    register(state, topics_bundle)
    pool = ServerPool()
    try:
        served = pool.start(state, "--capture", "10%")
        response = served.post("/test/topics/predict", ORBIT)
        assert response.status_code == 200
        store = Store(state)
        assert capture_rates(store) == {("topics", "test"): 0.1}
        store.close()
    finally:
        pool.stop_all()


def test_an_old_state_directory_gets_the_captures_table_on_open(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Store(state).close()
    with sqlite3.connect(state / "state.db") as db:
        db.execute("DROP TABLE captures")  # as a state directory made before capture
    store = Store(state)
    set_capture_rate(store, "topics", "test", 0.5)
    assert capture_rates(store) == {("topics", "test"): 0.5}
    store.close()


def test_labels_sent_later_are_scored_per_version_by_the_request_id_callers_got(
    tmp_path: Path, topics_bundle: Bundle
) -> None:
    # GIVEN a served model at 100 % capture, asked about four posts
    state = tmp_path / "state"
    register(state, topics_bundle)
    other = Store(state)
    set_capture_rate(other, "topics", "test", 1.0)
    other.close()
    posts = [
        ('["the rocket reached orbit"]', "space"),
        ('["a prayer in church"]', "religion"),
        ('["the shuttle and the moon"]', "space"),
        ('["god and the sermon"]', "space"),  # the caller later says the model got this one wrong
    ]

    async def scenario(gateway: Gateway) -> list[str]:
        ids = []
        for body, _ in posts:
            response = await gateway.handle(predict("/test/topics/predict", body))
            assert response.status == 200
            ids.append(response.headers["x-amzn-RequestId"])
        gateway.housekeeping()
        return ids

    ids = run_gateway(state, GatewaySettings(api_key_required=False), scenario)
    # WHEN their labels arrive, three from a file and one more through the admin API's route
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "request_id,label\n" + "".join(f"{i},{t}\n" for i, (_, t) in zip(ids[:3], posts, strict=False))
    )
    runner = CliRunner()
    added = runner.invoke(
        app, ["feedback", "topics", "--file", str(labels), "--state-dir", str(state), "--json"]
    )
    assert added.exit_code == 0, added.stdout + added.stderr
    assert json.loads(added.stdout)["added"] == 3

    async def more(gateway: Gateway) -> dict[str, Any]:
        from lambdaserve.console.admin_api import create_admin_app

        transport = httpx.ASGITransport(app=create_admin_app(gateway, "t0ken"))
        auth = {"Authorization": "Bearer t0ken"}
        async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=auth) as admin:
            sent = await admin.post(
                "/_/api/models/topics/feedback",
                json={"labels": [{"requestId": ids[3], "label": posts[3][1]}]},
            )
            assert sent.json() == {"model": "topics", "added": 1}
            wrong = await admin.post("/_/api/models/topics/feedback", json={"labels": "x"})
            assert wrong.status_code == 400
            report: dict[str, Any] = (await admin.get("/_/api/models/topics/quality")).json()
        return report

    report = run_gateway(state, GatewaySettings(api_key_required=False), more)
    # THEN all four are joined to their captured predictions, and three of four were right
    assert (report["metric"], report["matched"], report["unmatched"]) == ("accuracy", 4, 0)
    assert report["versions"] == {"1": {"labelled": 4, "value": 0.75}}
    shown = runner.invoke(app, ["feedback", "topics", "--state-dir", str(state)])
    assert shown.exit_code == 0, shown.stderr
    assert "75.0%" in shown.stdout
