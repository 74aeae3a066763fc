"""Every model format, loaded as Lambda's INIT loads it: from the environment alone.

The iris pipeline in pickle, joblib, skops and ONNX, and the cloudpickle text model whose
class travels by value, go through ``PredictionService.from_environment`` and must answer
what the fitted estimator itself answers. The sha256 pin and the load errors are checked
here too, since they are what a user sees when INIT fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from lambdaserve.runtime.errors import ModelLoadError
from lambdaserve.runtime.handler import PredictionService

EVENTS = Path(__file__).resolve().parent.parent / "events"
FORMATS = ["pickle", "joblib", "skops", "onnx"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flowers() -> pd.DataFrame:
    iris = load_iris(as_frame=True)
    return iris.frame[iris.feature_names].set_axis(FEATURES, axis=1)


def predict(service: PredictionService, instances: Any, route: str = "predict") -> Any:
    """What an API caller gets back from the handler for these instances."""
    evt = json.loads((EVENTS / "apigw-rest-post.json").read_text())
    evt.update(body=json.dumps(instances), resource=f"/iris/{route}", path=f"/iris/{route}")
    result = service.handle(evt)
    assert result["statusCode"] == 200, result["body"]
    return json.loads(result["body"])


class CreatesDirectoryWhenUnpickled:
    """A payload with a visible side effect, to tell whether a file was unpickled at all."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.target),))


@pytest.fixture
def environment_for(tmp_path: Path, iris_models: dict[str, Path]) -> Any:
    """The environment for one iris format, its file copied to a name without a suffix."""

    def build(fmt: str) -> dict[str, str]:
        # A suffix-less name, so only LAMBDASERVE_MODEL_FORMAT can say what the file is.
        path = tmp_path / "model"
        shutil.copyfile(iris_models[fmt], path)
        return {
            "LAMBDASERVE_MODEL": str(path),
            "LAMBDASERVE_MODEL_FORMAT": fmt,
            "LAMBDASERVE_MODEL_SHA256": sha256(path),
        }

    return build


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_predicts_what_the_fitted_estimator_predicts(
    environment_for: Any, iris_estimator: Any, fmt: str
) -> None:
    # GIVEN the iris pipeline saved in this format and named by the environment
    service = PredictionService.from_environment(environment_for(fmt))
    data = flowers()
    expected = iris_estimator.predict(data).tolist()
    # WHEN all 150 flowers are sent as objects, then as rows of numbers
    from_records = predict(service, data.to_dict("records"))
    from_rows = predict(service, data.to_numpy().tolist())
    # THEN both answers are the estimator's own labels, flower for flower
    assert from_records == expected
    assert from_rows == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_fitted_estimators_probabilities(
    environment_for: Any, iris_estimator: Any, fmt: str
) -> None:
    # GIVEN the iris pipeline in this format
    service = PredictionService.from_environment(environment_for(fmt))
    data = flowers().iloc[::10]
    expected = [dict(zip(CLASSES, row, strict=True)) for row in iris_estimator.predict_proba(data).tolist()]
    # WHEN the flowers are sent to /predict_proba
    answer = predict(service, data.to_dict("records"), route="predict_proba")
    # THEN each row is {class: probability}, equal to sklearn's (ONNX computes in float32)
    assert [list(row) for row in answer] == [CLASSES] * len(data)
    for got, want in zip(answer, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("fmt", ["pickle", "joblib", "skops"])
def test_describe_reports_what_a_bundle_records(environment_for: Any, fmt: str) -> None:
    # GIVEN an estimator format loaded from the environment
    environ = environment_for(fmt)
    # WHEN it is described
    description = PredictionService.from_environment(environ).describe()
    # THEN it names its features, classes and routes; the version is the hash's prefix
    assert description == {
        "version": environ["LAMBDASERVE_MODEL_SHA256"][:12],
        "has_proba": True,
        "feature_names": FEATURES,
        "n_features": 4,
        "classes": CLASSES,
        "probabilities": {"source": "predict_proba"},
    }


def test_describe_an_onnx_model(environment_for: Any) -> None:
    # GIVEN the iris pipeline converted to ONNX (one input per feature, a probability output)
    # WHEN it is described
    description = PredictionService.from_environment(environment_for("onnx")).describe()
    # THEN its inputs are the features and it has predict_proba
    assert description["has_proba"] is True
    assert description["feature_names"] == FEATURES


def test_the_cloudpickle_text_model_loads_with_its_class_carried_by_value(text_model: Path) -> None:
    # GIVEN the text classifier, whose class exists only inside the pickle; format from the suffix
    environ = {"LAMBDASERVE_MODEL": str(text_model), "LAMBDASERVE_MODEL_SHA256": sha256(text_model)}
    # WHEN INIT loads it
    service = PredictionService.from_environment(environ)
    texts = ["the rocket reached orbit", "a prayer in church"]
    # THEN it answers topic names, as the estimator itself does
    assert predict(service, texts) == ["space", "religion"]
    assert predict(service, texts) == service.model.estimator.predict(texts).tolist()  # type: ignore[union-attr]
    assert service.describe() == {
        "version": environ["LAMBDASERVE_MODEL_SHA256"][:12],
        "has_proba": True,
        "feature_names": None,
        "n_features": None,
        "classes": ["religion", "space"],
        "probabilities": {"source": "predict_proba"},
    }


def test_the_version_can_be_set_explicitly(text_model: Path) -> None:
    environ = {"LAMBDASERVE_MODEL": str(text_model), "LAMBDASERVE_MODEL_VERSION": "topics-7"}
    assert PredictionService.from_environment(environ).describe()["version"] == "topics-7"


def test_the_sha256_pin_accepts_the_hash_in_upper_case(environment_for: Any) -> None:
    environ = environment_for("joblib")
    environ["LAMBDASERVE_MODEL_SHA256"] = environ["LAMBDASERVE_MODEL_SHA256"].upper()
    assert PredictionService.from_environment(environ).describe()["classes"] == CLASSES


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_with_another_hash_is_refused_naming_both_hashes(environment_for: Any, fmt: str) -> None:
    # GIVEN a pin that does not match the file
    environ = environment_for(fmt)
    actual = environ["LAMBDASERVE_MODEL_SHA256"]
    environ["LAMBDASERVE_MODEL_SHA256"] = expected = hashlib.sha256(b"the packaged model").hexdigest()
    # WHEN INIT loads it
    # THEN it refuses, saying which hash it found and which it expected, and what to do
    pattern = f"{actual}.*{expected}.*package it again"
    with pytest.raises(ModelLoadError, match=pattern):
        PredictionService.from_environment(environ)


def test_a_pickle_with_another_hash_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    # GIVEN a pickle that would create a directory when loaded, and a pin it does not match
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.pickle"
    path.write_bytes(pickle.dumps(CreatesDirectoryWhenUnpickled(marker)))
    environ = {"LAMBDASERVE_MODEL": str(path), "LAMBDASERVE_MODEL_SHA256": "0" * 64}
    # WHEN INIT loads it
    with pytest.raises(ModelLoadError, match=r"is [0-9a-f]{64}, but LAMBDASERVE_MODEL_SHA256 expects 0{64}"):
        PredictionService.from_environment(environ)
    # THEN nothing in it ran
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "type_name"),
    [
        pytest.param({"coef": [0.1, 0.2], "intercept": 0.3}, "a dict", id="pickled-dict"),
        pytest.param(["setosa", "versicolor"], "a list", id="pickled-list"),
        pytest.param(42, "an int", id="pickled-int"),
    ],
)
def test_a_file_that_holds_no_model_says_it_has_no_predict_method(
    tmp_path: Path, content: Any, type_name: str
) -> None:
    # GIVEN a pickle of something that is not a model
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(content))
    # WHEN INIT loads it
    # THEN the error names what the file holds and what to save instead
    with pytest.raises(ModelLoadError, match=f"holds {type_name}, which has no predict method.*Save the"):
        PredictionService.from_environment({"LAMBDASERVE_MODEL": str(path)})


@pytest.mark.parametrize("environ", [{}, {"LAMBDASERVE_MODEL": ""}], ids=["unset", "empty"])
def test_without_lambdaserve_model_init_says_to_set_it(environ: dict[str, str]) -> None:
    with pytest.raises(ModelLoadError, match=re.escape("LAMBDASERVE_MODEL is not set. Set it to")):
        PredictionService.from_environment(environ)


def test_a_model_path_that_is_not_a_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.joblib"
    with pytest.raises(ModelLoadError, match=re.escape(f"{missing}, which is not a file")):
        PredictionService.from_environment({"LAMBDASERVE_MODEL": str(missing)})


def test_a_file_without_a_known_suffix_or_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00")
    with pytest.raises(
        ModelLoadError,
        match=r"Cannot tell the format of .*model\.bin: name it with one of \.pkl.*LAMBDASERVE_MODEL_FORMAT",
    ):
        PredictionService.from_environment({"LAMBDASERVE_MODEL": str(path)})
