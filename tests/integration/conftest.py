"""Fixtures for the gateway tests: models packaged once per session, a user handler."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from gateway_support import write_tools_handler

from lambdaserve.functions.package import package_model

Bundle = tuple[dict[str, Any], Path]  # (manifest, model file), as Store.add_version takes them


def _package(model: Path, name: str, sample: Any, output: Path) -> Bundle:
    manifest, bundle = package_model(model, output=output, name=name, sample=sample, env_mode="local")
    return manifest.to_dict(), bundle / manifest.model_file


@pytest.fixture(scope="session")
def topics_bundle(text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    out = tmp_path_factory.mktemp("topics-v1")
    return _package(text_model, "topics", ["the rocket reached orbit"], out / "bundle")


@pytest.fixture(scope="session")
def topics_v2_bundle(text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The same classifier written with another pickle protocol: same answers, new content."""
    out = tmp_path_factory.mktemp("topics-v2")
    with text_model.open("rb") as f:
        model = cloudpickle.load(f)
    path = out / "topics.pickle"
    with path.open("wb") as f:
        cloudpickle.dump(model, f, protocol=4)
    return _package(path, "topics", ["the rocket reached orbit"], out / "bundle")


@pytest.fixture(scope="session")
def iris_bundle(iris_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    out = tmp_path_factory.mktemp("iris")
    return _package(iris_models["pickle"], "iris", [[5.1, 3.5, 1.4, 0.2]], out / "bundle")


@pytest.fixture(scope="session")
def sizes_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A regressor: a model without predict_proba."""
    from sklearn.linear_model import LinearRegression

    out = tmp_path_factory.mktemp("sizes")
    x = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]])
    model = LinearRegression().fit(x, x.sum(axis=1))
    path = out / "sizes.pickle"
    with path.open("wb") as f:
        pickle.dump(model, f)
    return _package(path, "sizes", [[1.0, 1.0]], out / "bundle")


@pytest.fixture(scope="session")
def tools_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``tools.py``, a plain user handler (see gateway_support)."""
    return write_tools_handler(tmp_path_factory.mktemp("handler"))
