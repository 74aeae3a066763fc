"""Which base image a model's function image starts from, by its Python and architecture.

Every image is built on Amazon Linux 2023 (glibc 2.34), whose glibc takes today's
manylinux wheels:

- Python 3.12 and later: AWS's Lambda Python image of that version
  (``public.ecr.aws/lambda/python:3.12``), which brings the interpreter and the runtime
  interface client.
- Python 3.10 and 3.11: AWS's images of those versions run Amazon Linux 2 (glibc 2.26, end
  of support 2026-06-30), where numpy 2.3 and later, and scipy 1.15 and later, have no
  wheel. So the image starts from AWS's OS-only image (``provided:al2023``) and brings its
  own CPython: a python-build-standalone build (the relocatable CPython builds uv
  installs), copied to ``/var/lang`` as in AWS's images, with ``awslambdaric`` as the
  entry point, as AWS documents for a Python version it has no image for. Amazon Linux
  2023's own ``python3.11`` package would need a ``RUN dnf install`` in the image (so an
  emulator for an arm64 image built on x86_64) and has no 3.10.

A base is pinned by digest (and the CPython build by version) the first time it is used,
and the pin stays with the deployed function (its tags) and the local record: the same
deploy builds the same image. ``deploy --refresh-base`` takes the current base and CPython
patch release, which is how their security fixes arrive.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.pythons import Progress, cache_root, find_uv, stream_command

PYTHON_IMAGE = "public.ecr.aws/lambda/python"
OS_IMAGE = "public.ecr.aws/lambda/provided:al2023"
AWS_IMAGE_PYTHONS = ("3.12", "3.13", "3.14")
OWN_RUNTIME_PYTHONS = ("3.10", "3.11")
GLIBC = "2_34"  # Amazon Linux 2023
# Lambda's architecture names -> (the OCI platform, the wheels' machine name, uv's)
MACHINES = {"x86_64": ("linux/amd64", "x86_64"), "arm64": ("linux/arm64", "aarch64")}

TAG_BASE = "lambdaserve:base"
TAG_BASE_CREATED = "lambdaserve:base-created"
TAG_PYTHON_BUILD = "lambdaserve:python-build"


@dataclass(frozen=True)
class Base:
    """The image a function image is built FROM, and for Python 3.10/3.11 the CPython it adds."""

    python: str  # "3.11"
    arch: str = "x86_64"  # Lambda's name: x86_64 | arm64
    digest: str = ""  # "sha256:...": the pinned image, once known
    created: str = ""  # when that image was built (ISO 8601)
    python_build: str = ""  # "3.11.18": the CPython release copied in (Python 3.10/3.11)

    @property
    def image(self) -> str:
        return OS_IMAGE if self.own_runtime else f"{PYTHON_IMAGE}:{self.python}"

    @property
    def own_runtime(self) -> bool:
        """True when the image brings its own CPython and runtime interface client."""
        return self.python in OWN_RUNTIME_PYTHONS

    @property
    def platform(self) -> str:
        return MACHINES[self.arch][0]

    @property
    def machine(self) -> str:
        return MACHINES[self.arch][1]

    @property
    def wheel_platform(self) -> str:
        """uv's name of the platform the locked wheels are for."""
        return f"{self.machine}-manylinux_{GLIBC}"

    @property
    def reference(self) -> str:
        """What the Dockerfile's FROM names: the image by digest once pinned (the tag is then a comment)."""
        return f"{self.image}@{self.digest}" if self.digest else self.image

    @property
    def pinned(self) -> bool:
        return bool(self.digest) and (bool(self.python_build) or not self.own_runtime)

    def describe(self) -> str:
        what = f"{self.image} ({self.arch})"
        if self.digest:
            what += f" @ {self.digest[:19]}"
        if self.created:
            what += f", built {self.created[:10]}"
        if self.own_runtime:
            build = (
                f"CPython {self.python_build}" if self.python_build else f"the newest CPython {self.python}"
            )
            what += f", with {build} from python-build-standalone"
        return what

    def why(self) -> str:
        if self.own_runtime:
            return (
                f"Python {self.python}: AWS's python:{self.python} image runs Amazon Linux 2 (glibc 2.26, "
                "end of support 2026-06-30), too old for today's wheels; the image is Amazon Linux "
                f"2023 with its own CPython {self.python} and awslambdaric"
            )
        return f"Python {self.python}: AWS's own Lambda Python image, Amazon Linux 2023"

    def tags(self) -> dict[str, str]:
        """The function's tags that record the pin (status --remote, and the next deploy, read them)."""
        tags = {TAG_BASE: self.reference}
        if self.created:
            tags[TAG_BASE_CREATED] = self.created
        if self.python_build:
            tags[TAG_PYTHON_BUILD] = self.python_build
        return tags


def base_age_days(created: str, now: datetime | None = None) -> int | None:
    """Days since the base image was built (its security fixes are that old), or None if unknown."""
    if not created:
        return None
    try:
        # Builders write nanoseconds ("2026-11-02T10:20:30.123456789Z"): keep microseconds.
        trimmed = re.sub(r"(\.\d{6})\d+", r"\1", created.replace("Z", "+00:00"))
        built = datetime.fromisoformat(trimmed)
    except ValueError:
        return None
    if built.tzinfo is None:
        built = built.replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - built).days


def choose_base(python: str, arch: str = "x86_64") -> Base:
    """The base for a model's Python ("3.11") on an architecture, not yet pinned."""
    if arch not in MACHINES:
        raise LambdaserveError(
            f"--arch {arch} is not an architecture Lambda runs.",
            "Use x86_64, or arm64 (Graviton: about 20% cheaper per GB-second).",
        )
    if python not in AWS_IMAGE_PYTHONS + OWN_RUNTIME_PYTHONS:
        raise LambdaserveError(
            f"lambdaserve builds Lambda images for Python 3.10 to 3.14, not {python}.",
            "Make the model with a Python from 3.10 on, or, if it carries no pickled code, deploy it "
            "with --python 3.12 (a newer Python, with the same pinned libraries).",
        )
    return Base(python=python, arch=arch)


def pinned_from_tags(tags: dict[str, str], wanted: Base) -> Base | None:
    """The pin a deployed function records, if it is one of the same base image and Python."""
    recorded = tags.get(TAG_BASE, "")
    repository, _, digest = recorded.partition("@")
    if not digest or repository != wanted.image:
        return None
    build = tags.get(TAG_PYTHON_BUILD, "")
    if wanted.own_runtime and not build.startswith(f"{wanted.python}."):
        return None
    return replace(wanted, digest=digest, created=tags.get(TAG_BASE_CREATED, ""), python_build=build)


def deployed_python(tags: dict[str, str]) -> str | None:
    """The Python a deployed function's image runs, per its tags (None: not lambdaserve's image)."""
    build = tags.get(TAG_PYTHON_BUILD, "")
    if build:
        return ".".join(build.split(".")[:2])
    repository, _, tag = tags.get(TAG_BASE, "").partition("@")[0].rpartition(":")
    return tag if repository == PYTHON_IMAGE and re.fullmatch(r"3\.\d{1,2}", tag) else None


def target_python(model_python: str, carries_code: bool, asked: str | None) -> str:
    """The Python the image runs: the model's own, or a newer one asked for (--python)."""
    if not asked or asked == model_python:
        return model_python
    if not re.fullmatch(r"3\.\d{1,2}", asked):
        raise LambdaserveError(f"--python {asked!r} is not a Python version.", "Give major.minor, e.g. 3.12.")
    if carries_code:
        raise LambdaserveError(
            f"The model carries code pickled by value under Python {model_python}, whose bytecode "
            f"Python {asked} cannot run.",
            f"Deploy it with its own Python (leave out --python), or pickle it again under Python {asked}.",
        )
    if _minor(asked) < _minor(model_python):
        raise LambdaserveError(
            f"--python {asked} is older than the Python {model_python} the model was made with.",
            "Give the model's own Python or a newer one (its pinned libraries must have wheels for it).",
        )
    return asked


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def python_builds_dir() -> tuple[Path, bool]:
    """Where CPython builds are kept, and whether they may be downloaded there.

    ``LAMBDASERVE_PYTHON_BUILDS`` names a directory of python-build-standalone "install_only"
    trees (``cpython-3.11.18-linux-aarch64-gnu/``) for machines that cannot download them:
    only those are used. Otherwise uv downloads them into lambdaserve's cache.
    """
    offline = os.environ.get("LAMBDASERVE_PYTHON_BUILDS")
    if offline:
        return Path(offline), False
    return cache_root() / "python-builds", True


def _build_dirs(directory: Path, python: str, machine: str) -> dict[str, Path]:
    found = {}
    pattern = re.compile(rf"cpython-({re.escape(python)}\.\d+)-linux-{machine}-gnu")
    for path in directory.glob(f"cpython-{python}.*-linux-{machine}-gnu") if directory.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match and (path / "bin" / f"python{python}").exists():
            found[match.group(1)] = path
    return found


def newest_python_build(python: str, arch: str) -> str:
    """The newest CPython patch release of ``python`` for ``arch`` ("3.11.18").

    uv knows the python-build-standalone releases without asking the network; with
    ``LAMBDASERVE_PYTHON_BUILDS``, the newest build kept there.
    """
    machine = MACHINES[arch][1]
    directory, downloads = python_builds_dir()
    if not downloads:
        kept = _build_dirs(directory, python, machine)
        if not kept:
            raise LambdaserveError(
                f"No CPython {python} build for Linux {machine} in {directory} (LAMBDASERVE_PYTHON_BUILDS).",
                f"Put a python-build-standalone install_only tree there as cpython-{python}.N-linux-"
                f"{machine}-gnu/, or unset LAMBDASERVE_PYTHON_BUILDS to let uv download one.",
            )
        return max(kept, key=_version_key)
    uv = find_uv()
    if uv is None:
        raise LambdaserveError(
            f"An image for Python {python} brings its own CPython, which lambdaserve gets with uv.",
            "Install uv (pip install 'lambdaserve[aws]' brings it), or deploy with --python 3.12.",
        )
    command = [uv, "python", "list", "--all-versions", "--all-arches", "--only-downloads"]
    command += ["--output-format", "json", f"cpython-{python}-linux-{machine}-gnu"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        listed = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        listed = []
    versions = [
        str(item["version"])
        for item in listed
        if item.get("implementation") == "cpython"
        and item.get("arch") == machine
        and item.get("os") == "linux"
        and item.get("libc") == "gnu"
        and item.get("variant", "default") == "default"  # not the free-threaded or debug builds
        and str(item.get("version", "")).startswith(f"{python}.")
    ]
    if not versions:
        raise LambdaserveError(
            f"uv knows no CPython {python} build for Linux {machine}.",
            "Upgrade uv (pip install -U uv), or deploy with --python 3.12 if the model carries no code.",
        )
    return max(versions, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def python_build(base: Base, progress: Progress) -> Path:
    """The directory of the pinned CPython build (bin/, lib/): downloaded by uv the first time."""
    directory, downloads = python_builds_dir()
    kept = _build_dirs(directory, base.python, base.machine).get(base.python_build)
    if kept is not None:
        return kept
    key = f"cpython-{base.python_build}-linux-{base.machine}-gnu"
    uv = find_uv()
    if not downloads or uv is None:
        raise LambdaserveError(
            f"CPython {base.python_build} for Linux {base.machine} is not in {directory}.",
            f"Put the python-build-standalone install_only tree there as {key}/"
            if not downloads
            else "Install uv (pip install 'lambdaserve[aws]' brings it).",
        )
    progress.step(
        f"Downloading CPython {base.python_build} for Linux {base.machine} (python-build-standalone)"
    )
    directory.mkdir(parents=True, exist_ok=True)
    returncode, tail = stream_command(
        [uv, "python", "install", "--install-dir", str(directory), key], progress
    )
    kept = _build_dirs(directory, base.python, base.machine).get(base.python_build)
    if returncode != 0 or kept is None:
        raise LambdaserveError(
            f"uv could not install CPython {base.python_build} for Linux {base.machine}:\n" + "\n".join(tail),
            "Check the network (uv downloads from GitHub's python-build-standalone releases), or set "
            "LAMBDASERVE_PYTHON_BUILDS to a directory holding the build.",
        )
    return kept


def copy_python_build(source: Path, target: Path) -> None:
    """The build's bin/, lib/ (and include/, share/) into the image context's python/."""
    shutil.copytree(source, target, symlinks=True)
