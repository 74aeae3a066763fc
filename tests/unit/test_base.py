"""Which base image a model's function starts from, and how its pin is kept and read back."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from lambdaserve.deploy.base import (
    Base,
    base_age_days,
    choose_base,
    deployed_python,
    newest_python_build,
    pinned_from_tags,
    target_python,
)
from lambdaserve.errors import LambdaserveError

DIGEST = "sha256:" + "c" * 64


@pytest.mark.parametrize("python", ["3.12", "3.13", "3.14"])
def test_python_312_and_later_use_aws_own_python_image_on_amazon_linux_2023(python: str) -> None:
    base = choose_base(python)
    assert (base.image, base.own_runtime) == (f"public.ecr.aws/lambda/python:{python}", False)
    assert "Amazon Linux 2023" in base.why()


@pytest.mark.parametrize("python", ["3.10", "3.11"])
def test_python_310_and_311_use_al2023_with_a_cpython_of_their_own(python: str) -> None:
    # AWS's python:3.10/3.11 images are Amazon Linux 2: glibc 2.26 takes no numpy 2.3 or later.
    base = choose_base(python, "arm64")
    assert (base.image, base.own_runtime) == ("public.ecr.aws/lambda/provided:al2023", True)
    assert (base.platform, base.wheel_platform) == ("linux/arm64", "aarch64-manylinux_2_34")
    assert "Amazon Linux 2" in base.why()
    assert "glibc 2.26" in base.why()


def test_pythons_without_an_al2023_base_and_unknown_architectures_are_refused_with_a_way_out() -> None:
    with pytest.raises(LambdaserveError, match=r"3\.10 to 3\.14, not 3\.9") as caught:
        choose_base("3.9")
    assert "--python 3.12" in (caught.value.hint or "")
    with pytest.raises(LambdaserveError, match="--arch ppc64le"):
        choose_base("3.12", "ppc64le")


def test_a_model_without_pickled_code_may_run_on_a_newer_python_and_one_with_code_may_not() -> None:
    assert target_python("3.11", carries_code=False, asked=None) == "3.11"
    assert target_python("3.11", carries_code=False, asked="3.12") == "3.12"
    with pytest.raises(LambdaserveError, match="bytecode") as caught:
        target_python("3.11", carries_code=True, asked="3.12")
    assert "leave out --python" in (caught.value.hint or "")
    with pytest.raises(LambdaserveError, match="older"):
        target_python("3.12", carries_code=False, asked="3.11")
    with pytest.raises(LambdaserveError, match="not a Python version"):
        target_python("3.12", carries_code=False, asked="twelve")


def test_the_pin_a_function_records_is_read_back_only_for_the_same_base() -> None:
    pinned = Base("3.11", "x86_64", DIGEST, "2026-11-02T10:20:30Z", "3.11.18")
    tags = pinned.tags()
    assert tags == {
        "lambdaserve:base": f"public.ecr.aws/lambda/provided:al2023@{DIGEST}",
        "lambdaserve:base-created": "2026-11-02T10:20:30Z",
        "lambdaserve:python-build": "3.11.18",
    }
    assert pinned_from_tags(tags, choose_base("3.11")) == pinned
    # Another Python on the same OS-only image brings another CPython: not the same pin.
    assert pinned_from_tags(tags, choose_base("3.10")) is None
    assert pinned_from_tags(tags, choose_base("3.12")) is None
    assert pinned_from_tags({}, choose_base("3.11")) is None
    assert deployed_python(tags) == "3.11"
    assert deployed_python(Base("3.13", digest=DIGEST).tags()) == "3.13"
    assert deployed_python({"lambdaserve:base": "123.dkr.ecr.eu-west-1.amazonaws.com/mine:v1"}) is None


def test_the_base_age_is_counted_from_its_build_time() -> None:
    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert base_age_days("2026-11-02T10:20:30.123456789Z", now) == 30
    assert base_age_days("2026-12-01T00:00:00+00:00", now) == 2
    assert base_age_days("", now) is None
    assert base_age_days("yesterday", now) is None


def test_python_builds_kept_for_offline_machines_are_the_only_ones_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a directory of python-build-standalone trees, as LAMBDASERVE_PYTHON_BUILDS names one
    for name in ("cpython-3.11.7-linux-x86_64-gnu", "cpython-3.11.12-linux-x86_64-gnu"):
        (tmp_path / name / "bin").mkdir(parents=True)
        (tmp_path / name / "bin" / "python3.11").touch()
    monkeypatch.setenv("LAMBDASERVE_PYTHON_BUILDS", str(tmp_path))
    # THEN the newest there is the one taken, and one that is missing is refused with a way out
    assert newest_python_build("3.11", "x86_64") == "3.11.12"
    with pytest.raises(LambdaserveError, match=r"No CPython 3\.11 build for Linux aarch64") as caught:
        newest_python_build("3.11", "arm64")
    assert "cpython-3.11.N-linux-aarch64-gnu" in (caught.value.hint or "")


def test_uv_knows_the_newest_cpython_build_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDASERVE_PYTHON_BUILDS", raising=False)
    version = newest_python_build("3.11", "arm64")
    assert version.startswith("3.11.")
    assert int(version.split(".")[2]) >= 14
