"""The Lambda image's build context, tag and builder, without building anything.

Builders are stand-in executables on a PATH of the test's own: the boundary is the
command line, as it is for the real docker, podman and buildah.
"""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from lambdaserve.deploy.image import (
    HANDLER,
    Builder,
    build_image,
    detect_builder,
    image_context,
    image_tag,
    write_context,
)
from lambdaserve.errors import LambdaserveError
from lambdaserve.execution.environments import runtime_files

PINS = ["cloudpickle==3.1.3", "numpy==2.4.6", "scikit-learn==1.9.1"]
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


def test_the_tag_is_the_same_for_the_same_inputs_in_any_order() -> None:
    first = image_tag(image_context(PINS, "3.11"))
    assert image_tag(image_context(list(reversed(PINS)), "3.11")) == first
    assert image_tag(image_context([*PINS, PINS[0]], "3.11")) == first
    assert first.startswith("py3.11-")


@pytest.mark.parametrize(
    ("requirements", "python"),
    [
        (["cloudpickle==3.1.3", "numpy==2.4.6", "scikit-learn==1.9.2"], "3.11"),  # another pin
        ([*PINS, "pandas==2.3.3"], "3.11"),  # one more requirement
        (PINS, "3.12"),  # another Python
    ],
)
def test_the_tag_changes_with_the_requirements_or_the_python(requirements: list[str], python: str) -> None:
    assert image_tag(image_context(requirements, python)) != image_tag(image_context(PINS, "3.11"))


def test_the_tag_changes_with_the_runtime_code_but_not_with_the_model() -> None:
    # GIVEN a context, which holds the runtime's code and nothing of the model
    context = image_context(PINS, "3.11")
    assert {k: v for k, v in context.files.items() if k != "requirements.txt"} == runtime_files()
    # WHEN the runtime's code changes
    files = {**context.files, "lambdaserve/runtime/handler.py": b"# a new handler\n"}
    changed = dataclasses.replace(context, files=files)
    # THEN the image gets a new tag
    assert image_tag(changed) != image_tag(context)


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_the_dockerfile_builds_on_aws_base_image_of_the_bundle_python(python: str) -> None:
    context = image_context(PINS, python)
    instructions = [line for line in context.dockerfile.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == f"FROM public.ecr.aws/lambda/python:{python}"
    assert instructions[-1] == f'CMD ["{HANDLER}"]'
    assert context.base_image == f"public.ecr.aws/lambda/python:{python}"
    # The requirements go to the task root, first on the function's sys.path, and are compiled.
    assert '--target "${LAMBDA_TASK_ROOT}"' in context.dockerfile
    assert "python3 -m compileall" in context.dockerfile


def test_requirements_are_pinned_as_the_bundle_says_with_boto3_to_read_the_model_from_s3() -> None:
    context = image_context(list(reversed(PINS)), "3.11")
    assert context.files["requirements.txt"].decode().splitlines() == [*PINS, "boto3"]
    # A bundle that pins boto3 keeps its pin, and a model read from a file needs no boto3.
    pinned = image_context([*PINS, "boto3==1.34.0"], "3.11")
    assert pinned.requirements == ("boto3==1.34.0", *PINS)
    assert image_context(PINS, "3.11", with_boto3=False).requirements == tuple(PINS)


@pytest.mark.parametrize(
    ("requirements", "python", "message"),
    [
        (PINS, "3", "is not a Python version"),
        (PINS, "python3.11", "is not a Python version"),
        ([*PINS, "--index-url=https://example.com/simple"], "3.11", "is not a requirement"),
        ([*PINS, "numpy==2.4.6\n-r other.txt"], "3.11", "is not a requirement"),
        ([*PINS, ""], "3.11", "is not a requirement"),
    ],
)
def test_what_the_image_cannot_install_is_refused(requirements: list[str], python: str, message: str) -> None:
    with pytest.raises(LambdaserveError, match=message):
        image_context(requirements, python)


def test_the_context_is_written_as_a_builder_reads_it(tmp_path: Path) -> None:
    context = image_context(PINS, "3.11")
    directory = write_context(context, tmp_path / "context")
    assert (directory / "Dockerfile").read_text() == context.dockerfile
    assert (directory / "requirements.txt").read_text() == "\n".join([*PINS, "boto3"]) + "\n"
    assert (directory / "lambdaserve" / "runtime" / "handler.py").read_bytes() == runtime_files()[
        "lambdaserve/runtime/handler.py"
    ]
    # A second context in the same place could mix stale runtime files into the image.
    with pytest.raises(ValueError, match="not empty"):
        write_context(context, directory)


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
    assert "--provenance=false" in builder.build_command(bin_dir, "news:py3.11-abc", bin_dir / "id")


def test_an_unknown_builder_is_refused_with_the_known_ones() -> None:
    with pytest.raises(LambdaserveError, match="Unknown --builder 'kaniko'") as caught:
        detect_builder("kaniko")
    assert caught.value.hint is not None
    assert "docker, podman, buildah" in caught.value.hint


@pytest.mark.parametrize(
    ("name", "subcommand"), [("docker", "build"), ("podman", "build"), ("buildah", "bud")]
)
def test_every_builder_builds_for_lambda_x86_64(name: str, subcommand: str, tmp_path: Path) -> None:
    command = Builder(name, f"/usr/bin/{name}").build_command(tmp_path, "news:py3.11-abc", tmp_path / "id")
    assert command[:2] == [f"/usr/bin/{name}", subcommand]
    assert command[command.index("--platform") + 1] == "linux/amd64"
    assert command[command.index("-t") + 1] == "news:py3.11-abc"
    assert command[-3:] == ["-f", str(tmp_path / "Dockerfile"), str(tmp_path)]


def test_a_build_streams_the_builder_output_and_returns_the_image_id(bin_dir: Path) -> None:
    builder = Builder("buildah", str(install(bin_dir, "buildah", WORKING_BUILDER)))
    progress = RecordedProgress()
    image_id = build_image(image_context(PINS, "3.11"), "news:py3.11-abc", builder, progress)
    assert image_id == "sha256:" + "7".zfill(64)
    assert progress.details == ["STEP 1/6: FROM public.ecr.aws/lambda/python:3.11", "COMMIT"]
    assert progress.steps[-1] == "Built news:py3.11-abc"


def test_a_failed_build_reports_the_end_of_the_builder_output(bin_dir: Path) -> None:
    # GIVEN a builder whose pip step fails after much output
    script = 'i=0; while [ $i -lt 100 ]; do echo "line $i"; i=$((i+1)); done\n'
    script += 'echo "ERROR: No matching distribution found for scikit-learn==0.0.1" >&2\nexit 1\n'
    builder = Builder("buildah", str(install(bin_dir, "buildah", script)))
    # WHEN the image is built
    with pytest.raises(LambdaserveError) as caught:
        build_image(image_context(PINS, "3.11"), "news:py3.11-abc", builder, RecordedProgress())
    # THEN the error holds the end of the output, the cause included, and how to fix it
    message = caught.value.message
    assert message.startswith("Building the image failed: buildah exited with 1.")
    assert message.endswith("ERROR: No matching distribution found for scikit-learn==0.0.1")
    assert "line 99" in message
    assert "line 50" not in message
    assert caught.value.hint is not None
    assert "wheel for Linux x86_64, Python 3.11 and the glibc" in caught.value.hint
