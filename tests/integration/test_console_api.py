"""The console's side of the admin API over real sockets: sign-in and its cookie, CSRF,
uploads (limits, bad files, flagged pickles), publishing to a live endpoint, the series.

One server per module, started with nothing registered and a 1 MB upload limit, as a user
starts ``lambdaserve serve`` to upload a first model in the console.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_support import Served, ServerPool, wait_until
from sklearn.linear_model import LinearRegression

ROCKET = '["the rocket reached orbit"]'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pool = ServerPool()
    try:
        yield pool.start(tmp_path_factory.mktemp("console") / "state", "--max-upload-mb", "1")
    finally:
        pool.stop_all()


@pytest.fixture
def admin(served: Served) -> Iterator[httpx.Client]:
    """A script's client: the admin token as a bearer token."""
    headers = {"Authorization": f"Bearer {served.admin_token}"}
    with httpx.Client(base_url=served.base, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
def browser(served: Served) -> Iterator[httpx.Client]:
    """A browser's client: signed in, holding the session cookie and nothing else."""
    with httpx.Client(base_url=served.base, timeout=60) as client:
        answer = client.post("/_/signin", data={"token": served.admin_token, "next": "/_/keys"})
        assert answer.status_code == 303
        yield client


def csrf_of(client: httpx.Client) -> str:
    token: str = client.get("/_/api/session").json()["csrf_token"]
    return token


def upload(client: httpx.Client, content: bytes, filename: str, **headers: str) -> httpx.Response:
    return client.post("/_/api/uploads", params={"filename": filename}, content=content, headers=headers)


def publish(client: httpx.Client, model: str, **options: Any) -> httpx.Response:
    return client.post(f"/_/api/models/{model}/versions", json=options)


# -- who may come in ------------------------------------------------------------------------
def test_without_the_token_or_a_session_nothing_is_told_and_pages_ask_to_sign_in(served: Served) -> None:
    with httpx.Client(base_url=served.base) as anonymous:
        assert anonymous.get("/_/api/models").status_code == 401
        wrong = anonymous.get("/_/api/models", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        assert upload(anonymous, b"x", "m.pickle").status_code == 401
        page = anonymous.get("/_/upload")
        assert (page.status_code, page.headers["location"]) == (303, "/_/signin?next=/_/upload")
        # The console's front door is the sign-in form; its stylesheet is public, its data not.
        front = anonymous.get("/_/")
        assert front.status_code == 200
        assert 'name="token"' in front.text
        assert anonymous.get("/_/static/console.css").status_code == 200
        assert anonymous.get("/_/metrics").status_code == 401


def test_signing_in_sets_an_httponly_samesite_strict_cookie_that_is_not_the_token(served: Served) -> None:
    with httpx.Client(base_url=served.base) as client:
        refused = client.post("/_/signin", data={"token": "guess", "next": "/_/models"})
        assert refused.status_code == 401
        assert "That is not this server" in refused.text
        assert "set-cookie" not in refused.headers
        # WHEN the right token is given
        answer = client.post("/_/signin", data={"token": served.admin_token, "next": "/_/keys"})
        # THEN the browser goes where it was heading, holding a session cookie with the right flags
        assert (answer.status_code, answer.headers["location"]) == (303, "/_/keys")
        cookie = answer.headers["set-cookie"]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "max-age"} <= flags
        assert "samesite=strict" in cookie.lower()
        value = cookie.split(";")[0].split("=", 1)[1]
        assert len(value) >= 40
        assert served.admin_token not in value
        # AND the cookie opens the pages and the API
        assert client.get("/_/api/models").status_code == 200
        page = client.get("/_/keys")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_an_offsite_next_page_is_never_followed_after_signing_in(served: Served) -> None:
    with httpx.Client(base_url=served.base) as client:
        for target in ("https://evil.example/", "//evil.example/", "/_/\\evil"):
            answer = client.post("/_/signin", data={"token": served.admin_token, "next": target})
            assert answer.headers["location"] == "/_/models"


def test_a_state_changing_request_by_cookie_needs_the_sessions_csrf_token(
    browser: httpx.Client, admin: httpx.Client
) -> None:
    plan = {"name": "csrf-plan", "quota": "5/DAY"}
    # GIVEN a signed-in browser: WHEN it changes state without the token, or with another one
    assert browser.post("/_/api/plans", json=plan).status_code == 403
    wrong = browser.post("/_/api/plans", json=plan, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert "x-csrf-token" in wrong.json()["message"]
    assert upload(browser, b"data", "m.pickle").status_code == 403
    # THEN nothing was made; with its own token it works, and a script's bearer token needs none
    assert "csrf-plan" not in [p["name"] for p in admin.get("/_/api/plans").json()["plans"]]
    made = browser.post("/_/api/plans", json=plan, headers={"X-CSRF-Token": csrf_of(browser)})
    assert made.status_code == 201
    assert admin.post("/_/api/plans", json={"name": "script-plan"}).status_code == 201


def test_signing_out_ends_the_session_and_needs_its_csrf_token(served: Served) -> None:
    with httpx.Client(base_url=served.base) as client:
        client.post("/_/signin", data={"token": served.admin_token})
        session = dict(client.cookies)
        assert client.post("/_/signout", data={"csrf": "forged"}).status_code == 403
        assert client.get("/_/api/models").status_code == 200  # still signed in
        out = client.post("/_/signout", data={"csrf": csrf_of(client)})
        assert (out.status_code, out.headers["location"]) == (303, "/_/signin")
    with httpx.Client(base_url=served.base, cookies=session) as replayed:
        assert replayed.get("/_/api/models").status_code == 401


# -- uploads --------------------------------------------------------------------------------
def test_a_file_over_the_upload_limit_is_refused_with_413_and_leaves_nothing(
    admin: httpx.Client, served: Served
) -> None:
    big = b"\0" * (2 * 1024 * 1024)
    declared = upload(admin, big, "big.pickle")
    assert declared.status_code == 413
    assert "upload limit of 1 MB" in declared.json()["message"]
    assert "--max-upload-mb" in declared.json()["hint"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        for _ in range(32):
            yield b"\0" * (64 * 1024)

    streamed = admin.post("/_/api/uploads", params={"filename": "big.pickle"}, content=chunks())
    assert streamed.status_code == 413
    assert not any(p.name == "big.pickle" for p in (served.state_dir / "uploads").rglob("*"))


def test_bad_files_get_a_clear_message_never_a_traceback(admin: httpx.Client) -> None:
    wrong_suffix = upload(admin, b"hello", "notes.txt")
    assert wrong_suffix.status_code == 400
    assert "extension" in wrong_suffix.json()["message"]
    assert ".pickle" in wrong_suffix.json()["hint"]
    empty = upload(admin, b"", "model.pickle")
    assert (empty.status_code, empty.json()["message"]) == (400, "model.pickle is empty.")
    # A file named like a model that is not one: received, then refused by the check
    garbage = upload(admin, b"this is not a pickle at all", "model.pkl")
    assert garbage.status_code == 201
    refused = publish(admin, "garbage", upload=garbage.json()["upload"])
    assert refused.status_code == 422
    assert "Could not read model.pkl" in refused.json()["message"]
    assert "Traceback" not in refused.text
    assert publish(admin, "garbage", upload="0" * 32).status_code == 404
    assert publish(admin, "Bad Name", upload=garbage.json()["upload"]).status_code == 400


def test_the_users_file_name_never_becomes_a_path(admin: httpx.Client, served: Served) -> None:
    answer = upload(admin, b"\x80\x04K\x01.", "../../outside/My Model (v2).PKL")
    assert answer.status_code == 201
    assert answer.json()["filename"] == "My-Model-v2.pkl"
    directory = served.state_dir / "uploads" / answer.json()["upload"]
    assert [p.name for p in directory.iterdir()] == ["My-Model-v2.pkl"]
    assert not (served.state_dir.parent / "outside").exists()


def test_a_pickle_with_flagged_globals_is_published_only_when_trusted(
    admin: httpx.Client, tmp_path: Path
) -> None:
    # GIVEN a working model that carries a reference to os.getcwd: the scan flags the os module
    model = LinearRegression().fit(np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 4.0, 6.0]))
    model.helper = os.getcwd
    sent = upload(admin, pickle.dumps(model), "flagged.pickle").json()["upload"]
    # WHEN it is published without trust, THEN nothing is loaded and the report says why
    refused = publish(admin, "flagged", upload=sent, sample=[[4.0]])
    assert refused.status_code == 422
    body = refused.json()
    assert body["needs_trust"] is True
    assert [f["what"] for f in body["report"]["flagged"]] == [f"{os.getcwd.__module__}.getcwd"]
    assert admin.get("/_/api/models/flagged").status_code == 404
    # AND the same upload, trusted, is published without being sent again
    trusted = publish(admin, "flagged", upload=sent, sample=[[4.0]], trust=True)
    assert trusted.status_code == 201
    assert trusted.json()["report"]["trusted"] is True
    assert trusted.json()["report"]["sample"]["predict"] == [pytest.approx(8.0)]


# -- to a live endpoint ---------------------------------------------------------------------
def test_publishing_an_upload_serves_it_at_once_with_a_new_key(
    admin: httpx.Client, served: Served, text_model: Path
) -> None:
    sent = upload(admin, text_model.read_bytes(), "topics.pickle")
    assert sent.status_code == 201
    published = publish(
        admin, "topics", upload=sent.json()["upload"], sample=["a rocket launch"], key={"name": "topics"}
    )
    assert published.status_code == 201, published.text
    result = published.json()
    assert (result["version"]["version"], result["created"], result["serving"]) == (1, True, True)
    assert result["stage"]["stage"] == "test"
    assert result["report"]["format"] == "pickle"
    assert result["report"]["sample"]["predict"] == ["space"]
    assert "scikit-learn" in [r["name"] for r in result["report"]["requirements"]]
    assert result["endpoint"]["url"] == f"{served.base}/test/topics/predict"
    # THEN the endpoint answers with the new key, and the upload is gone from the state dir
    answer = served.post("/test/topics/predict", ROCKET, key=result["key"]["value"])
    assert (answer.status_code, answer.json()) == (200, ["space"])
    assert publish(admin, "topics", upload=sent.json()["upload"]).status_code == 404
    # AND the same content again publishes nothing new and moves no stage
    again = upload(admin, text_model.read_bytes(), "topics.pickle").json()["upload"]
    same = publish(admin, "topics", upload=again, key={"name": "topics"}).json()
    assert (same["version"]["version"], same["created"], same["stage_moved"]) == (1, False, False)
    # AND asks for no second key: the one made with it before is named, its value not shown
    assert same["key"]["reused"] is True
    assert (same["key"]["id"], same["key"]["value"]) == (result["key"]["id"], None)
    assert sum(k["name"] == "topics" for k in admin.get("/_/api/keys").json()["keys"]) == 1


def test_the_series_shows_traffic_errors_and_cold_starts(
    admin: httpx.Client, served: Served, text_model: Path
) -> None:
    # GIVEN a served model (published by the previous test, or now)
    if admin.get("/_/api/models/topics").status_code == 404:
        sent = upload(admin, text_model.read_bytes(), "topics.pickle").json()["upload"]
        assert publish(admin, "topics", upload=sent).status_code == 201
    key = admin.post("/_/api/keys", json={"name": "series"}).json()["value"]
    # WHEN it gets 6 good requests and 2 bad ones
    statuses = [served.post("/test/topics/predict", ROCKET, key=key).status_code for _ in range(6)]
    statuses += [served.post("/test/topics/predict", "not json", key=key).status_code for _ in range(2)]
    assert statuses == [200] * 6 + [400] * 2

    def sampled() -> dict[str, Any] | None:
        data = admin.get("/_/api/series", params={"model": "topics", "stage": "test", "minutes": 5}).json()
        series = data["series"][0] if data["series"] else None
        return data if series and sum(series["requests"]) >= 8 else None

    # THEN within a few samples the series counts them, their errors, and the cold start
    data = wait_until(sampled, 10.0, 0.5)
    series = data["series"][0]
    assert set(series) >= {"t", "rps", "p50", "p95", "p99", "errors_4xx", "errors_5xx", "busy", "total"}
    assert max(series["errors_4xx"]) > 0
    assert max(series["total"]) >= 1
    assert any(p is not None and p > 0 for p in series["p99"])
    assert any(c["model"] == "topics" and c["kind"] == "init" for c in data["cold_starts"])
    assert admin.get("/_/api/series", params={"minutes": "lots"}).status_code == 400


def test_the_cost_of_a_served_model_comes_from_the_durations_measured_here(
    admin: httpx.Client, served: Served, text_model: Path
) -> None:
    # GIVEN a served model that answered a few requests (their REPORT lines reach its log)
    if admin.get("/_/api/models/topics").status_code == 404:
        sent = upload(admin, text_model.read_bytes(), "topics.pickle").json()["upload"]
        assert publish(admin, "topics", upload=sent).status_code == 201
    key = admin.post("/_/api/keys", json={"name": "cost"}).json()["value"]
    assert {served.post("/test/topics/predict", ROCKET, key=key).status_code for _ in range(3)} == {200}

    # WHEN its cost for 3 million requests a month is asked for, once the log holds all 3
    # REPORT lines (the log book writes them within its half-second housekeeping)
    def priced() -> dict[str, Any] | None:
        answer = admin.get("/_/api/models/topics/cost", params={"requests": "3M"})
        if answer.status_code != 200 or answer.json()["measured"]["invocations"] < 3:
            return None
        body: dict[str, Any] = answer.json()
        return body

    cost = wait_until(priced, 10.0, 0.5)
    # THEN it is priced as lambdaserve cost prices it, with the curve for the break-even chart
    assert cost["lines"]["lambda_requests"] == pytest.approx(0.60)
    assert cost["lines"]["rest_api"] == pytest.approx(10.50)
    assert [p["requests"] for p in cost["curve"]][:2] == [10_000, 17_783]
    assert cost["curve"][0]["instance"] == pytest.approx(cost["break_even"]["usd_per_month"])
    # AND a volume that is not one is a 400 that says how to write it
    bad = admin.get("/_/api/models/topics/cost", params={"requests": "lots"})
    assert bad.status_code == 400
    assert "e.g." in bad.json()["hint"]


# -- plans, keys and stages -----------------------------------------------------------------
def test_plans_made_and_changed_by_the_admin_api_carry_their_stages(admin: httpx.Client) -> None:
    # GIVEN a plan made without stages, and one with
    served_stage = admin.post("/_/api/plans", json={"name": "api-trial"}).json()
    both = admin.post("/_/api/plans", json={"name": "api-both", "stages": ["test", "prod"], "quota": "5/DAY"})
    assert (served_stage["stages"], both.status_code, both.json()["stages"]) == (
        ["test"],
        201,
        ["test", "prod"],
    )
    # WHEN one is moved to prod and loses its quota, by PATCH
    changed = admin.patch("/_/api/plans/api-both", json={"stages": ["prod"], "quota": None})
    # THEN only those fields changed
    assert changed.status_code == 200, changed.text
    assert (changed.json()["stages"], changed.json()["quota_limit"]) == (["prod"], None)
    for bad, says in (({"stages": []}, "at least one stage"), ({"stages": "prod"}, "must be a list")):
        refused = admin.patch("/_/api/plans/api-both", json=bad)
        assert refused.status_code == 400
        assert says in refused.json()["message"]
    # AND a key made without a plan is in "default", attached to the served stage
    key = admin.post("/_/api/keys", json={"name": "no-plan"}).json()
    plans = {p["name"]: p for p in admin.get("/_/api/plans").json()["plans"]}
    assert key["plan_id"] == plans["default"]["id"]
    assert "test" in plans["default"]["stages"]


def test_publishing_with_a_key_on_a_plan_not_on_the_stage_is_refused_before_anything_is_published(
    admin: httpx.Client, text_model: Path
) -> None:
    admin.post("/_/api/plans", json={"name": "prod-partners", "stages": ["prod"]})
    sent = upload(admin, text_model.read_bytes(), "elsewhere.pickle").json()["upload"]
    refused = publish(
        admin, "elsewhere", upload=sent, stage="test", key={"name": "x", "plan": "prod-partners"}
    )
    assert refused.status_code == 400
    assert "not attached to stage 'test'" in refused.json()["message"]
    assert "plans update prod-partners --stage prod,test" in refused.json()["hint"]
    assert admin.get("/_/api/models/elsewhere").status_code == 404
