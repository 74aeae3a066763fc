"""Stand-ins for AWS's Lambda base images and for a CPython build, assembled from this machine.

AWS's images cannot be pulled offline, so the image tests serve stand-ins from a local
registry (Debian's docker-registry), and the container configuration (``registries.conf``)
sends every pull of ``public.ecr.aws/lambda/...`` there, as a company's mirror would: the
generated Dockerfile is built exactly as it is, ``FROM public.ecr.aws/lambda/...@sha256:``.

- ``provided:al2023`` (linux/amd64): an OS-only image in AWS's layout. Its userland is this
  machine's: ``/bin/sh`` (dash), the shared libraries Python's modules need (per ``ldd``)
  and those manylinux wheels may expect, a CA bundle where Amazon Linux keeps it,
  ``/var/task``, ``/tmp``, and AWS's environment (``LAMBDA_TASK_ROOT``, ...).
- ``python:3.12`` (linux/arm64): files only (a placeholder interpreter): enough for a build
  that only copies, which is what the arm64 test goes up to: running it needs an emulator.
- A CPython "build" (``cpython-3.11.7-linux-x86_64-gnu/``): the interpreter running the
  tests, its stdlib and libpython, in python-build-standalone's layout, where
  ``LAMBDASERVE_PYTHON_BUILDS`` finds it.

Emulation limits: glibc is this machine's (2.36 here; Amazon Linux 2023 has 2.34), no
Amazon Linux packages, no Runtime Interface Emulator, and the CPython is whatever patch
release runs the tests, not python-build-standalone's. What only AWS's real images show is
listed in docs/aws.md.

Everything lives in a container storage of this module's caller (``storage_env``), never in
the machine's, so a stand-in can never be mistaken for AWS's image by a real build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
from pathlib import Path

PROVIDED = "lambda/provided:al2023"
PYTHON_ARM64 = "lambda/python:3.12"
# Parts of the stdlib no Lambda function needs: leaving them out keeps the image small.
STDLIB_SKIPPED = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip"}
STDLIB_SKIPPED_PREFIX = "config-"  # the static library and Makefile for building Python itself
# What manylinux wheels may take from the system (PEP 600's policy; Amazon Linux has them all).
MANYLINUX_LIBRARIES = (
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1", "libcrypt.so.1",
)  # fmt: skip
CA_BUNDLE = Path("/etc/pki/tls/certs/ca-bundle.crt")  # where Amazon Linux keeps it
# AWS's provided images: no /var/lang/lib (no Python there); the Dockerfile adds it.
AWS_ENV = {
    "LANG": "C.UTF-8",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LD_LIBRARY_PATH": "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "SSL_CERT_FILE": str(CA_BUNDLE),
}
ENTRYPOINT = """\
#!/bin/sh
# Stands in for AWS's /lambda-entrypoint.sh; an image that brings its own runtime replaces it.
echo "This stand-in has no Runtime Interface Emulator" 1>&2
exit 1
"""


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def python_build_name() -> str:
    return (
        f"cpython-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}-linux-x86_64-gnu"
    )


def storage_env(root: Path) -> dict[str, str]:
    """Environment that points buildah (and so lambdaserve's builds) at a storage under ``root``.

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


def mirror_config(path: Path, registry: str) -> dict[str, str]:
    """A registries.conf that sends public.ecr.aws/lambda pulls to the local registry (plain HTTP)."""
    path.write_text(
        'unqualified-search-registries = []\n\n[[registry]]\nprefix = "public.ecr.aws/lambda"\n'
        f'location = "{registry}/lambda"\ninsecure = true\n\n'
        f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n'
    )
    return {"CONTAINERS_REGISTRIES_CONF": str(path)}


def buildah(*args: str) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def publish_stand_ins(work: Path, registry: str) -> None:
    """Build both stand-in bases and push them to ``registry`` as lambda/provided and lambda/python."""
    rootfs = work / "provided-rootfs"
    assemble_os_rootfs(rootfs)
    _commit(rootfs, f"{registry}/{PROVIDED}", "amd64", AWS_ENV)
    arm = work / "python-arm64-rootfs"
    placeholder = arm / "var" / "lang" / "bin" / "python3.12"
    placeholder.parent.mkdir(parents=True)
    placeholder.write_text("#!/bin/sh\necho 'an arm64 interpreter would run here' >&2; exit 1\n")
    (arm / "var" / "task").mkdir(parents=True)
    (arm / "lambda-entrypoint.sh").write_text(ENTRYPOINT)
    arm_env = {**AWS_ENV, "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin:/bin"}
    _commit(arm, f"{registry}/{PYTHON_ARM64}", "arm64", arm_env)
    shutil.rmtree(rootfs)
    shutil.rmtree(arm)


def _commit(rootfs: Path, name: str, arch: str, env: dict[str, str]) -> None:
    container = buildah("from", "--quiet", "scratch")
    try:
        buildah("copy", "--quiet", container, str(rootfs), "/")
        options = [item for key, value in env.items() for item in ("--env", f"{key}={value}")]
        buildah(
            "config", *options, "--workingdir", "/var/task", "--entrypoint", '["/lambda-entrypoint.sh"]',
            "--os", "linux", "--arch", arch, container,
        )  # fmt: skip
        buildah("commit", "--quiet", "--rm", "--format", "docker", container, name)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise
    buildah("push", "--quiet", "--tls-verify=false", "--format", "v2s2", name, f"docker://{name}")
    buildah("rmi", name)


def assemble_os_rootfs(rootfs: Path) -> None:
    """An OS-only image's files: a shell, system libraries, CA certificates, AWS's directories."""
    stdlib = Path(sysconfig.get_path("stdlib"))
    interpreter = Path(sys.base_prefix) / "bin" / f"python{python_version()}"
    shell = rootfs / "bin" / "sh"
    shell.parent.mkdir(parents=True)
    shutil.copy2(shutil.which("dash") or "/bin/dash", shell)  # Debian's /bin/sh: needs only libc
    binaries = [
        interpreter,
        shutil.which("dash") or Path("/bin/dash"),
        *(stdlib / "lib-dynload").glob("*.so"),
    ]
    for library in _shared_libraries([Path(b) for b in binaries]) | _system_libraries(MANYLINUX_LIBRARIES):
        # Under the name the loader asks for; copy2 follows a symlink to the versioned file.
        target = rootfs / library.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)
    # AWS's image trusts Amazon Linux's CA bundle; this one trusts what pip here trusts (this
    # machine may reach the package index through a TLS-intercepting proxy).
    certificates = rootfs / CA_BUNDLE.relative_to("/")
    certificates.parent.mkdir(parents=True)
    shutil.copy2(host_ca_bundle(), certificates)
    for directory in ("var/task", "var/runtime", "opt"):
        (rootfs / directory).mkdir(parents=True)
    (rootfs / "tmp").mkdir(mode=0o1777)
    entrypoint = rootfs / "lambda-entrypoint.sh"
    entrypoint.write_text(ENTRYPOINT)
    entrypoint.chmod(0o755)


def assemble_python_build(builds: Path) -> str:
    """This machine's CPython as a python-build-standalone tree under ``builds``; its version."""
    prefix = Path(sys.base_prefix)
    version = python_version()
    tree = builds / python_build_name()
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(prefix / "bin" / f"python{version}", tree / "bin" / f"python{version}")
    for alias in ("python3", "python"):
        (tree / "bin" / alias).symlink_to(f"python{version}")
    stdlib = Path(sysconfig.get_path("stdlib"))
    shutil.copytree(stdlib, tree / "lib" / f"python{version}", symlinks=True, ignore=_stdlib_ignored)
    for library in (prefix / "lib").glob("libpython*.so*"):  # a --enable-shared build's
        shutil.copy2(library, tree / "lib" / library.name)
    return tree.name.split("-")[1]


def host_ca_bundle() -> Path:
    configured = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    return Path(configured or ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


def image_config(image: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]
    return found


def _stdlib_ignored(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in STDLIB_SKIPPED or n.startswith(STDLIB_SKIPPED_PREFIX)}
    # Optimised bytecode (-O, -OO) is never used by the runtime.
    return skipped | {n for n in names if ".opt-" in n}


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
    """The shared libraries ``ldd`` resolves for these files, but libpython (the CPython build's)."""
    found: set[Path] = set()
    for binary in binaries:
        output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        for match in re.finditer(r"(/\S+\.so[.\d]*)\s+\(0x", output):
            path = Path(match.group(1))
            if not path.name.startswith("libpython"):
                found.add(path)
    return found
