"""The web console in a real browser, as a user goes through it (issue 5).

One ``lambdaserve serve`` with nothing registered, one signed-in browser page; the tests run
in the order a user works: sign in, upload the newsgroups model and try it, trust a flagged
pickle, call the model from Python with the key the page showed, publish and promote a
second version, put a key on a plan with a quota of 3, watch the charts (and a load test
the page draws), and look at it all
on a phone in dark mode.
Each page is saved to ``test-output/console/``; every page must load without a script error
or a Content-Security-Policy violation.
"""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import numpy as np
import pytest
from gateway_support import Served, ServerPool, wait_until
from playwright.sync_api import Browser, Page, expect
from sklearn.linear_model import LinearRegression

from lambdaserve.monitoring.capture import read_records

SPACE_POST = '["The rocket reached orbit and the crew could see the moon"]'
shown: dict[str, Any] = {}  # what the pages showed, for the tests that follow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pool = ServerPool()
    try:
        yield pool.start(tmp_path_factory.mktemp("console-browser") / "state")
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    return []


@pytest.fixture(scope="module")
def page(chromium: Browser, served: Served, page_errors: list[str]) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, base_url=served.base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.base)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    opened.on("console", lambda m: page_errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: page_errors.append(str(e)))
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(autouse=True)
def no_page_errors(page_errors: list[str]) -> Iterator[None]:
    yield
    logged = list(page_errors)
    page_errors.clear()  # one test's errors fail that test only
    assert logged == [], "the console's pages logged errors"


@pytest.fixture(scope="module")
def news_v2(newsgroups_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The newsgroups model written again with another protocol: same answers, new content."""
    with newsgroups_model.open("rb") as f:
        model = cloudpickle.load(f)
    path = tmp_path_factory.mktemp("news-v2") / "news-v2.pickle"
    with path.open("wb") as f:
        cloudpickle.dump(model, f, protocol=4)
    return path


@pytest.fixture(scope="module")
def flagged_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working regressor that carries a reference to os.getcwd: the scan flags it."""
    model = LinearRegression().fit(np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 4.0, 6.0]))
    model.helper = os.getcwd
    path = tmp_path_factory.mktemp("flagged") / "flagged.pickle"
    path.write_bytes(pickle.dumps(model))
    return path


def shoot(page: Page, directory: Path, name: str) -> None:
    """A full-page picture as a reader should see it: from the top, without passing toasts."""
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0); document.getElementById('toasts')?.replaceChildren()")
    page.screenshot(path=str(directory / f"console-{name}.png"), full_page=True)


def drop_file(page: Page, path: Path) -> None:
    """Drop a file from disk on the upload zone, as a user dragging it from their desktop."""
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name));
            document.getElementById("dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )


def test_signing_in_with_the_admin_token_opens_the_console(
    page: Page, served: Served, screenshots: Path, page_errors: list[str]
) -> None:
    # GIVEN the server's address: / leads to the sign-in form
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(page, screenshots, "signin")
    # WHEN a wrong token is given, THEN the form says so
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator(".alert.error")).to_contain_text("not this server's admin token")
    # (the browser logs the refused sign-in's 401 as a failed load: expected here, nowhere else)
    assert [e for e in page_errors if "status of 401" not in e] == []
    page_errors.clear()
    # WHEN the token serve printed is given, THEN the console opens, with nothing served yet
    page.fill("#token", served.admin_token)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{served.base}/_/models")
    expect(page.get_by_role("heading", name="No models yet")).to_be_visible()


def test_uploading_the_newsgroups_model_gives_an_endpoint_that_answers_try_it(
    page: Page, served: Served, newsgroups_model: Path, screenshots: Path
) -> None:
    page.goto("/_/upload")
    # A dropped file that is not a model is refused on the spot
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["hello"], "notes.txt"));
            document.getElementById("dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }"""
    )
    expect(page.locator("#form-error")).to_contain_text("notes.txt is not a model file")
    # GIVEN the 10 MB newsgroups model chosen with the keyboard alone (Tab to the drop zone,
    # Space opens the file chooser), a name and a sample
    page.goto("/_/upload")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    else:
        raise AssertionError("Tab never reaches the file chooser")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(newsgroups_model))
    expect(page.locator("#dropzone-title")).to_contain_text("news.pickle")
    page.fill("#model-name", "news")
    page.fill("#sample", '["the space shuttle launch"]')
    # WHEN it is uploaded, THEN the page shows progress, then the report, then the endpoint
    page.click("#upload-button")
    expect(page.locator("#progress-wrap")).to_be_visible()
    expect(page.locator("#endpoint")).to_be_visible(timeout=60_000)
    expect(page.locator("#report-badge")).to_have_text("passed")
    expect(page.locator("#report-facts")).to_contain_text("pickle")
    expect(page.locator("#report-facts")).to_contain_text("TopicClassifier")
    expect(page.locator("#report-requirements")).to_contain_text("scikit-learn")
    expect(page.locator("#sample-output")).to_contain_text('["sci.space"]')
    url = page.text_content("#endpoint-url")
    key = page.text_content("#key-value") or ""
    assert url == f"{served.base}/test/news/predict"
    assert len(key) == 40
    expect(page.locator("#curl-snippet")).to_contain_text(f"x-api-key: {key}")
    expect(page.locator("#python-snippet")).to_contain_text("requests.post(")
    # AND the key's copy button puts the key on the clipboard
    page.locator("#key-box .copy-line button").click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    # WHEN the try-it box sends a post about space, THEN the model answers its topic
    page.fill("#try-body", SPACE_POST)
    page.click("#try-button")
    expect(page.locator("#try-status")).to_have_text("200 OK")
    expect(page.locator("#try-response")).to_contain_text("sci.space")
    expect(page.locator("#try-latency")).to_contain_text(" ms")
    shoot(page, screenshots, "upload")
    # AND Explain draws the post with its words tinted by their LIME weight, and the weights
    page.click("#explain-button")
    expect(page.locator("#try-status")).to_have_text("200 OK", timeout=30_000)
    expect(page.locator("#try-explanation")).to_be_visible()
    expect(page.locator("#try-explanation mark.for").first).to_be_visible()
    expect(page.locator("#try-explanation table.weights tr")).to_have_count(6)
    shoot(page, screenshots, "explain")
    shown.update(url=url, key=key)


def test_the_same_file_again_makes_no_second_key_and_try_it_asks_for_the_key(
    page: Page, newsgroups_model: Path
) -> None:
    # GIVEN the model just published, uploaded again with "Create an API key" left checked
    page.goto("/_/upload")
    page.set_input_files("#file-input", str(newsgroups_model))
    page.fill("#model-name", "news")
    page.click("#upload-button")
    # THEN no key is made: the page names the one made before, and the lines use $KEY
    expect(page.locator("#key-note")).to_contain_text("no key was made", timeout=60_000)
    expect(page.locator("#key-note")).to_contain_text(shown["key"][:6])
    expect(page.locator("#curl-snippet")).to_contain_text('-H "x-api-key: $KEY"')
    expect(page.locator("#python-snippet")).to_contain_text('os.environ["KEY"]')
    # AND try-it works once the key is typed in
    page.fill("#try-key", shown["key"])
    page.fill("#try-body", SPACE_POST)
    page.click("#try-button")
    expect(page.locator("#try-status")).to_have_text("200 OK")


def test_a_flagged_pickle_is_published_only_after_the_user_trusts_it(
    page: Page, flagged_model: Path, screenshots: Path, page_errors: list[str]
) -> None:
    # GIVEN a model file whose scan flags a reference to the os module, dropped on the page
    # (the newsgroups upload above used the file picker: both ways are covered)
    page.goto("/_/upload")
    drop_file(page, flagged_model)
    expect(page.locator("#dropzone-title")).to_contain_text(flagged_model.name)
    page.fill("#sample", "[[4.0]]")
    page.click("#upload-button")
    # THEN the report names the flagged global and asks for trust before loading anything
    expect(page.locator("#report-badge")).to_have_text("needs your trust", timeout=60_000)
    expect(page.locator("#flagged-list")).to_contain_text("getcwd")
    expect(page.locator("#endpoint")).to_be_hidden()
    expect(page.locator("#trust-button")).to_be_disabled()
    # (the browser logs the refusal's 422 as a failed load: expected here)
    assert [e for e in page_errors if "status of 422" not in e] == []
    page_errors.clear()
    shoot(page, screenshots, "upload-trust")
    # WHEN the user says they trust it, THEN the same upload is published and served
    page.check("#trust-check")
    page.click("#trust-button")
    expect(page.locator("#endpoint-badge")).to_have_text("serving version 1", timeout=60_000)
    expect(page.locator("#report-badge")).to_have_text("passed")
    expect(page.locator("#endpoint-url")).to_contain_text("/test/flagged/predict")


def test_the_key_the_page_showed_works_from_python() -> None:
    answer = httpx.post(shown["url"], headers={"x-api-key": shown["key"]}, content=SPACE_POST, timeout=30)
    assert (answer.status_code, answer.json()) == (200, ["sci.space"])
    assert answer.headers["x-lambdaserve-model-version"] == "1"


def test_promoting_a_second_version_moves_the_stage(
    page: Page, served: Served, news_v2: Path, screenshots: Path
) -> None:
    # GIVEN a second version uploaded without moving the stage
    page.goto("/_/upload")
    page.set_input_files("#file-input", str(news_v2))
    page.fill("#model-name", "news")
    expect(page.locator("#name-note")).to_contain_text("A model named news exists")
    page.uncheck("#make-key")
    page.click("#upload-button")
    expect(page.locator("#progress-text")).to_contain_text(" s")  # the check's elapsed time
    expect(page.locator("#endpoint-badge")).to_have_text("version 2 published; test serves 1", timeout=60_000)
    # AND the version no stage serves can be tried at once, through the Lambda Invoke API
    expect(page.locator("#try-direct")).to_contain_text("tries version 2 directly")
    page.fill("#try-body", SPACE_POST)
    page.click("#try-button")
    expect(page.locator("#try-status")).to_have_text("200")
    expect(page.locator("#try-response")).to_contain_text("sci.space")
    # AND the snippets have copy buttons
    expect(page.locator("#endpoint h3 button")).to_have_count(2)
    # WHEN version 2 is promoted to stage test on the models page, and the dialog confirmed
    page.goto("/_/models")
    card = page.locator('.model-card[data-model="news"]')
    expect(card.locator('tr[data-stage="test"] .stage-version')).to_have_text("v1")
    card.get_by_label("version").select_option("2")
    card.get_by_role("button", name="Promote").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("It will serve version 2 alone.")
    dialog.get_by_role("button", name="Promote").click()
    # THEN the stage shows version 2, and once version 2 has run INIT (in the background, a
    # second or two) requests get its answers; until then version 1 answers them
    expect(card.locator('tr[data-stage="test"] .stage-version')).to_have_text("v2")
    expect(card.locator("table.versions tbody tr")).to_have_count(2)
    answers: list[tuple[int, str]] = []

    def answered_by_2() -> bool:
        answer = httpx.post(shown["url"], headers={"x-api-key": shown["key"]}, content=SPACE_POST, timeout=30)
        answers.append((answer.status_code, answer.headers["x-lambdaserve-model-version"]))
        return answers[-1] == (200, "2")

    wait_until(answered_by_2, 30.0, interval_s=0.1)
    assert set(answers) <= {(200, "1"), (200, "2")}
    # AND a rollback, confirmed, brings version 1 back; then version 2 goes in as a 10% canary
    card.locator('tr[data-stage="test"]').get_by_role("button", name="Roll back").click()
    expect(dialog).to_contain_text("goes back from version 2 to version 1")
    dialog.get_by_role("button", name="Roll back").click()
    expect(card.locator('tr[data-stage="test"] .stage-version')).to_have_text("v1")
    card.get_by_label("version").select_option("2")
    card.get_by_role("button", name="Start canary").click()
    expect(dialog).to_contain_text("keeps version 1 and sends 10% of its requests to version 2")
    dialog.get_by_role("button", name="Start canary").click()
    expect(card.locator('tr[data-stage="test"]')).to_contain_text("v2 · 10%")
    shoot(page, screenshots, "models")
    # AND rolling back a stage that its last change created says that it, and its endpoint, go
    card.get_by_label("version").select_option("2")
    card.get_by_label("stage", exact=True).fill("prod")
    card.get_by_role("button", name="Promote").click()
    dialog.get_by_role("button", name="Promote").click()
    prod = card.locator('tr[data-stage="prod"]')
    expect(prod.locator(".stage-version")).to_have_text("v2")
    prod.get_by_role("button", name="Roll back").click()
    expect(dialog).to_contain_text("rolling back removes it")
    expect(dialog).to_contain_text("POST /prod/news/predict, then answers 403")
    dialog.get_by_role("button", name="Remove the stage").click()
    expect(prod).to_have_count(0)


def test_a_key_on_a_plan_with_quota_3_is_refused_on_the_fourth_call(
    page: Page, served: Served, screenshots: Path
) -> None:
    # GIVEN a plan "trial" with a quota of 3 a day, made on the keys page, and a key on it
    page.goto("/_/keys")
    page.fill("#plan-name", "trial")
    page.fill("#plan-quota", "3")
    page.select_option("#plan-period", "DAY")
    page.get_by_role("button", name="Create plan").click()
    expect(page.locator('#plans-table tr[data-plan="trial"]')).to_contain_text("3 per day")
    page.fill("#key-name", "trial-key")
    page.select_option("#key-plan", "trial")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_be_visible()
    key = page.text_content("#new-key-value") or ""
    # WHEN it is called four times
    answers = [
        httpx.post(shown["url"], headers={"x-api-key": key}, content=SPACE_POST, timeout=30) for _ in range(4)
    ]
    # THEN the fourth is refused as API Gateway refuses it, and the page shows the quota used up
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json() == {"message": "Limit Exceeded"}
    page.reload()
    expect(page.locator('#keys-table tr[data-name="trial-key"] .usage-text')).to_have_text("3 / 3")
    shoot(page, screenshots, "keys")


def test_a_plan_made_by_keyboard_on_another_stage_gives_keys_that_are_refused_here(
    page: Page, served: Served
) -> None:
    # GIVEN the keys page, whose plan form offers the served stage
    page.goto("/_/keys")
    expect(page.locator("#plan-stages")).to_have_value("test")
    # WHEN a plan on prod only is made with the keyboard alone, and a key on it
    page.focus("#plan-name")
    page.keyboard.type("partners")
    for _ in range(5):  # rate, burst, quota, period, stages
        page.keyboard.press("Tab")
    page.keyboard.press("Control+a")
    page.keyboard.type("prod")
    page.keyboard.press("Enter")
    expect(page.locator('#plans-table tr[data-plan="partners"]')).to_contain_text("prod")
    page.fill("#key-name", "partner-key")
    page.select_option("#key-plan", "partners")
    page.keyboard.press("Enter")
    expect(page.locator("#new-key")).to_contain_text("partner-key")
    key = page.text_content("#new-key-value") or ""
    # THEN the key is refused on the test stage, as API Gateway refuses a key whose plan
    # is not attached to the stage
    answer = httpx.post(shown["url"], headers={"x-api-key": key}, content=SPACE_POST, timeout=30)
    assert "/test/" in shown["url"]
    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})


def test_the_monitoring_charts_show_the_traffic(page: Page, served: Served, screenshots: Path) -> None:
    # GIVEN the calls made so far (try-it, Python, the quota's calls) and a few more, one bad
    for body in (SPACE_POST, SPACE_POST, "not json"):
        httpx.post(shown["url"], headers={"x-api-key": shown["key"]}, content=body, timeout=30)
    # WHEN the monitoring page is opened for news/test
    page.goto("/_/monitoring?model=news&stage=test")
    expect(page.locator("#pick-route")).to_have_value("news/test")
    # THEN within a few samples its charts count the requests, and show errors and environments
    wait_until(lambda: int(page.get_attribute("#stat-traffic", "data-requests") or 0) >= 9, 15.0, 0.5)
    for signal in ("traffic", "latency", "errors", "saturation"):
        expect(page.locator(f"#chart-{signal} canvas")).to_have_count(1)
    expect(page.locator("#stat-latency")).to_contain_text("in window")
    # AND the axes say what they count, and an INIT's duration reads in seconds
    expect(page.locator("#chart-latency")).to_have_attribute("data-axis", "latency, ms")
    expect(page.locator("#cold-table tbody")).to_contain_text(" s")
    # AND the cost card prices a month from the durations measured here, with its chart
    page.fill("#cost-requests", "3M")
    page.keyboard.press("Enter")
    expect(page.locator("#cost-table")).to_contain_text("API Gateway REST API")
    expect(page.locator("#cost-table")).to_contain_text("10.50")
    expect(page.locator("#chart-cost canvas")).to_have_count(1)
    expect(page.locator("#cost-even")).to_contain_text("costs less above")
    expect(page.locator("#stat-saturation")).to_contain_text("busy")
    expect(page.locator("#cold-table tbody")).to_contain_text("init")
    expect(page.locator("#log-lines")).to_contain_text("REPORT RequestId")
    # AND the Load tests card says how to record one, and draws one once it is recorded
    expect(page.locator("#loadtest-empty")).to_be_visible()
    where = ["--base", served.base, "--state-dir", str(served.state_dir), "--api-key", shown["key"]]
    subprocess.run(
        [sys.executable, "-m", "lambdaserve", "loadtest", "news", "--rate", "5", "-d", "2", "--warmup", "0",
         *where], check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    page.reload()
    expect(page.locator("#loadtest-table tbody tr")).to_have_count(1)
    expect(page.locator("#loadtest-table tbody")).to_contain_text("5 req/s due")
    expect(page.locator("#chart-loadtest canvas")).to_have_count(1)
    expect(page.locator("#chart-loadtest")).to_have_attribute("data-axis", "latency, ms")
    expect(page.locator("#loadtest-notes")).to_contain_text("10 requests")

    # AND with capture turned on from the models page, the Model card shows what was asked
    page.goto("/_/models")
    page.locator('.model-card[data-model="news"]').get_by_label("capture of test").select_option("1")
    wait_until(lambda: _capture_rate(served, "news") == 1.0, 10.0, 0.2)

    def captured() -> bool:  # the server follows the store within a second or two: ask until it has
        httpx.post(shown["url"], headers={"x-api-key": shown["key"]}, content=SPACE_POST, timeout=30)
        return any(True for _ in read_records(served.state_dir, "news"))

    wait_until(captured, 20.0, 0.5)
    page.goto("/_/monitoring?model=news&stage=test")
    expect(page.locator("#capture-table tbody tr").first).to_contain_text("sci.space", timeout=15_000)
    expect(page.locator("#chart-classes canvas")).to_have_count(1)

    def errors() -> float:  # the largest share of 4xx answers in a sample
        return float(
            page.evaluate(
                """async () => {
                    const answer = await fetch("/_/api/series?model=news&stage=test&minutes=10");
                    const series = (await answer.json()).series[0];
                    return Math.max(...series.errors_4xx);
                }"""
            )
        )

    # The count above may include earlier calls: the bad one shows once its sample is taken.
    wait_until(lambda: errors() > 0, 15.0, 0.5)
    shoot(page, screenshots, "monitoring")


def test_the_console_fits_a_phone_and_follows_dark_mode(
    chromium: Browser, served: Served, screenshots: Path
) -> None:
    context = chromium.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        color_scheme="dark",
        base_url=served.base,
    )
    try:
        phone = context.new_page()
        phone.goto("/_/signin")
        phone.fill("#token", served.admin_token)
        phone.click("button[type=submit]")
        expect(phone).to_have_url(f"{served.base}/_/models")
        background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
        assert _is_dark(background), background
        for name in ("models", "upload", "keys", "monitoring"):
            phone.goto(f"/_/{name}")
            phone.wait_for_load_state("networkidle")
            # Nothing sticks out sideways: the page reads without horizontal scrolling
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} is {overflow} px wider than the phone"
            # Every page's link and every table's button is on screen, not in a sideways scroll
            offscreen = phone.evaluate(
                """() => [...document.querySelectorAll(".nav a, table button")]
                    .filter((e) => { const r = e.getBoundingClientRect();
                                     return r.right > window.innerWidth + 1 || r.left < -1; })
                    .map((e) => e.textContent)"""
            )
            assert offscreen == [], f"{name}: {offscreen} off screen"
            shoot(phone, screenshots, f"{name}-phone-dark")
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_page_has_a_serious_or_critical_accessibility_finding(
    chromium: Browser, served: Served, axe_script: Path, scheme: str
) -> None:
    # GIVEN every page of the console, holding what the tests before made (models, keys, a
    # report, traffic), in light and in dark mode
    context = chromium.new_context(base_url=served.base, color_scheme=scheme, bypass_csp=True)
    found: dict[str, list[Any]] = {}
    try:
        page = context.new_page()
        for path in ("signin", "upload", "models", "keys", "monitoring?model=news&stage=test"):
            if path != "signin" and "signin" in page.url:
                page.fill("#token", served.admin_token)
                page.click("button[type=submit]")
                expect(page).to_have_url(f"{served.base}/_/models")
            page.goto(f"/_/{path}")
            page.wait_for_load_state("networkidle")
            # WHEN axe-core checks it (the rules of WCAG 2.1 A and AA, and its best practices)
            page.add_script_tag(path=str(axe_script))
            found[path] = page.evaluate(
                """async () => (await axe.run()).violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => [v.id, v.impact, v.nodes.slice(0, 3).map((n) => n.target.join(" "))])"""
            )
    finally:
        context.close()
    # THEN nothing serious or critical is found on any of them
    assert {path: issues for path, issues in found.items() if issues} == {}


def _is_dark(css_color: str) -> bool:
    red, green, blue = (int(part) for part in css_color[css_color.index("(") + 1 : -1].split(",")[:3])
    return (red + green + blue) / 3 < 64


def _capture_rate(served: Served, model: str) -> float:
    from lambdaserve.store import Store
    from lambdaserve.store.captures import capture_rates

    store = Store(served.state_dir)
    try:
        return float(capture_rates(store).get((model, "test"), 0.0))
    finally:
        store.close()
