"""Which Python an execution environment runs in.

A model pickled under one library version often breaks under another, so a bundle runs
with exactly its pinned versions:

- ``local``: this Python, whatever it has (with a warning naming each mismatch);
- ``isolated``: a virtual environment built from the pins, cached by their hash;
- ``auto`` (default): ``local`` when every pin matches, else ``isolated``.

Environments are built with uv when it is available, else with venv and pip, under
``$LAMBDASERVE_CACHE`` (default ``~/.cache/lambdaserve``). A build writes its marker file
last, so an interrupted build is redone, never used half-made. The worker in an
isolated environment imports only ``lambdaserve.runtime``, staged beside it as the
Lambda image stages it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lambdaserve.bundle.pins import canonical, current_python_version, installed_version, parse_requirement
from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime import runtime_files

ENV_MODES = ("auto", "local", "isolated")
MARKER = "lambdaserve-env.json"


class Progress(Protocol):
    """Where long work reports: ``step`` for milestones, ``detail`` for tool output lines."""

    def step(self, message: str) -> None: ...

    def detail(self, line: str) -> None: ...


class SilentProgress:
    def step(self, message: str) -> None:
        pass

    def detail(self, line: str) -> None:
        pass


@dataclass(frozen=True)
class Mismatch:
    name: str
    wanted: str | None
    found: str | None

    def __str__(self) -> str:
        if self.found is None:
            return f"{self.name} {self.wanted or ''} is not installed".replace("  ", " ")
        return f"{self.name} {self.wanted} is wanted, {self.found} is installed"


@dataclass
class PythonEnvironment:
    """An interpreter to run workers with, and what to put on their PYTHONPATH."""

    python: str
    isolated: bool
    pythonpath: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    location: Path | None = None

    def child_env(self) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1"}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def describe(self) -> str:
        if self.isolated:
            return f"isolated environment {self.location}"
        return f"this Python ({sys.executable})"


def cache_root() -> Path:
    configured = os.environ.get("LAMBDASERVE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lambdaserve"


def find_mismatches(requirements: list[str], python_version: str) -> list[Mismatch]:
    """How this Python differs from what the bundle pins (an unpinned name must just exist)."""
    found: list[Mismatch] = []
    if python_version != current_python_version():
        found.append(Mismatch("python", python_version, current_python_version()))
    for requirement in requirements:
        name, wanted = _split(requirement)
        version = installed_version(name)
        if version is None or (wanted is not None and version != wanted):
            found.append(Mismatch(name, wanted, version))
    return found


def resolve_environment(
    requirements: list[str], python_version: str, mode: str = "auto", progress: Progress | None = None
) -> PythonEnvironment:
    if mode not in ENV_MODES:
        raise LambdaserveError(f"Unknown --env {mode!r}.", "Use one of: " + ", ".join(ENV_MODES) + ".")
    mismatches = find_mismatches(requirements, python_version)
    if mode == "local" or (mode == "auto" and not mismatches):
        return PythonEnvironment(python=sys.executable, isolated=False, mismatches=mismatches)
    return build_environment(requirements, python_version, progress or SilentProgress())


def environment_key(requirements: list[str], python_version: str) -> str:
    spec = json.dumps({"python": python_version, "requirements": sorted(requirements, key=canonical)})
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def build_environment(requirements: list[str], python_version: str, progress: Progress) -> PythonEnvironment:
    root = cache_root()
    location = root / "envs" / f"py{python_version}-{environment_key(requirements, python_version)}"
    location.parent.mkdir(parents=True, exist_ok=True)
    with _locked(location.with_suffix(".lock")):
        python = location / "bin" / "python"
        if not (location / MARKER).is_file():
            if location.exists():
                progress.step(f"Removing an unfinished environment at {location}")
                shutil.rmtree(location)
            _create(location, requirements, python_version, progress)
            (location / MARKER).write_text(
                json.dumps({"python": python_version, "requirements": requirements}, indent=2)
            )
    return PythonEnvironment(
        python=str(python), isolated=True, pythonpath=str(stage_runtime(root)), location=location
    )


def _create(location: Path, requirements: list[str], python_version: str, progress: Progress) -> None:
    base = find_python(python_version)
    uv = find_uv()
    shown = ", ".join(requirements) or "no packages"
    progress.step(f"Building an environment with Python {python_version} and {shown}")
    if uv:
        _run([uv, "venv", "--quiet", "--python", base, str(location)], progress)
        if requirements:
            # Precompiled bytecode: without it every cold start compiles the libraries again.
            python = str(location / "bin" / "python")
            _run([uv, "pip", "install", "--compile-bytecode", "--python", python, *requirements], progress)
    else:
        _run([base, "-m", "venv", str(location)], progress)
        if requirements:
            pip = [str(location / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
            _run([*pip, *requirements], progress)
    progress.step(f"Environment ready at {location}")


def find_uv() -> str | None:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def find_python(version: str) -> str:
    if version == current_python_version():
        return sys.executable
    candidate = shutil.which(f"python{version}")
    if candidate:
        return candidate
    raise LambdaserveError(
        f"The bundle was made with Python {version}, which is not installed here.",
        f"Install Python {version} (e.g. `uv python install {version}`), or run with --env local to "
        f"try Python {current_python_version()}.",
    )


def stream_command(command: list[str], progress: Progress, tail_lines: int = 20) -> tuple[int, list[str]]:
    """Run a tool, its output shown line by line as progress; (exit code, its last lines)."""
    tail: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    ) as process:
        for line in process.stdout or ():
            line = line.rstrip()
            if line:
                tail = [*tail[-(tail_lines - 1) :], line]
                progress.detail(line)
    return process.returncode, tail


def _run(command: list[str], progress: Progress) -> None:
    returncode, tail = stream_command(command, progress)
    if returncode != 0:
        raise LambdaserveError(
            f"Building the environment failed: {' '.join(command[:3])} ... exited with "
            f"{returncode}.\n" + "\n".join(tail),
            "Check that the pinned versions exist for this Python and platform, and that the "
            "package index is reachable; fix a wrong pin with --requirement name==version.",
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_runtime(root: Path) -> Path:
    """Copy the runtime into the cache once per version of its code; return the directory."""
    files = runtime_files()
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in files.items())).hexdigest()[:16]
    target = root / "runtime" / digest
    if not (target / MARKER).is_file():
        staging = target.with_name(f"{digest}.tmp{os.getpid()}")
        for relative, content in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(content)
        (staging / MARKER).write_text("{}")
        with contextlib.suppress(OSError):  # another process staged it first: same content
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _split(requirement: str) -> tuple[str, str | None]:
    if "==" in requirement:
        return parse_requirement(requirement)
    return requirement.strip(), None
