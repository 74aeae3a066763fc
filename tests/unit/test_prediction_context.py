"""Model calls skip scikit-learn's parameter validation, and that changes no output."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import sklearn

from lambdaserve.runtime.models import EstimatorModel, load_model

TEXTS = [
    "the shuttle reached orbit after launch",
    "god and faith in the church",
    "my graphics card driver crashes",
    "",
    "orbit orbit orbit faith driver",
]


class ConfigSpy:
    """A model that answers with the scikit-learn setting its call ran under."""

    classes_: ClassVar[list[str]] = ["a"]

    def predict(self, x: Any) -> list[bool]:
        return [sklearn.get_config()["skip_parameter_validation"]] * len(x)

    def predict_proba(self, x: Any) -> list[list[float]]:
        return [[1.0 if sklearn.get_config()["skip_parameter_validation"] else 0.0] for _ in x]


def test_model_calls_run_without_parameter_validation_and_leave_the_setting_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LAMBDASERVE_SKLEARN_VALIDATION", raising=False)
    model = EstimatorModel(ConfigSpy())
    assert model.predict(["x", "y"]) == [True, True]
    assert model.predict_proba(["x"]) == [{"a": 1.0}]
    assert sklearn.get_config()["skip_parameter_validation"] is False  # only inside the call


def test_the_validation_can_be_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASERVE_SKLEARN_VALIDATION", "1")
    assert EstimatorModel(ConfigSpy()).predict(["x"]) == [False]


def test_outputs_are_the_same_with_and_without_the_validation(
    text_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAMBDASERVE_SKLEARN_VALIDATION", raising=False)
    fast = load_model(text_model, "pickle")
    monkeypatch.setenv("LAMBDASERVE_SKLEARN_VALIDATION", "1")
    checked = load_model(text_model, "pickle")
    assert fast.predict(TEXTS).tolist() == checked.predict(TEXTS).tolist()
    assert fast.predict_proba(TEXTS) == checked.predict_proba(TEXTS)
    for text in TEXTS:
        assert fast.predict([text]).tolist() == checked.predict([text]).tolist()
