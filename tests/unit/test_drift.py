"""Drift with known answers: the reference's bins (runtime/distributions.py), PSI and the
chi-square test per window (monitoring/drift.py), the CLI's and the admin API's faces of it.

Captured records are made here with given times (no clock, no sleeps). The CLI and admin
route tests write them where the stand-in ``monitoring/capture.py`` reads them
(``STATE/captures/MODEL.jsonl``): when the real capture module replaces the stand-in, only
``write_captures`` changes.
"""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from lambdaserve.apigateway.gateway import Gateway
from lambdaserve.bundle.reference import read_rows
from lambdaserve.cli.app import app
from lambdaserve.console.admin_api import create_admin_app
from lambdaserve.monitoring.drift import (
    EPSILON,
    chi_square,
    compare_window,
    drift_report,
    psi,
    reading,
    split_windows,
)
from lambdaserve.runtime import distributions as dist
from lambdaserve.runtime.handler import PredictionService
from lambdaserve.runtime.models import EstimatorModel
from lambdaserve.store import Store

START = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)
FEATURES = ["age", "income", "score"]


def gaussian_rows(n: int, seed: int, shift: Sequence[float] = (0.0, 0.0, 0.0)) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.gauss(mu, 1.0) for mu in shift] for _ in range(n)]


def classify(rows: list[list[float]]) -> list[str]:
    """The 'model': the sign of the second feature."""
    return ["high" if row[1] > 0 else "low" for row in rows]


def records_of(
    instances: list[Any], predictions: list[Any], start: datetime = START, per_record: int = 10
) -> list[dict[str, Any]]:
    """Capture records of ``per_record`` instances each, one second apart, from ``start``."""
    found = []
    for n, i in enumerate(range(0, len(instances), per_record)):
        found.append(
            {
                "lambdaserveCapture": 1,
                "time": (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
                "requestId": f"r{n}",
                "version": "1",
                "stage": "prod",
                "route": "predict",
                "instances": instances[i : i + per_record],
                "predictions": predictions[i : i + per_record],
                "probabilities": None,
                "latencyMs": 1.0,
            }
        )
    return found


@pytest.fixture(scope="module")
def tabular_reference() -> dict[str, Any]:
    rows = gaussian_rows(5000, seed=1)
    return dist.summarize_drift(rows, classify(rows), FEATURES)


def by_name(window: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in window["features"]}


# -- known answers --------------------------------------------------------------------------


def test_a_mean_moved_by_one_sd_is_a_shift_on_that_feature_only(tabular_reference: dict[str, Any]) -> None:
    rows = gaussian_rows(2000, seed=2, shift=(1.0, 0.0, 0.0))
    window = compare_window(records_of(rows, classify(rows)), tabular_reference)
    features = by_name(window)
    assert features["age"]["psi"] > 0.25
    assert features["age"]["reading"] == "shift"
    assert features["income"]["psi"] < 0.1
    assert features["score"]["psi"] < 0.1
    assert window["predictions"]["psi"] < 0.1  # the model reads income only
    assert window["features"][0]["name"] == "age"  # the top drifting feature first
    assert window["readings"] == {"shift": 1, "moderate": 0, "stable": 2}
    assert features["age"]["p_value"] < 1e-6  # scipy is a dev dependency


def test_the_same_distribution_is_stable_everywhere(tabular_reference: dict[str, Any]) -> None:
    rows = gaussian_rows(2000, seed=3)
    window = compare_window(records_of(rows, classify(rows)), tabular_reference)
    assert all(f["psi"] < 0.1 and f["reading"] == "stable" for f in window["features"])
    assert window["predictions"]["psi"] < 0.1


def test_the_reference_has_decile_bins_and_class_shares(tabular_reference: dict[str, Any]) -> None:
    age = tabular_reference["features"][0]
    assert age["name"] == "age"
    assert age["type"] == "numeric"
    assert len(age["edges"]) == 9
    assert all(abs(p - 0.1) < 0.01 for p in age["proportions"])
    assert set(tabular_reference["predictions"]["shares"]) == {"high", "low"}
    assert tabular_reference["features_left_out"] == 0


def test_few_distinct_numbers_and_strings_are_categories() -> None:
    rows = [{"rooms": r % 4, "city": ["paris", "oslo"][r % 2], "area": r * 1.5} for r in range(100)]
    summary = dist.summarize_drift(rows, None)
    kinds = {f["name"]: f["type"] for f in summary["features"]}
    assert kinds == {"rooms": "categorical", "city": "categorical", "area": "numeric"}
    rooms = summary["features"][0]
    assert rooms["shares"] == {"0": 0.25, "1": 0.25, "2": 0.25, "3": 0.25}
    assert rooms["other"] == 0.0
    assert "predictions" not in summary


def test_features_beyond_the_cap_are_counted_not_kept() -> None:
    rows = [[float(i + j) for j in range(dist.MAX_FEATURES + 3)] for i in range(30)]
    summary = dist.summarize_drift(rows, None)
    assert len(summary["features"]) == dist.MAX_FEATURES
    assert summary["features_left_out"] == 3
    assert len(json.dumps(summary)) < 300_000


# -- PSI, empty bins, the test --------------------------------------------------------------


def test_an_empty_bin_counts_as_epsilon() -> None:
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert [reading(v) for v in (0.05, 0.1, 0.25, 0.26)] == ["stable", "moderate", "moderate", "shift"]


def test_a_category_the_reference_never_saw_falls_in_other_and_shifts() -> None:
    reference = dist.summarize_drift([{"city": "paris"}] * 50 + [{"city": "oslo"}] * 50, None)
    rows = [{"city": "paris"}] * 45 + [{"city": "oslo"}] * 45 + [{"city": "lima"}] * 10
    city = by_name(compare_window(records_of(rows, [None] * 100), reference))["city"]
    assert city["bins"] == ["paris", "oslo", "other"]
    assert city["reference"] == [0.5, 0.5, 0.0]
    assert city["current"] == [0.45, 0.45, 0.1]
    assert city["psi"] > 0.25
    assert math.isfinite(city["psi"])


def test_chi_square_leaves_out_bins_neither_side_has() -> None:
    statistic, degrees = chi_square([50, 50, 0], [50, 50, 0])
    assert (statistic, degrees) == (0.0, 1)
    statistic, degrees = chi_square([100, 0], [0, 100])
    assert statistic == pytest.approx(200.0)
    assert degrees == 1


def test_missing_values_have_their_own_bin(tabular_reference: dict[str, Any]) -> None:
    rows: list[Any] = [{"age": None, "income": 0.0, "score": 0.0}] * 20
    window = compare_window(records_of(rows, ["low"] * 20), tabular_reference)
    age = by_name(window)["age"]
    assert age["bins"][-1] == "missing"
    assert age["current"][-1] == 1.0
    assert age["reading"] == "shift"


# -- windows and the first-window baseline --------------------------------------------------


def test_records_are_split_by_utc_hour_and_day() -> None:
    times = [
        "2026-12-03T09:59:59.999Z",
        "2026-12-03T10:00:00.000Z",
        "2026-12-03T23:30:00Z",
        "2026-12-04T00:10:00Z",
    ]
    records = [{"time": t} for t in times]
    hours = split_windows(records, "hour")
    assert [(start.hour, len(members)) for start, members in hours] == [(9, 1), (10, 1), (23, 1), (0, 1)]
    days = split_windows(records, "day")
    assert [(start.day, len(members)) for start, members in days] == [(3, 3), (4, 1)]


def test_without_a_reference_each_window_is_compared_with_the_first() -> None:
    same = gaussian_rows(1000, seed=4)
    moved = gaussian_rows(1000, seed=5, shift=(0.0, 0.0, 1.0))
    records = records_of(same, classify(same)) + records_of(moved, classify(moved), START + timedelta(days=1))
    report = drift_report(records, None, window="day")
    assert report["baseline"] == "first window"
    assert "No reference" in report["notes"][0]
    first, second = report["windows"]
    assert first["baseline"] is True
    assert first["label"] == "2026-12-03"
    assert second["baseline"] is False
    features = by_name(second)
    assert features["x2"]["reading"] == "shift"
    assert features["x0"]["psi"] < 0.1
    assert second["predictions"]["psi"] < 0.1
    assert report["latest_records"][0]["time"] == records[-1]["time"]


# -- text -----------------------------------------------------------------------------------


def test_text_statistics_count_words_and_vocabulary_hits() -> None:
    lengths, hits, words = dist.text_statistics(["The rocket reached orbit", "a"], {"rocket", "orbit"})
    assert lengths == [4, 0]
    assert hits == [0.5, 1.0]
    assert words == ["the", "rocket", "reached", "orbit"]


def test_a_text_model_accepts_a_reference_and_summarizes_it_for_drift(text_model: Path) -> None:
    with text_model.open("rb") as f:
        service = PredictionService(EstimatorModel(pickle.load(f)), "1")
    texts = [
        "the rocket launch put a satellite in orbit",
        "a prayer from the bible for the congregation",
    ] * 15
    reference = service.summarize_reference(texts)["reference"]
    assert reference["input"] == "text"
    assert "features" not in reference  # no LIME statistics: text explanations need none
    drift = reference["drift"]
    assert [f["name"] for f in drift["features"]] == [
        dist.TEXT_LENGTH,
        dist.VOCABULARY_HIT_RATE,
        "top tokens",
    ]
    assert drift["predictions"]["shares"] == {"space": 0.5, "religion": 0.5}
    assert "rocket" in drift["vocabulary"]


def test_a_csv_of_one_text_column_reads_as_texts(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text('text\n"the rocket, in orbit"\na prayer\n')
    assert read_rows(path) == (["the rocket, in orbit", "a prayer"], 2)
    lines = tmp_path / "posts.jsonl"
    lines.write_text('"the rocket"\n"a prayer"\n')
    assert read_rows(lines) == (["the rocket", "a prayer"], 2)


# -- the CLI and the admin API --------------------------------------------------------------


def write_captures(state: Path, model: str, records: list[dict[str, Any]]) -> None:
    """Records where the log book keeps a served model's captures."""
    from lambdaserve.monitoring.capture import capture_path

    path = capture_path(state, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def state(tmp_path: Path, tabular_reference: dict[str, Any]) -> Path:
    """A state directory with model 'credit' version 1 (its reference as packaged) on stage prod."""
    root = tmp_path / "state"
    store = Store(root)
    model_file = tmp_path / "credit.pickle"
    model_file.write_bytes(b"not loaded by these tests")
    manifest = {
        "sha256": "0" * 64,
        "format": "pickle",
        "model_file": model_file.name,
        "reference": {"format": 1, "n_rows": 5000, "drift": tabular_reference},
    }
    store.add_version("credit", manifest, model_file)
    store.set_alias("credit", "prod", 1)
    store.close()
    return root


def recent_records(shift: Sequence[float]) -> list[dict[str, Any]]:
    rows = gaussian_rows(500, seed=6, shift=shift)
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    return records_of([dict(zip(FEATURES, r, strict=True)) for r in rows], classify(rows), start)


def test_the_cli_says_how_to_turn_capture_on_when_nothing_was_captured(state: Path) -> None:
    result = CliRunner().invoke(app, ["drift", "credit", "--stage", "prod", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "No captured request for credit on stage prod" in result.output
    assert "lambdaserve capture set credit --stage prod 10%" in result.output
    assert "serve --capture 10%" in result.output


def test_the_cli_prints_the_top_drifting_features_per_window(state: Path) -> None:
    write_captures(state, "credit", recent_records((0.0, 1.0, 0.0)))
    arguments = ["drift", "credit", "--stage", "prod", "--window", "hour", "--state-dir", str(state)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "compared with the reference of version 1 (5,000 rows)" in result.output
    assert "income" in result.output
    assert "shift" in result.output
    answer = CliRunner().invoke(app, [*arguments, "--json"])
    report = json.loads(answer.stdout)
    assert report["reference"] == {"version": 1, "n_rows": 5000, "input": "array"}
    assert report["windows"][-1]["features"][0]["name"] == "income"
    assert report["windows"][-1]["predictions"]["reading"] == "shift"  # the model reads income


def admin_get(state: Path, *paths: str) -> list[httpx.Response]:
    """GET each path from the admin API, in process (no server: the route reads only the store)."""

    async def get_all() -> list[httpx.Response]:
        store = Store(state)
        gateway = Gateway(store)
        try:
            transport = httpx.ASGITransport(app=create_admin_app(gateway, "token"))
            headers = {"Authorization": "Bearer token"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://admin", headers=headers
            ) as client:
                return [await client.get(path) for path in paths]
        finally:
            await gateway.close()
            store.close()

    return asyncio.run(get_all())


def test_the_admin_route_answers_the_cli_s_json(state: Path) -> None:
    write_captures(state, "credit", recent_records((0.0, 0.0, 0.0)))
    answer, quiet, missing, wrong = admin_get(
        state,
        "/_/api/models/credit/drift?stage=prod&since=1d&window=day",
        "/_/api/models/credit/drift?stage=test",
        "/_/api/models/nope/drift",
        "/_/api/models/credit/drift?window=week",
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["model"] == "credit"
    assert report["baseline"] == "reference"
    assert report["records"] == 50
    assert all(f["reading"] == "stable" for w in report["windows"] for f in w["features"])
    assert len(report["latest_records"]) == 10
    assert report["latest_records"][0]["stage"] == "prod"
    assert quiet.json()["records"] == 0
    assert "capture set credit --stage test 10%" in quiet.json()["notes"][0]
    assert missing.status_code == 404
    assert wrong.status_code == 400


# -- 20 Newsgroups --------------------------------------------------------------------------

TOPICS = ["rec.autos", "sci.space", "talk.religion.misc", "comp.graphics", "sci.med", "rec.sport.hockey"]


@pytest.fixture(scope="module")
def newsgroups() -> dict[str, Any]:
    """A small topic model, its reference (train-split posts, summarized by the handler) and
    test-split posts, with their predictions."""
    from sklearn.datasets import fetch_20newsgroups
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    remove = ("headers", "footers", "quotes")
    train = fetch_20newsgroups(subset="train", categories=TOPICS, remove=remove, random_state=0)
    test = fetch_20newsgroups(subset="test", categories=TOPICS, remove=remove, random_state=0)
    names = train.target_names
    model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=300))
    model.fit(train.data, [names[t] for t in train.target])
    service = PredictionService(EstimatorModel(model), "1")
    sample = random.Random(0).sample(list(train.data), 1500)
    reference = service.summarize_reference(sample)["reference"]
    posts = list(test.data)
    return {
        "reference": reference["drift"],
        "posts": posts,
        "topics": [names[t] for t in test.target],
        "predictions": [str(p) for p in model.predict(posts)],
    }


@pytest.mark.slow
def test_newsgroups_posts_of_the_same_topics_keep_their_class_mix(newsgroups: dict[str, Any]) -> None:
    window = compare_window(
        records_of(newsgroups["posts"], newsgroups["predictions"]), newsgroups["reference"]
    )
    assert window["predictions"]["psi"] < 0.1
    assert all(f["psi"] < 0.1 for f in window["features"])  # length, vocabulary hits, top tokens


@pytest.mark.slow
def test_newsgroups_posts_of_three_topics_shift_the_classes(newsgroups: dict[str, Any]) -> None:
    kept = {"sci.space", "sci.med", "rec.autos"}
    chosen = [i for i, topic in enumerate(newsgroups["topics"]) if topic in kept]
    posts = [newsgroups["posts"][i] for i in chosen]
    predictions = [newsgroups["predictions"][i] for i in chosen]
    window = compare_window(records_of(posts, predictions), newsgroups["reference"])
    assert window["predictions"]["psi"] > 0.25
    assert window["predictions"]["reading"] == "shift"
    text = by_name(window)
    assert set(text) == {dist.TEXT_LENGTH, dist.VOCABULARY_HIT_RATE, "top tokens"}
    assert text["top tokens"]["p_value"] is None  # words of one post are not independent draws
    assert all(f["n"] > 0 and len(f["bins"]) == len(f["current"]) for f in text.values())


@pytest.mark.slow
def test_newsgroups_posts_of_topics_never_learned_miss_the_vocabulary(newsgroups: dict[str, Any]) -> None:
    from sklearn.datasets import fetch_20newsgroups

    remove = ("headers", "footers", "quotes")
    other = fetch_20newsgroups(
        subset="test", categories=["misc.forsale", "comp.windows.x"], remove=remove, random_state=0
    )
    posts = list(other.data[:600])
    window = compare_window(records_of(posts, ["sci.space"] * len(posts)), newsgroups["reference"])
    text = by_name(window)
    assert text[dist.VOCABULARY_HIT_RATE]["reading"] == "shift"  # words the training posts never used
    assert text[dist.TEXT_LENGTH]["psi"] < 0.1  # posts all the same
