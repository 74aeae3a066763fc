"""The image's full lock: every distribution it installs, pinned with hashes, for its platform.

The bundle pins what the model imports (scikit-learn, numpy, ...). The image needs their
whole closure (scipy, joblib, threadpoolctl, ...), boto3 (the runtime reads the model from
S3) and, where the image brings its own CPython, awslambdaric. uv resolves that closure for
the image's platform (manylinux for Amazon Linux 2023's glibc, x86_64 or aarch64) and
Python, wheels only, with every file's hash: ``uv pip compile --python-platform
--only-binary :all: --generate-hashes``.

A lock is reproducible: what is not pinned resolves as of the moment the bundle was made
(``--exclude-newer``), so the same model version gives the same lock on any machine, on any
day, and a deploy with nothing changed never rebuilds because boto3 had a release. Locks
are kept in lambdaserve's cache, so a redeploy needs no package index.

A requirement without a wheel for the platform is found here, before anything is built or
written on AWS: ``deploy --dry-run`` reports it without a builder.

The locked wheels are then installed on the build host into the image context's
``packages/`` (``uv pip install --target --python-platform --require-hashes``), so the
Dockerfile only copies files: an arm64 image builds on an x86_64 host with no emulator.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lambdaserve.bundle.pins import canonical
from lambdaserve.deploy.base import GLIBC, Base
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.pythons import Progress, cache_root, find_uv, stream_command

LOCK_FORMAT = 1  # part of the cache key: a change in how locks are made makes new ones
TAIL_LINES = 20


@dataclass(frozen=True)
class Lock:
    """``requirements.txt`` with ``==`` pins and ``--hash`` lines, for one Python and platform."""

    text: str
    python: str
    platform: str  # uv's name, e.g. aarch64-manylinux_2_34

    @property
    def packages(self) -> dict[str, str]:
        """Canonical name -> version of every locked distribution."""
        found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", self.text, re.MULTILINE)
        return {canonical(name): version for name, version in found}

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def lock_inputs(requirements: list[str], base: Base) -> list[str]:
    """The bundle's pins, plus what the image's runtime needs unless the pins name it."""
    lines = sorted({_checked(r) for r in requirements}, key=lambda r: (canonical(_name(r)), r))
    named = {canonical(_name(r)) for r in lines}
    extra = ["boto3"] + (["awslambdaric"] if base.own_runtime else [])
    return lines + [name for name in extra if name not in named]


def lock_requirements(requirements: list[str], base: Base, exclude_newer: str, progress: Progress) -> Lock:
    """The full lock for ``base``'s Python and platform: from the cache, else resolved by uv."""
    inputs = lock_inputs(requirements, base)
    key = hashlib.sha256(
        json.dumps([LOCK_FORMAT, inputs, base.python, base.wheel_platform, exclude_newer]).encode()
    ).hexdigest()[:24]
    cached = cache_root() / "locks" / f"{key}.txt"
    if cached.is_file():
        return Lock(cached.read_text(), base.python, base.wheel_platform)
    uv = _uv()
    progress.step(
        f"Locking {len(inputs)} requirements and what they need for Python {base.python} on "
        f"{base.wheel_platform} (wheels only, with hashes)"
    )
    with tempfile.TemporaryDirectory(prefix="lambdaserve-lock-") as scratch:
        wanted = Path(scratch) / "requirements.in"
        wanted.write_text("".join(f"{line}\n" for line in inputs))
        command = [uv, "pip", "compile", str(wanted), "--quiet", "--no-header", "--no-annotate"]
        command += ["--generate-hashes", "--only-binary", ":all:", "--python-version", base.python]
        command += ["--python-platform", base.wheel_platform, "--no-config"]
        if exclude_newer:
            command += ["--exclude-newer", exclude_newer]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise LambdaserveError(
                "Locking the requirements took over 5 minutes (is the package index slow?).",
                "Rerun the command; a lock, once made, is kept.",
            ) from None
    if done.returncode != 0:
        raise _lock_error(done.stderr, base)
    text = done.stdout
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(cached)
    return Lock(text, base.python, base.wheel_platform)


def _lock_error(stderr: str, base: Base) -> LambdaserveError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(line.removeprefix("error:").removeprefix("\u00d7").strip() for line in lines)
    if any(word in text.lower() for word in ("dns error", "connect", "network", "timed out", "offline")):
        return LambdaserveError(
            "The package index cannot be reached to lock the image's requirements: " + text[-300:],
            "Check the network (or UV_INDEX_URL / UV_DEFAULT_INDEX for a mirror); a lock, once made, is "
            "kept in lambdaserve's cache.",
        )
    return LambdaserveError(
        f"The requirements have no complete set of wheels for Python {base.python} on Linux "
        f"{base.machine} (Amazon Linux 2023, glibc 2.34): " + text[-600:],
        "The image has no compiler, so every distribution needs a manylinux wheel for it. Pin a version "
        "that has one (lambdaserve models push ... --requirement name==version), deploy the other "
        "architecture (--arch), or pass --image-uri with an image you built.",
    )


def pip_platforms(base: Base) -> list[str]:
    """pip's ``--platform`` values for the base: pip does not widen a manylinux tag to older ones."""
    newest = int(GLIBC.split("_")[1])
    return [f"manylinux_2_{minor}_{base.machine}" for minor in range(newest, 16, -1)] + [
        f"manylinux2014_{base.machine}"
    ]


def pip_install_command(base: Base, target: str = "packages") -> str:
    """The pip command that installs a lock for the base, as lambdaserve does with uv."""
    platforms = " ".join(f"--platform {p}" for p in pip_platforms(base))
    return (
        f"pip install --require-hashes --only-binary=:all: --no-deps --target {target} --implementation cp "
        f"--python-version {base.python} {platforms} -r requirements.txt"
    )


def install_lock(lock: Lock, target: Path, progress: Progress) -> None:
    """Install exactly the locked wheels, checked against their hashes, into ``target``."""
    uv = _uv()
    with tempfile.TemporaryDirectory(prefix="lambdaserve-install-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(lock.text)
        command = [uv, "pip", "install", "--quiet", "--target", str(target), "--no-deps"]
        command += ["--require-hashes", "--only-binary", ":all:", "--no-config"]
        command += ["--python-version", lock.python, "--python-platform", lock.platform]
        command += ["-r", str(requirements)]
        progress.step(f"Installing {len(lock.packages)} locked wheels for {lock.platform} into the image")
        returncode, tail = stream_command(command, progress, TAIL_LINES)
    if returncode != 0:
        raise LambdaserveError(
            "Installing the locked wheels failed:\n" + "\n".join(tail),
            "Check that the package index can be reached; a hash mismatch means a wheel changed on the "
            "index since it was locked (clear lambdaserve's cache: locks/).",
        )


def compile_bytecode(directory: Path, python: str, prefix: str, progress: Progress) -> bool:
    """Compile ``directory``'s modules for ``python`` as they will sit at ``prefix`` in the image.

    Lambda's file system is read-only: what is not compiled in the image is compiled again
    at every cold start. Bytecode is the same on every architecture, so any CPython of the
    same minor version compiles it here; ``unchecked-hash`` makes it independent of file
    times. False when no such CPython is found (the image then works, with slower cold starts).
    """
    interpreter = _interpreter(python)
    if interpreter is None:
        progress.step(f"No Python {python} here to compile bytecode: the function compiles at cold start")
        return False
    command = [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    command += ["-s", str(directory), "-p", prefix, str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    # compileall returns 1 when a file does not compile (test data written in Python 2, ...):
    # the rest is compiled, which is what matters.
    return done.returncode in (0, 1)


def _interpreter(python: str) -> str | None:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    uv = find_uv()
    if uv is not None:
        done = subprocess.run(
            [uv, "python", "find", "--no-config", python],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return None


def _uv() -> str:
    uv = find_uv()
    if uv is None:
        raise LambdaserveError(
            "Building a Lambda image needs uv, which locks and installs its wheels.",
            "Install lambdaserve's AWS extra: pip install 'lambdaserve[aws]' (it brings uv).",
        )
    return uv


def _checked(requirement: str) -> str:
    line = requirement.strip()
    # One requirement per line, no pip options: "-r other.txt" or "--index-url" would change where
    # packages come from without changing what the manifest says.
    if not line or "\n" in line or line.startswith("-") or not re.match(r"[A-Za-z0-9]", line):
        raise LambdaserveError(
            f"{requirement!r} is not a requirement the image can install.",
            "Give requirements as name==version (e.g. scikit-learn==1.9.1), one per --requirement.",
        )
    return line


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return match.group(0) if match else requirement
