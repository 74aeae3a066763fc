"""The post's model end to end: train offline, package, invoke, right topics."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import fetch_20newsgroups
from typer.testing import CliRunner

from lambdaserve.cli.app import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def news_bundle(newsgroups_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("bundles") / "news"
    result = CliRunner().invoke(
        app, ["package", str(newsgroups_model), "--sample", '["the space shuttle launch"]', "-o", str(bundle)]
    )
    assert result.exit_code == 0, result.stderr
    return bundle


def test_the_example_reaches_the_posts_accuracy(newsgroups_model: Path) -> None:
    log = newsgroups_model.with_suffix(".log").read_text()
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", log).group(1))  # type: ignore[union-attr]
    assert 83.0 <= accuracy <= 86.0, log


def test_the_bundle_records_the_sample_topic(news_bundle: Path) -> None:
    manifest = json.loads((news_bundle / "lambdaserve.json").read_text())
    assert manifest["sample_output"] == ["sci.space"]
    assert len(manifest["classes"]) == 20
    assert manifest["scan"]["by_value"]["classes"] == ["TopicClassifier"]
    assert manifest["scan"]["dangerous"] == []


def test_invoking_the_bundle_predicts_the_right_topics_of_real_test_posts(
    news_bundle: Path, newsgroups_model: Path
) -> None:
    # GIVEN real posts from the test split and what the model itself says of them
    test = fetch_20newsgroups(subset="test")
    posts, truth = test.data[:200], [test.target_names[i] for i in test.target[:200]]
    with newsgroups_model.open("rb") as f:
        in_process = pickle.load(f).predict(posts).tolist()
    # WHEN the bundle is invoked through a Lambda event, one request for the batch
    result = CliRunner().invoke(app, ["invoke", str(news_bundle), "--data", json.dumps(posts), "--json"])
    # THEN it answers exactly as the model does in process, and mostly right
    assert result.exit_code == 0, result.stderr
    predicted = json.loads(json.loads(result.stdout)["result"]["body"])
    assert predicted == in_process
    assert np.mean([p == t for p, t in zip(predicted, truth, strict=True)]) >= 0.75


def test_predict_proba_gives_every_topic_a_probability(news_bundle: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["invoke", str(news_bundle), "--route", "predict_proba", "--data", '["the space shuttle launch"]'],
    )
    assert result.exit_code == 0, result.stderr
    (probabilities,) = json.loads(json.loads(result.stdout)["body"])
    assert len(probabilities) == 20
    assert max(probabilities, key=probabilities.get) == "sci.space"
    assert sum(probabilities.values()) == pytest.approx(1.0)
