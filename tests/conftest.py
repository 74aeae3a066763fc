"""Shared fixtures: models in every format, made once per test session.

Models are trained here, not committed: the iris pipeline from the tabular example in
every format, a small text classifier with a class pickled by value (the shape of the
post's model, trained on a handful of sentences so it is instant), and, for the tests
marked slow, the real 20 Newsgroups model from the example script.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sample_texts import TEXTS, TOPICS

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"
SHARED_DATA = ROOT.parent / "shared" / "data" / "scikit_learn_data"

# The offline 20 Newsgroups copy beside the project, when there is one (make test sets it too).
if (SHARED_DATA / "20news-bydate_py3.pkz").is_file():
    os.environ.setdefault("SCIKIT_LEARN_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session", autouse=True)
def lambdaserve_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Isolated environments built by tests live in the session's temporary directory."""
    cache = tmp_path_factory.mktemp("lambdaserve-cache")
    os.environ["LAMBDASERVE_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris_models(models_dir: Path) -> dict[str, Path]:
    """The tabular example's pipeline saved as iris.pickle / .joblib / .skops / .onnx."""
    example = runpy.run_path(str(ROOT / "examples" / "tabular" / "train.py"))
    model, names = example["train"]()
    paths = {}
    for fmt in example["FORMATS"]:
        path = models_dir / f"iris.{fmt}"
        example["save"](model, names, fmt, path)
        paths[fmt] = path
    return paths


@pytest.fixture(scope="session")
def iris_estimator(iris_models: dict[str, Path]) -> Any:
    import pickle

    with iris_models["pickle"].open("rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="session")
def text_model(models_dir: Path) -> Path:
    """A topic classifier whose wrapper class cloudpickle must pickle by value."""
    import cloudpickle
    import numpy as np

    example = runpy.run_path(str(ROOT / "examples" / "newsgroups" / "train.py"))
    model = example["build_model"]().fit(TEXTS, np.array(TOPICS))
    path = models_dir / "topics.pickle"
    with path.open("wb") as f:
        cloudpickle.dump(model, f)
    return path


@pytest.fixture(scope="session")
def newsgroups_model(models_dir: Path) -> Path:
    """The real example, trained offline from the shared 20 Newsgroups copy (about 25 s).

    The script's output is kept beside the model as ``news.log``.
    """
    path = models_dir / "news.pickle"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "newsgroups" / "train.py"), "-o", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    path.with_suffix(".log").write_text(done.stdout)
    return path
