"""Benchmark fixtures: the real newsgroups model and real test posts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
