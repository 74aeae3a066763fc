"""The Lambda image's build context, tag and builder, without building anything.

Builders are stand-in executables on a PATH of the test's own: the boundary is the
command line, as it is for the real docker, podman and buildah.
"""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import Any

import pytest

from lambdaserve.deploy.base import Base
from lambdaserve.deploy.image import (
    HANDLER,
    Builder,
    ImageContext,
    build_image,
    detect_builder,
    image_context,
    image_tag,
    write_context,
)
from lambdaserve.deploy.lock import Lock
from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime import runtime_files

DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is it running?"


class RecordedProgress:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.details: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def detail(self, line: str) -> None:
        self.details.append(line)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the executables a test puts there."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def install(bin_dir: Path, name: str, script: str) -> Path:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# A builder that prints its steps and writes the image ID where --iidfile says.
WORKING_BUILDER = """\
echo "STEP 1/6: FROM public.ecr.aws/lambda/python:3.11"
while [ $# -gt 0 ]; do
  if [ "$1" = --iidfile ]; then printf 'sha256:%064d' 7 > "$2"; fi
  shift
done
echo "COMMIT"
"""


DIGEST = "sha256:" + "d" * 64
LOCK = Lock("numpy==2.4.6 \\\n    --hash=sha256:" + "a" * 64 + "\n", "3.12", "x86_64-manylinux_2_34")


def context(
    python: str = "3.12", arch: str = "x86_64", digest: str = DIGEST, lock: Lock = LOCK
) -> ImageContext:
    build = "3.11.18" if python in ("3.10", "3.11") else ""
    return image_context(Base(python, arch, digest, "2026-11-02T10:00:00Z", build), lock)


def test_the_tag_is_the_same_for_the_same_inputs() -> None:
    first = image_tag(context())
    assert image_tag(context()) == first
    assert first.startswith("py3.12-x86_64-")


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(lambda: context(lock=Lock(LOCK.text.replace("2.4.6", "2.4.7"), "3.12", "x")), id="lock"),
        pytest.param(lambda: context(digest="sha256:" + "e" * 64), id="base-digest"),
        pytest.param(lambda: context(arch="arm64"), id="architecture"),
        pytest.param(lambda: context(python="3.13"), id="python"),
    ],
)
def test_the_tag_changes_with_the_lock_the_base_the_architecture_or_the_python(changed: Any) -> None:
    assert image_tag(changed()) != image_tag(context())


def test_the_tag_changes_with_the_runtime_code_but_not_with_the_model() -> None:
    # GIVEN a context, which holds the runtime's code and nothing of the model
    built = context()
    assert built.runtime == runtime_files()
    assert set(built.small_files()) == {"Dockerfile", "requirements.txt", *runtime_files()}
    # WHEN the runtime's code changes
    changed = dataclasses.replace(
        built, runtime={**built.runtime, "lambdaserve/runtime/handler.py": b"# new\n"}
    )
    # THEN the image gets a new tag
    assert image_tag(changed) != image_tag(built)


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]


@pytest.mark.parametrize("python", ["3.12", "3.13", "3.14"])
def test_python_312_and_later_build_on_aws_python_image_by_digest_with_copies_only(python: str) -> None:
    steps = instructions(context(python).dockerfile)
    assert steps[0] == f"FROM public.ecr.aws/lambda/python:{python}@{DIGEST}"
    assert [s.split()[0] for s in steps[1:]] == ["LABEL", "COPY", "COPY", "CMD"]
    assert steps[-1] == f'CMD ["{HANDLER}"]'
    assert "RUN" not in context(python).dockerfile.split()


@pytest.mark.parametrize("python", ["3.10", "3.11"])
def test_python_310_and_311_build_on_al2023_with_their_own_cpython_and_awslambdaric(python: str) -> None:
    dockerfile = context(python).dockerfile
    steps = instructions(dockerfile)
    assert steps[0] == f"FROM public.ecr.aws/lambda/provided:al2023@{DIGEST}"
    assert "COPY python/ /var/lang/" in steps
    assert f'ENTRYPOINT ["/var/lang/bin/python{python}", "-m", "awslambdaric"]' in steps
    assert steps[-1] == f'CMD ["{HANDLER}"]'
    assert "RUN" not in dockerfile.split()
    assert "LD_LIBRARY_PATH=/var/lang/lib:" in dockerfile


def test_an_unpinned_base_is_named_by_its_tag() -> None:
    assert instructions(context(digest="").dockerfile)[0] == "FROM public.ecr.aws/lambda/python:3.12"
    assert (
        instructions(context("3.11", digest="").dockerfile)[0] == "FROM public.ecr.aws/lambda/provided:al2023"
    )


def test_the_context_is_written_as_a_builder_reads_it(tmp_path: Path) -> None:
    # GIVEN a lock with nothing to install (the wheels' installation is tested with uv elsewhere)
    built = context(lock=Lock("", "3.12", "x86_64-manylinux_2_34"))
    directory = write_context(built, tmp_path / "context", RecordedProgress())
    assert (directory / "Dockerfile").read_text() == built.dockerfile
    assert (directory / "requirements.txt").read_text() == ""
    assert (directory / "packages").is_dir()
    assert (directory / "lambdaserve" / "runtime" / "handler.py").read_bytes() == runtime_files()[
        "lambdaserve/runtime/handler.py"
    ]
    # A second context in the same place could mix stale files into the image.
    with pytest.raises(LambdaserveError, match="not empty"):
        write_context(built, directory, RecordedProgress())


def test_without_any_builder_the_error_names_each_and_the_ways_out(bin_dir: Path) -> None:
    with pytest.raises(LambdaserveError) as caught:
        detect_builder()
    error = caught.value
    for name in ("docker", "podman", "buildah"):
        assert f"{name} is not installed" in error.message
    assert error.hint is not None
    assert all(way in error.hint for way in ("Install buildah or podman", "start Docker", "--image-uri"))


def test_docker_without_its_daemon_is_passed_over_for_the_next_builder(bin_dir: Path) -> None:
    # GIVEN docker, whose daemon does not answer, and buildah
    install(bin_dir, "docker", f'echo "{DAEMON_DOWN}" >&2\nexit 1\n')
    buildah = install(bin_dir, "buildah", WORKING_BUILDER)
    # THEN detection takes buildah
    assert detect_builder() == Builder("buildah", str(buildah))
    # AND asking for docker says why it cannot be used
    with pytest.raises(LambdaserveError, match="docker is installed, but its daemon does not answer: Cannot"):
        detect_builder("docker")


def test_docker_is_preferred_when_its_daemon_answers(bin_dir: Path) -> None:
    legacy = 'if [ "$1" = buildx ]; then echo "docker: \'buildx\' is not a docker command." >&2; exit 1; fi\n'
    docker = install(bin_dir, "docker", legacy + 'echo "20.10.24"\n')
    install(bin_dir, "podman", WORKING_BUILDER)
    assert detect_builder() == Builder("docker", str(docker))


def test_docker_with_buildkit_builds_without_the_attestation_lambda_refuses(bin_dir: Path) -> None:
    # GIVEN a docker whose builds go through buildx (BuildKit)
    docker = install(bin_dir, "docker", 'if [ "$1" = buildx ]; then echo "v0.17.1"; else echo "27.3.1"; fi\n')
    # THEN it builds with no provenance attestation, which would make the image an index
    builder = detect_builder("docker")
    assert builder == Builder("docker", str(docker), ("--provenance=false",))
    assert "--provenance=false" in builder.build_command(
        bin_dir, "news:py3.12-abc", bin_dir / "id", "linux/amd64"
    )


def test_an_unknown_builder_is_refused_with_the_known_ones() -> None:
    with pytest.raises(LambdaserveError, match="Unknown --builder 'kaniko'") as caught:
        detect_builder("kaniko")
    assert caught.value.hint is not None
    assert "docker, podman, buildah" in caught.value.hint


@pytest.mark.parametrize(
    ("name", "subcommand"), [("docker", "build"), ("podman", "build"), ("buildah", "bud")]
)
@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_every_builder_builds_for_the_function_architecture(
    name: str, subcommand: str, platform: str, tmp_path: Path
) -> None:
    builder = Builder(name, f"/usr/bin/{name}")
    command = builder.build_command(tmp_path, "news:py3.12-abc", tmp_path / "id", platform)
    assert command[:2] == [f"/usr/bin/{name}", subcommand]
    assert command[command.index("--platform") + 1] == platform
    assert command[command.index("-t") + 1] == "news:py3.12-abc"
    assert command[-3:] == ["-f", str(tmp_path / "Dockerfile"), str(tmp_path)]


EMPTY = Lock("", "3.12", "x86_64-manylinux_2_34")


def test_a_build_streams_the_builder_output_and_returns_the_image_id(bin_dir: Path) -> None:
    builder = Builder("buildah", str(install(bin_dir, "buildah", WORKING_BUILDER)))
    progress = RecordedProgress()
    image_id = build_image(context(lock=EMPTY), "news:py3.12-abc", builder, progress)
    assert image_id == "sha256:" + "7".zfill(64)
    assert progress.details[-2:] == ["STEP 1/6: FROM public.ecr.aws/lambda/python:3.11", "COMMIT"]
    assert progress.steps[-1] == "Built news:py3.12-abc"


def test_a_failed_build_reports_the_end_of_the_builder_output(bin_dir: Path) -> None:
    # GIVEN a builder that fails after much output
    script = 'i=0; while [ $i -lt 100 ]; do echo "line $i"; i=$((i+1)); done\n'
    script += 'echo "Error: creating build container: no space left on device" >&2\nexit 1\n'
    builder = Builder("buildah", str(install(bin_dir, "buildah", script)))
    # WHEN the image is built
    with pytest.raises(LambdaserveError) as caught:
        build_image(context(lock=EMPTY), "news:py3.12-abc", builder, RecordedProgress())
    # THEN the error holds the end of the output, the cause included, and how to fix it
    message = caught.value.message
    assert message.startswith("Building the image failed: buildah exited with 1.")
    assert message.endswith("Error: creating build container: no space left on device")
    assert "line 99" in message
    assert "line 50" not in message
    assert "only copies files" in (caught.value.hint or "")


CREATED = "2026-11-02T10:20:30.123456789Z"
# A buildah that pulls and reports the image it pulled as AWS's image would be reported.
PULLING_BUILDAH = f"""\
case "$1" in
  pull) echo "Getting image source signatures"; echo "{"f" * 64}";;
  inspect) echo '{{"FromImageDigest": "{DIGEST}", "OCIv1": {{"created": "{CREATED}"}}}}';;
esac
"""


def test_pinning_a_base_pulls_it_for_the_platform_and_keeps_its_digest_and_age(bin_dir: Path) -> None:
    builder = Builder("buildah", str(install(bin_dir, "buildah", PULLING_BUILDAH)))
    pinned = builder.pin(Base("3.12", "arm64"), RecordedProgress())
    assert (pinned.digest, pinned.created) == (DIGEST, CREATED)
    assert pinned.reference == f"public.ecr.aws/lambda/python:3.12@{DIGEST}"
    assert pinned.tags()["lambdaserve:base"] == f"public.ecr.aws/lambda/python:3.12@{DIGEST}"


def test_a_base_that_cannot_be_pulled_says_where_from(bin_dir: Path) -> None:
    builder = Builder(
        "buildah", str(install(bin_dir, "buildah", 'echo "dial tcp: no such host" >&2; exit 125\n'))
    )
    with pytest.raises(
        LambdaserveError, match=r"could not pull public\.ecr\.aws/lambda/provided:al2023"
    ) as caught:
        builder.pin(Base("3.11", "x86_64", python_build="3.11.18"), RecordedProgress())
    assert "public.ecr.aws" in (caught.value.hint or "")
