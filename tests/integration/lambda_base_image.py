"""A stand-in for AWS's Lambda Python base image, assembled from this machine's Python.

``public.ecr.aws/lambda/python:X.Y`` cannot be pulled offline, so the image test builds
an image of that name with buildah from scratch, in AWS's layout:

- ``/var/lang``: the interpreter running the tests and its stdlib, with pip copied from this
  environment, and the shared libraries they need per ``ldd`` plus those manylinux wheels
  may expect of the system;
- ``/var/runtime``: awslambdaric and its dependencies, copied from this environment as
  installed (AWS's image ships the runtime interface client there);
- ``/lambda-entrypoint.sh`` (under a ``/bin/sh`` that is this machine's dash): with
  ``AWS_LAMBDA_RUNTIME_API`` set, ``exec python3 -m awslambdaric HANDLER`` from ``/var/task``;
- ``ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime``, ``WORKDIR /var/task``.

Emulation limits: no Amazon Linux userland (no yum/dnf, no ``/usr/bin`` tools), no
Runtime Interface Emulator (without ``AWS_LAMBDA_RUNTIME_API`` the entrypoint exits), no
boto3 among the runtime's libraries, x86_64 hosts only, and the interpreter is whatever
patch release runs the tests. Above all, glibc is this machine's: wheels that Amazon
Linux 2 (glibc 2.26, under AWS's images up to Python 3.11) refuses install here. What only
AWS's real image can show is listed in docs/aws.md.

All of it lives in a container storage of its own (``storage_env``), never in the
machine's, so the stand-in can never be mistaken for AWS's image by a real build.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

BASE_REPOSITORY = "public.ecr.aws/lambda/python"
RUNTIME_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")
# Parts of the stdlib no Lambda function needs: leaving them out keeps the image small.
STDLIB_SKIPPED = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip"}
STDLIB_SKIPPED_PREFIX = "config-"  # the static library and Makefile for building Python itself
# What manylinux wheels may take from the system (PEP 600's policy; Amazon Linux has them all).
MANYLINUX_LIBRARIES = (
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1", "libcrypt.so.1",
)  # fmt: skip
CA_BUNDLE = Path("/etc/pki/tls/certs/ca-bundle.crt")  # where Amazon Linux keeps it
ENTRYPOINT = """\
#!/bin/sh
# Stands in for AWS's /lambda-entrypoint.sh: the handler comes as the only argument (CMD).
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  echo "This stand-in has no Runtime Interface Emulator: set AWS_LAMBDA_RUNTIME_API" 1>&2
  exit 1
fi
export PYTHONPATH="${LAMBDA_RUNTIME_DIR}"
exec python3 -m awslambdaric "$_HANDLER"
"""


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def base_image_name(version: str | None = None) -> str:
    return f"{BASE_REPOSITORY}:{version or python_version()}"


def storage_env(root: Path) -> dict[str, str]:
    """Environment that points buildah (and so ``build_image``) at a storage under ``root``.

    overlay when the kernel and filesystem allow it (as root on ext4 or xfs), else vfs,
    which works anywhere but copies every layer in full.
    """
    root.mkdir(parents=True, exist_ok=True)
    config = root / "storage.conf"
    env = {"CONTAINERS_STORAGE_CONF": str(config)}
    for driver in ("overlay", "vfs"):
        config.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{root / driver}"\nrunroot = "{root / "run"}"\n'
        )
        probe = subprocess.run(
            ["buildah", "images"], env={**os.environ, **env}, capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return env
    raise RuntimeError(f"buildah cannot use a container storage under {root}:\n{probe.stderr}")


def buildah(*args: str) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def image_exists(name: str) -> bool:
    return bool(buildah("images", "--quiet", "--filter", f"reference={name}"))


def ensure_base_image(work: Path) -> str:
    """The stand-in base image for this Python, built unless the storage already has it."""
    name = base_image_name()
    if image_exists(name):
        return name
    rootfs = work / "rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    assemble_rootfs(rootfs)
    container = buildah("from", "--quiet", "scratch")
    try:
        buildah("copy", "--quiet", container, str(rootfs), "/")
        buildah(
            "config",
            "--env", "LANG=C.UTF-8",
            "--env", "PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin",
            "--env", "LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64",
            "--env", "LAMBDA_TASK_ROOT=/var/task",
            "--env", "LAMBDA_RUNTIME_DIR=/var/runtime",
            "--env", f"PIP_CERT={CA_BUNDLE}",
            "--env", f"SSL_CERT_FILE={CA_BUNDLE}",
            "--workingdir", "/var/task",
            "--entrypoint", '["/lambda-entrypoint.sh"]',
            "--os", "linux",
            "--arch", "amd64",
            container,
        )  # fmt: skip
        buildah("commit", "--quiet", "--rm", container, name)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise
    shutil.rmtree(rootfs)
    return name


def assemble_rootfs(rootfs: Path) -> None:
    prefix = Path(sys.base_prefix)
    version = python_version()
    lang = rootfs / "var" / "lang"
    stdlib = Path(sysconfig.get_path("stdlib"))  # the base interpreter's, also from a venv

    (lang / "bin").mkdir(parents=True)
    interpreter = prefix / "bin" / f"python{version}"
    shutil.copy2(interpreter, lang / "bin" / f"python{version}")
    for alias in ("python3", "python"):
        (lang / "bin" / alias).symlink_to(f"python{version}")
    shutil.copytree(stdlib, lang / "lib" / f"python{version}", symlinks=True, ignore=_stdlib_ignored)
    for library in (prefix / "lib").glob("libpython*.so*"):  # a --enable-shared build's
        shutil.copy2(library, lang / "lib" / library.name)
    libraries = [interpreter, *(stdlib / "lib-dynload").glob("*.so")]

    site_packages = lang / "lib" / f"python{version}" / "site-packages"
    _copy_distribution("pip", site_packages)
    runtime = rootfs / "var" / "runtime"
    for name in RUNTIME_DISTRIBUTIONS:
        libraries += _copy_distribution(name, runtime)

    shell = rootfs / "bin" / "sh"
    shell.parent.mkdir(parents=True)
    shutil.copy2(shutil.which("dash") or "/bin/dash", shell)  # Debian's /bin/sh: needs only libc
    for library in _shared_libraries([*libraries, shell]) | _system_libraries(MANYLINUX_LIBRARIES):
        # Under the name the loader asks for; copy2 follows a symlink to the versioned file.
        target = rootfs / library.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)
    # AWS's image trusts Amazon Linux's CA bundle; this one trusts what pip here trusts (this
    # machine may reach the package index through a TLS-intercepting proxy).
    certificates = rootfs / CA_BUNDLE.relative_to("/")
    certificates.parent.mkdir(parents=True)
    shutil.copy2(host_ca_bundle(), certificates)
    (rootfs / "var" / "task").mkdir()
    (rootfs / "tmp").mkdir(mode=0o1777)
    entrypoint = rootfs / "lambda-entrypoint.sh"
    entrypoint.write_text(ENTRYPOINT)
    entrypoint.chmod(0o755)


def host_ca_bundle() -> Path:
    configured = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    return Path(configured or ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


def _stdlib_ignored(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in STDLIB_SKIPPED or n.startswith(STDLIB_SKIPPED_PREFIX)}
    # Optimised bytecode (-O, -OO) is never used by the runtime.
    return skipped | {n for n in names if ".opt-" in n}


def _copy_distribution(name: str, target: Path) -> list[Path]:
    """Copy a distribution installed here (per its RECORD) into ``target``; return its shared objects."""
    distribution = metadata.distribution(name)
    objects = []
    for file in distribution.files or ():
        source = Path(str(distribution.locate_file(file)))
        if ".." in file.parts or not source.is_file():
            continue  # scripts installed outside site-packages, records of deleted files
        destination = target / file
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        if source.suffix == ".so":
            objects.append(source)
    return objects


def _system_libraries(names: tuple[str, ...]) -> set[Path]:
    """Where the loader finds these libraries here, per ``ldconfig -p``."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    cache = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"^\s*(\S+) \(libc6,x86-64[^)]*\) => (\S+)$", cache, re.MULTILINE))
    missing = [name for name in names if name not in found]
    if missing:
        raise RuntimeError(f"ldconfig knows no {', '.join(missing)}: install them to build the base image")
    return {Path(found[name]) for name in names}


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries ``ldd`` resolves for these files, but libpython."""
    found: set[Path] = set()
    for binary in binaries:
        output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        for match in re.finditer(r"(/\S+\.so[.\d]*)\s+\(0x", output):
            path = Path(match.group(1))
            if not path.name.startswith("libpython"):  # copied into /var/lang/lib
                found.add(path)
    return found
