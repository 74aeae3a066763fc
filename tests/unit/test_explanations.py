"""runtime/explanations.py: lime's explanations without lime, predicted in batches under a deadline.

The agreement tests run the ``lime`` package (a dev dependency only) beside our code on the same
model, instance and seed, and compare what a user reads: the words or bins, their weights, the
intercept, the score and the local prediction.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lime.lime_tabular import LimeTabularExplainer
from lime.lime_text import LimeTextExplainer

from lambdaserve.runtime.explanations import (
    MAX_SAMPLES,
    MAX_WORDS,
    ExplainTooSlow,
    Explanation,
    explain_tabular,
    explain_text,
    summarize_reference,
)

SRC = Path(__file__).resolve().parents[2] / "src"
IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
NEWS_CATEGORIES = ["alt.atheism", "comp.graphics", "rec.autos", "sci.space"]


def assert_agrees(ours: Explanation, theirs: Any, *, top_labels: bool) -> None:
    """Our explanation says what lime's does, label by label."""
    assert [label.label for label in ours.labels] == [int(x) for x in theirs.available_labels()]
    assert ours.probabilities == pytest.approx(theirs.predict_proba.tolist(), abs=1e-12)
    for label in ours.labels:
        expected = theirs.as_list(label=label.label)
        assert [name for name, _ in label.weights] == [name for name, _ in expected]
        assert [w for _, w in label.weights] == pytest.approx([w for _, w in expected], abs=1e-6)
        assert label.intercept == pytest.approx(theirs.intercept[label.label], abs=1e-6)
    # lime keeps the score and local prediction of the label it fitted last: with top_labels
    # the most probable one (it fits them from the least probable up), else the last asked.
    last = ours.labels[0] if top_labels else ours.labels[-1]
    assert last.score == pytest.approx(theirs.score, abs=1e-6)
    assert last.local_prediction == pytest.approx(float(theirs.local_pred[0]), abs=1e-6)


# --- text ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def news() -> tuple[Any, list[str]]:
    """TF-IDF + logistic regression on 300 posts of four groups, and short posts to explain."""
    from sklearn.datasets import fetch_20newsgroups
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    posts = fetch_20newsgroups(
        subset="train",
        categories=NEWS_CATEGORIES,
        remove=("headers", "footers", "quotes"),
        download_if_missing=False,
    )
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    model.fit(posts.data[:300], posts.target[:300])
    short = [text for text in posts.data[300:] if 15 <= len(text.split()) <= 50]
    return model, short[:3]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("post", "seed", "num_features", "labels"),
    [
        (0, 1, 6, {"top_labels": 2}),  # forward selection
        (1, 7, 6, {"labels": [0, 3]}),
        (2, 42, 6, {}),  # lime's default: label 1
        (0, 3, 10, {"top_labels": 2}),  # highest weights
        (1, 11, 10, {"labels": [3, 0, 2]}),
        (2, 5, 10, {"top_labels": 4}),
    ],
)
def test_text_explanations_agree_with_lime(
    news: tuple[Any, list[str]], post: int, seed: int, num_features: int, labels: dict[str, Any]
) -> None:
    model, posts = news
    explainer = LimeTextExplainer(
        class_names=None,
        kernel_width=25,
        bow=True,
        split_expression=r"\W+",
        feature_selection="auto",
        random_state=seed,
    )
    theirs = explainer.explain_instance(
        posts[post], model.predict_proba, num_features=num_features, num_samples=500, **labels
    )
    ours = explain_text(
        posts[post],
        model.predict_proba,
        num_features=num_features,
        num_samples=500,
        random_state=seed,
        **labels,
    )
    assert ours.num_samples == 500
    assert_agrees(ours, theirs, top_labels="top_labels" in labels)


@pytest.mark.slow
def test_each_label_has_the_score_lime_gives_when_explaining_it_alone(
    news: tuple[Any, list[str]],
) -> None:
    model, posts = news
    ours = explain_text(posts[0], model.predict_proba, num_samples=300, top_labels=3, random_state=4)
    for label in ours.labels:
        alone = LimeTextExplainer(random_state=4).explain_instance(
            posts[0], model.predict_proba, labels=[label.label], num_samples=300
        )
        assert label.score == pytest.approx(alone.score, abs=1e-6)
        assert label.local_prediction == pytest.approx(float(alone.local_pred[0]), abs=1e-6)


@pytest.mark.slow
def test_text_results_do_not_depend_on_the_batch_size(news: tuple[Any, list[str]]) -> None:
    model, posts = news
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> Any:
        calls.append(texts)
        return model.predict_proba(texts)

    results = [
        explain_text(posts[1], predict, num_samples=300, random_state=9, batch_size=size)
        for size in (1, 7, 250, MAX_SAMPLES)
    ]
    assert all(result == results[0] for result in results[1:])
    # the instance itself comes first, then batches of batch_size
    assert calls[0] == [posts[1]]
    assert [len(c) for c in calls[-3:]] == [250, 50, 300]


def word_model(texts: list[str]) -> list[list[float]]:
    """P(space) rises with each "rocket"; deterministic, pure Python."""
    out = []
    for text in texts:
        p = 1 / (1 + math.exp(1 - 2 * text.split().count("rocket")))
        out.append([1 - p, p])
    return out


def test_removing_a_word_removes_every_occurrence_and_keeps_the_separators() -> None:
    seen: list[str] = []

    def predict(texts: list[str]) -> list[list[float]]:
        seen.extend(texts)
        return word_model(texts)

    explain_text("rocket, moon; rocket!", predict, num_samples=50, random_state=0)
    assert seen[0] == "rocket, moon; rocket!"
    assert set(seen[1:]) <= {", moon; !", "rocket, ; rocket!", ", ; !"}
    assert ", moon; !" in seen


def test_a_text_without_sklearn_scipy_or_numpy_imported_at_import_time() -> None:
    # ONNX model environments have numpy but not scikit-learn; importing the module costs nothing.
    script = (
        "import sys\n"
        "import lambdaserve.runtime.explanations as e\n"
        "assert 'numpy' not in sys.modules\n"
        "r = e.explain_text('rocket to the moon', lambda t: [[0.5, 0.5]] * len(t), num_samples=20)\n"
        "assert not {'sklearn', 'scipy'} & set(sys.modules), sorted(sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, stdin=subprocess.DEVNULL)


# --- tabular ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    return LogisticRegression(max_iter=1000).fit(data.data, data.target), data.data


@pytest.mark.parametrize(
    ("row", "seed", "num_features", "labels"),
    [
        (0, 1, 4, {"top_labels": 3}),  # forward selection over all four features
        (60, 42, 2, {"labels": [2, 0]}),
        (120, 7, 3, {}),
        (60, 3, 10, {"top_labels": 2}),  # highest weights
        (120, 8, 10, {"labels": [0]}),
    ],
)
def test_tabular_explanations_from_the_summary_agree_with_lime_on_the_rows(
    iris: tuple[Any, Any], row: int, seed: int, num_features: int, labels: dict[str, Any]
) -> None:
    model, data = iris
    explainer = LimeTabularExplainer(
        data,
        mode="classification",
        feature_names=IRIS_NAMES,
        discretize_continuous=True,
        discretizer="quartile",
        kernel_width=None,
        sample_around_instance=False,
        random_state=seed,
    )
    theirs = explainer.explain_instance(
        data[row], model.predict_proba, num_features=num_features, num_samples=2000, **labels
    )
    reference = json.loads(json.dumps(summarize_reference(data, IRIS_NAMES)))
    ours = explain_tabular(
        data[row].tolist(),
        model.predict_proba,
        reference,
        num_features=num_features,
        num_samples=2000,
        random_state=seed,
        **labels,
    )
    assert_agrees(ours, theirs, top_labels="top_labels" in labels)


def test_the_model_sees_the_samples_lime_makes_even_where_lime_samples_wrongly() -> None:
    # 40 of 100 rows at the minimum 5.0: the first bin is [5.0, 5.0], and lime's undiscretize
    # then yields the bin's z-score, 0.0, instead of 5.0. Agreement means keeping that.
    rng = np.random.RandomState(0)
    data = np.column_stack([np.r_[np.full(40, 5.0), 5 + 3 * rng.rand(60)], rng.rand(100)])
    seen: list[Any] = []

    def predict(rows: Any) -> Any:
        seen.append(rows.copy())
        p = 1 / (1 + np.exp(6.0 - rows[:, 0]))
        return np.stack([1 - p, p], axis=1)

    theirs = LimeTabularExplainer(data, random_state=1).explain_instance(data[50], predict, num_samples=200)
    lime_samples = seen.pop()
    ours = explain_tabular(
        data[50], predict, summarize_reference(data, ["0", "1"]), num_samples=200, random_state=1
    )
    assert np.array_equal(seen.pop(), lime_samples)
    assert 0.0 in lime_samples[:, 0]
    assert_agrees(ours, theirs, top_labels=False)


def test_tabular_features_are_described_by_their_quartile_bin(iris: tuple[Any, Any]) -> None:
    model, data = iris
    reference = summarize_reference(data, IRIS_NAMES)
    ours = explain_tabular([5.8, 2.7, 3.0, 1.0], model.predict_proba, reference, random_state=0)
    assert sorted(name for name, _ in ours.labels[0].weights) == [
        "0.30 < petal_width <= 1.30",
        "1.60 < petal_length <= 4.35",
        "5.10 < sepal_length <= 5.80",
        "sepal_width <= 2.80",
    ]


def test_tabular_results_do_not_depend_on_the_batch_size(iris: tuple[Any, Any]) -> None:
    _, data = iris
    reference = summarize_reference(data, IRIS_NAMES)
    seen: list[Any] = []

    # Elementwise, so each row's output is bitwise the same in any batch. (scikit-learn's
    # predict_proba is not: numpy's matrix product rounds one row differently from many.)
    def predict(rows: Any) -> Any:
        seen.append(rows.copy())
        p = 1 / (1 + np.exp(3.0 - rows[:, 2]))
        return np.stack([1 - p, p], axis=1)

    results, samples = [], []
    for size in (1, 33, 500):
        seen.clear()
        results.append(
            explain_tabular(data[70], predict, reference, num_samples=500, random_state=5, batch_size=size)
        )
        assert [len(rows) for rows in seen] == [size] * (500 // size) + ([500 % size] if 500 % size else [])
        samples.append(np.concatenate(seen))
    assert samples[0][0].tolist() == data[70].tolist()  # the instance itself first
    assert all(np.array_equal(s, samples[0]) for s in samples[1:])
    assert all(result == results[0] for result in results[1:])


def test_summary_is_json_and_holds_no_rows(iris: tuple[Any, Any]) -> None:
    _, data = iris
    summary = summarize_reference(data, IRIS_NAMES)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["format"] == 1
    assert summary["n_rows"] == 150
    assert summary["feature_names"] == IRIS_NAMES

    def leaves(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [leaf for v in value.values() for leaf in leaves(v)]
        if isinstance(value, list):
            return [leaf for v in value for leaf in leaves(v)]
        return [value]

    assert {type(leaf) for leaf in leaves(summary)} <= {int, float, str}  # no numpy scalars
    # Ten times the rows, the same size: the summary grows with the features, not the rows.
    bigger = summarize_reference(np.tile(data, (10, 1)), IRIS_NAMES)
    assert len(leaves(bigger)) == len(leaves(summary))
    assert [f["boundaries"] for f in bigger["features"]] == [f["boundaries"] for f in summary["features"]]
    rows = {tuple(row) for row in data.tolist()}
    lists = [v for f in summary["features"] for v in f.values() if isinstance(v, list)]
    assert not any(tuple(values) in rows for values in lists)


def test_feature_names_default_to_columns_or_x0_x1() -> None:
    import pandas as pd

    rows = np.arange(60.0).reshape(20, 3)
    assert summarize_reference(rows)["feature_names"] == ["x0", "x1", "x2"]
    frame = pd.DataFrame(rows, columns=["a", "b", "c"])
    assert summarize_reference(frame)["feature_names"] == ["a", "b", "c"]


def test_tabular_explanation_needs_scipy(iris: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = iris
    reference = summarize_reference(data, IRIS_NAMES)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import scipy.stats fails
    with pytest.raises(RuntimeError, match="scipy"):
        explain_tabular(data[0], model.predict_proba, reference)


# --- the deadline ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timed_model(clock: FakeClock, seconds_per_row: list[float]) -> Any:
    """word_model taking seconds_per_row[i] per row on its i-th call (the last value after)."""
    calls: list[int] = []

    def predict(texts: list[str]) -> list[list[float]]:
        clock.now += seconds_per_row[min(len(calls), len(seconds_per_row) - 1)] * len(texts)
        calls.append(len(texts))
        return word_model(texts)

    predict.calls = calls  # type: ignore[attr-defined]
    return predict


def test_too_slow_after_the_first_batch_says_how_many_samples_fit() -> None:
    clock = FakeClock()
    predict = timed_model(clock, [1.0])
    with pytest.raises(ExplainTooSlow, match="num_samples=400 or fewer") as raised:
        explain_text(
            "rocket to the moon",
            predict,
            num_samples=1000,
            batch_size=100,
            deadline=clock.now + 400,
            clock=clock,
        )
    assert (raised.value.estimated_s, raised.value.budget_s, raised.value.fitting_samples) == (1000, 400, 400)
    assert predict.calls == [100]
    copy = pickle.loads(pickle.dumps(raised.value))  # it may cross a process boundary
    assert (copy.fitting_samples, str(copy)) == (400, str(raised.value))


def test_a_model_slowing_down_is_caught_before_the_next_batch() -> None:
    clock = FakeClock()
    predict = timed_model(clock, [1.0, 10.0])
    with pytest.raises(ExplainTooSlow) as raised:
        explain_text(
            "rocket to the moon",
            predict,
            num_samples=1000,
            batch_size=100,
            deadline=clock.now + 1500,
            clock=clock,
        )
    assert predict.calls == [100, 100]
    assert raised.value.fitting_samples == int(1500 / 5.5)


def test_an_explanation_within_its_deadline_is_the_one_without() -> None:
    clock = FakeClock()
    timed = explain_text(
        "rocket to the moon",
        timed_model(clock, [0.001]),
        num_samples=1000,
        batch_size=100,
        random_state=3,
        deadline=clock.now + 2.0,
        clock=clock,
    )
    assert timed == explain_text("rocket to the moon", word_model, num_samples=1000, random_state=3)
    assert clock.now == pytest.approx(1001.0)


def test_not_even_the_minimum_fits() -> None:
    clock = FakeClock()
    with pytest.raises(ExplainTooSlow, match="not even 10 samples fit") as raised:
        explain_text(
            "rocket",
            timed_model(clock, [1.0]),
            num_samples=100,
            batch_size=10,
            deadline=clock.now + 5,
            clock=clock,
        )
    assert raised.value.fitting_samples == 5


# --- bad arguments ---------------------------------------------------------------------------


def refuse_to_predict(rows: Any) -> Any:
    raise AssertionError("bad arguments must be refused before the model runs")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_features": 0}, "num_features must be a whole number between 1 and 100"),
        ({"num_features": 101}, "num_features"),
        ({"num_features": 2.5}, "num_features"),
        ({"num_features": True}, "num_features"),
        ({"num_samples": 9}, "num_samples must be a whole number between 10 and 10000"),
        ({"num_samples": MAX_SAMPLES + 1}, "num_samples"),
        ({"top_labels": 0}, "top_labels must be a whole number 1 or more"),
        ({"labels": []}, "labels must be a non-empty list"),
        ({"labels": "1"}, "labels must be a non-empty list"),
        ({"labels": [-1]}, "each label must be a whole number 0 or more"),
        ({"labels": [0], "top_labels": 1}, "labels or top_labels, not both"),
        ({"batch_size": 0}, "batch_size"),
        ({"random_state": -1}, "random_state"),
        ({"deadline": float("nan")}, "deadline must be a finite clock"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_send(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        explain_text("rocket to the moon", refuse_to_predict, **arguments)
    reference = summarize_reference(np.arange(40.0).reshape(20, 2))
    with pytest.raises(ValueError, match=message):
        explain_tabular([1.0, 2.0], refuse_to_predict, reference, **arguments)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no words to explain: send the text"),
        (" ?! -- ", "no words to explain"),
        (
            " ".join(f"w{i}" for i in range(MAX_WORDS + 1)),
            f"1001 distinct words; explanations take at most {MAX_WORDS}",
        ),
        (["rocket"], "text must be a string"),
    ],
)
def test_texts_without_words_or_with_too_many_are_refused(text: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        explain_text(text, refuse_to_predict)


def test_labels_out_of_range_are_refused_after_the_first_batch() -> None:
    calls: list[int] = []

    def predict(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return word_model(texts)

    with pytest.raises(ValueError, match="label 5 is out of range: the model gives 2 class"):
        explain_text("rocket to the moon", predict, labels=[0, 5], num_samples=500)
    assert calls == [250]
    with pytest.raises(ValueError, match=r"label 1 \(the default, as in lime\) is out of range"):
        explain_text("rocket", lambda texts: [[1.0]] * len(texts), num_samples=10)


def test_a_model_answering_in_the_wrong_shape_is_a_model_error() -> None:
    with pytest.raises(RuntimeError, match="one row of class probabilities per input"):
        explain_text("rocket to the moon", lambda texts: [0.5] * len(texts), num_samples=10)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.0], "must hold 2 numbers, one per feature \\(x0, x1\\)"),
        (["a", "b"], "must be a list of numbers"),
        ([1.0, float("nan")], "NaN or infinite"),
    ],
)
def test_bad_rows_are_refused(row: Any, message: str) -> None:
    reference = summarize_reference(np.arange(40.0).reshape(20, 2))
    with pytest.raises(ValueError, match=message):
        explain_tabular(row, refuse_to_predict, reference)


def test_references_that_are_not_summaries_are_refused() -> None:
    summary = summarize_reference(np.arange(40.0).reshape(20, 2))
    with pytest.raises(ValueError, match="format 2; this version reads format 1"):
        explain_tabular([1.0, 2.0], refuse_to_predict, {**summary, "format": 2})
    broken = {**summary, "features": [{"boundaries": [1.0]}, summary["features"][1]]}
    with pytest.raises(ValueError, match="not a summary from summarize_reference"):
        explain_tabular([1.0, 2.0], refuse_to_predict, broken)


@pytest.mark.parametrize(
    ("rows", "names", "message"),
    [
        (np.ones((19, 2)), None, "19 rows; explanations need at least 20"),
        ([["setosa", 1.0]] * 20, None, "rows of numbers only"),
        ([[1.0, 2.0]] * 19 + [[1.0]], None, "each row with the same number of values"),
        ([[1.0, float("nan")]] * 20, None, "nan at row 0, column 1 \\(20 such values\\)"),
        ([[1.0, 2.0]] * 19 + [[math.inf, 2.0]], None, "inf at row 19, column 0"),
        ([1.0] * 20, None, "must be a table"),
        (np.ones((20, 2)), ["a"], "2 columns but 1 feature names"),
        (np.ones((20, 2)), ["a", "a"], "feature names must be distinct"),
    ],
)
def test_bad_references_are_refused(rows: Any, names: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize_reference(rows, names)
