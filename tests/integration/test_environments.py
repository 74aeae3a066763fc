"""A model made under an older scikit-learn runs with the versions it was made with.

The real case behind this: a Pipeline whose last step is a custom estimator, pickled
under scikit-learn 1.7, raises NotFittedError on every predict under 1.8 and later.
The test makes exactly such a model in an environment it builds with 1.7.2, then shows
that ``--env local`` fails and says why, and that ``--env auto`` serves it correctly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import sklearn
from typer.testing import CliRunner

from lambdaserve.bundle.pins import current_python_version
from lambdaserve.cli.app import app
from lambdaserve.functions.pythons import SilentProgress, build_environment, find_mismatches

pytestmark = pytest.mark.slow

OLD = "1.7.2"
MAKE_OLD_MODEL = """
import sys
import cloudpickle
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

class Delegate(ClassifierMixin, BaseEstimator):
    def __init__(self, estimator=None):
        self.estimator = estimator
    def fit(self, X, y):
        self.estimator.fit(X, y)
        return self
    def predict(self, X):
        return self.estimator.predict(X)

texts = ["rocket launch orbit", "god church faith", "nasa shuttle space", "bible jesus prayer"] * 5
topics = ["space", "religion", "space", "religion"] * 5
model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", Delegate(LogisticRegression()))]).fit(texts, topics)
assert model.predict(["shuttle launch"]).tolist() == ["space"]
with open(sys.argv[1], "wb") as f:
    cloudpickle.dump(model, f)
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def old_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    maker = build_environment(
        [f"scikit-learn=={OLD}", "cloudpickle"], current_python_version(), SilentProgress()
    )
    path = tmp_path_factory.mktemp("old") / "old.pickle"
    subprocess.run([maker.python, "-c", MAKE_OLD_MODEL, str(path)], check=True, stdin=subprocess.DEVNULL)
    return path


def test_the_file_pins_the_scikit_learn_it_was_made_with(old_model: Path) -> None:
    code, stdout, _ = run("inspect", str(old_model), "--json")
    assert code == 0
    report = json.loads(stdout)
    pin = next(p for p in report["pins"] if p["name"] == "scikit-learn")
    assert (pin["version"], pin["source"]) == (OLD, "file")
    mismatches = find_mismatches(report["requirements"], report["python"])
    assert [(m.name, m.wanted, m.found) for m in mismatches] == [("scikit-learn", OLD, sklearn.__version__)]


def test_forcing_this_python_fails_and_names_the_mismatch(old_model: Path) -> None:
    # GIVEN a model made under 1.7.2 and this Python with a newer scikit-learn
    # WHEN it is forced to run here
    code, stdout, stderr = run("invoke", str(old_model), "--env", "local", "--data", '["shuttle launch"]')
    # THEN the prediction fails (NotFittedError, as in the real case), and the warning
    # names the mismatched versions and the fix
    assert code == 1
    assert json.loads(stdout)["statusCode"] == 500
    assert "NotFittedError" in stderr
    assert f"scikit-learn {OLD} is wanted, {sklearn.__version__} is installed" in stderr
    assert "--env isolated" in stderr


def test_auto_builds_an_environment_with_the_pinned_versions_and_predicts(old_model: Path) -> None:
    code, stdout, stderr = run("invoke", str(old_model), "--data", '["shuttle launch"]', "--json")
    assert code == 0, stderr
    output = json.loads(stdout)
    assert output["environment"]["isolated"] is True
    assert json.loads(output["result"]["body"]) == ["space"]
    version = subprocess.run(
        [output["environment"]["python"], "-c", "import sklearn; print(sklearn.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == OLD


def test_the_built_environment_is_reused(old_model: Path) -> None:
    run("invoke", str(old_model), "--data", '["x"]', "--json")  # built here or by the test before
    code, _, stderr = run("invoke", str(old_model), "--data", '["bible prayer"]', "--json")
    assert code == 0
    assert "Building an environment" not in stderr


RECORD = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_a_model_fitted_on_a_dataframe_gets_pandas_in_an_isolated_environment(
    iris_models: dict[str, Path], fmt: str
) -> None:
    # GIVEN the iris pipeline fitted on a DataFrame: its file never imports pandas, but the
    # handler turns every request into a DataFrame with the fitted column names
    # WHEN it is invoked, with rows and with records, in an environment built from its pins only
    answers = [
        run("invoke", str(iris_models[fmt]), "--env", "isolated", "--trust", "--data", body, "--json")
        for body in ("[[6.7, 3.0, 5.2, 2.3]]", json.dumps([RECORD]))
    ]
    # THEN pandas is pinned, installed there, and both predict
    for code, stdout, stderr in answers:
        assert code == 0, stdout + stderr
        output = json.loads(stdout)
        assert output["environment"]["isolated"] is True
        assert json.loads(output["result"]["body"]) == ["virginica"]
