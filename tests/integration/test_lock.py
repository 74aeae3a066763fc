"""The image's full lock, resolved by uv for the image's platform: closure, hashes, wheels only.

These ask the package index (CI reaches PyPI), as a deploy does the first time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdaserve.deploy.base import Base
from lambdaserve.deploy.lock import lock_requirements
from lambdaserve.errors import LambdaserveError


class Steps:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def detail(self, line: str) -> None: ...


def test_the_lock_holds_the_closure_with_hashes_for_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bundle's pins (what the model imports), for a Python 3.11 image on Graviton
    lock = lock_requirements(["scikit-learn==1.9.1", "numpy==2.4.6"], Base("3.11", "arm64"), "", Steps())
    # THEN what they need is pinned too, with boto3 and the runtime interface client the image needs
    packages = lock.packages
    assert {packages["scikit-learn"], packages["numpy"]} == {"1.9.1", "2.4.6"}
    assert {"scipy", "joblib", "threadpoolctl", "boto3", "botocore", "awslambdaric"} <= set(packages)
    # AND every pin has its hashes
    entries = [block for block in lock.text.split("\n") if "==" in block]
    assert len(entries) == len(packages)
    assert lock.text.count("--hash=sha256:") >= len(packages)
    # AND an image with AWS's own Python brings its runtime client: none is locked for it
    assert "awslambdaric" not in lock_requirements(["numpy==2.4.6"], Base("3.12"), "", Steps()).packages


def test_what_is_not_pinned_resolves_as_of_the_bundle_s_making(tmp_path: Path) -> None:
    # boto3 had many releases after 2025-01-01: as of then, the newest was a 1.35
    lock = lock_requirements(["six==1.17.0"], Base("3.12"), "2025-01-01T00:00:00Z", Steps())
    assert lock.packages["boto3"].startswith("1.35.")


def test_a_kept_lock_needs_no_package_index(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps()
    first = lock_requirements(["six==1.17.0"], Base("3.13", "arm64"), "2026-06-01T00:00:00Z", steps)
    assert len(steps.steps) == 1
    # WHEN the index is out of reach, the same lock comes back from lambdaserve's cache
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_OFFLINE", "1")
    again = lock_requirements(["six==1.17.0"], Base("3.13", "arm64"), "2026-06-01T00:00:00Z", steps)
    assert again == first
    assert len(steps.steps) == 1  # nothing was resolved again


def test_a_requirement_without_a_wheel_for_the_image_is_refused_before_anything_is_built() -> None:
    # numpy 2.4 has no wheel for Python 3.10 at all
    with pytest.raises(LambdaserveError, match=r"no complete set of wheels for Python 3\.10") as refused:
        lock_requirements(["numpy==2.4.6"], Base("3.10"), "", Steps())
    assert "numpy==2.4.6" in refused.value.message
    assert "Pin a version that has one" in (refused.value.hint or "")
