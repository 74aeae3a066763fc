"""Benchmark fixtures: the real newsgroups model, packaged, and real test posts as wrk bodies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import harness
import loadtest
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "scikit_learn_data"
if (SHARED_DATA / "20news-bydate_py3.pkz").is_file():
    os.environ.setdefault("SCIKIT_LEARN_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def news_model() -> Path:
    """examples/newsgroups/model.pickle, trained first if it is missing (as make demo does)."""
    path = ROOT / "examples" / "newsgroups" / "model.pickle"
    if not path.is_file():
        subprocess.run([sys.executable, str(ROOT / "examples" / "newsgroups" / "train.py")], check=True)
    return path


@pytest.fixture(scope="session")
def test_posts() -> list[str]:
    from sklearn.datasets import fetch_20newsgroups

    return list(fetch_20newsgroups(subset="test").data[:300])


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def bundle(news_model: Path, workdir: Path) -> Path:
    """The model packaged as a bundle named "news" (so its route is /test/news/predict)."""
    output = workdir / "news"
    done = subprocess.run(
        [
            str(harness.BIN / "lambdaserve"),
            "package",
            str(news_model),
            "--sample",
            '["the space shuttle launch"]',
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LAMBDASERVE_CACHE": str(workdir / "cache")},
    )
    assert done.returncode == 0, f"lambdaserve package failed:\n{done.stdout}\n{done.stderr}"
    return output


@pytest.fixture(scope="session")
def bodies(test_posts: list[str], workdir: Path) -> dict[int, Path]:
    """Request bodies for wrk: one post per request, and 16 posts per request."""
    return {n: loadtest.write_bodies(test_posts, n, workdir / f"bodies-{n}.jsonl") for n in (1, 16)}


@pytest.fixture(scope="session")
def first_body(test_posts: list[str]) -> bytes:
    return json.dumps([test_posts[0]]).encode()
