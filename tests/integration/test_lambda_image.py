"""The post's model in a Lambda image: pinned base, full lock, built with buildah, answering Lambda.

AWS's images cannot be pulled offline: stand-ins of ``public.ecr.aws/lambda/provided:al2023``
(linux/amd64) and ``python:3.12`` (linux/arm64) are served from a local registry, and the
container configuration mirrors ``public.ecr.aws/lambda`` to it (``lambda_base_image``), so
lambdaserve pins the base by pulling it and builds the generated Dockerfile as it is.
The CPython a Python 3.11 image brings is this machine's, laid out as a python-build-standalone
tree (``LAMBDASERVE_PYTHON_BUILDS``). The wheels are the real ones, locked and installed by uv
from the package index.

buildah runs with chroot isolation in a storage of this module's own: it needs no OCI
runtime and no cgroups, and it shares the host's network, so the function reaches the
Runtime API and S3 (moto's server) on 127.0.0.1.

The function starts as Lambda starts it: the image's ENTRYPOINT and CMD, in its WORKDIR,
with its ENV plus what lambdaserve gives the function and what Lambda adds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import boto3
import pytest
import requests
from lambda_base_image import (
    assemble_python_build,
    buildah,
    image_config,
    mirror_config,
    publish_stand_ins,
    python_version,
    storage_env,
)
from moto.server import ThreadedMotoServer
from runtime_api_support import FIRST_POST_TIMEOUT_S, POST_TIMEOUT_S, Function, RuntimeAPI, api_gateway_event

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.base import Base
from lambdaserve.deploy.image import HANDLER, build_image, detect_builder, write_context
from lambdaserve.deploy.lock import pip_platforms
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.registry import ImagePublisher
from lambdaserve.deploy.release_image import Builders, BuiltImage, built_image
from lambdaserve.deploy.spec import Release
from lambdaserve.functions.package import package_model
from lambdaserve.store.store import Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("buildah") is None and not os.environ.get("CI"),
        reason="buildah is not installed (Debian package buildah; .ci/run installs it in CI)",
    ),
]

REGION = "eu-west-1"
NAMES = Names("imagetest", "123456789012", REGION)
SPACE_POST = '["The space shuttle launch was delayed by the weather at the Kennedy Space Center"]'
ELF_MACHINES = {b"\x3e\x00": "x86_64", b"\xb7\x00": "aarch64"}


class RecordedProgress:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.details: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def detail(self, line: str) -> None:
        self.details.append(line)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Distribution's registry (Debian's docker-registry) on a free port: the mirror, and ECR's stand-in."""
    executable = shutil.which("docker-registry")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but docker-registry is not installed: .ci/run installs it")
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'blobs'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: error\n"
    )
    process = subprocess.Popen(
        [executable, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the local registry did not start within 20 s")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory, local_registry: str) -> Iterator[dict[str, str]]:
    """buildah's storage, the mirror of AWS's registry and the CPython builds: this module's own."""
    if shutil.which("buildah") is None:
        pytest.fail("CI is set but buildah is not installed: .ci/run installs it (apt-get install buildah)")
    root = tmp_path_factory.mktemp("containers")
    builds = root / "python-builds"
    assemble_python_build(builds)
    env = {
        **storage_env(root / "storage"),
        **mirror_config(root / "registries.conf", local_registry),
        "BUILDAH_ISOLATION": "chroot",
        "LAMBDASERVE_PYTHON_BUILDS": str(builds),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        publish_stand_ins(root / "work", local_registry)
        try:
            yield env
        finally:
            buildah("rmi", "--all", "--force")
    shutil.rmtree(root / "storage", ignore_errors=True)


def release_of(store: Store, model: str, manifest: dict[str, Any], file: Path) -> Release:
    store.add_version(model, manifest, file)
    record = store.versions(model)[-1]
    return Release.from_version(record, store.model_path(record))


@pytest.fixture(scope="module")
def news(
    containers: dict[str, str], newsgroups_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Release, BuiltImage, Store]]:
    """The post's model (Python 3.11, numpy 2.x, scikit-learn, a class pickled by value), packaged."""
    out = tmp_path_factory.mktemp("news")
    manifest, bundle = package_model(
        newsgroups_model,
        output=out / "bundle",
        name="news",
        sample=["the space shuttle launch"],
        env_mode="local",
    )
    store = Store(out / "state")
    release = release_of(store, "news", manifest.to_dict(), bundle / manifest.model_file)
    image = built_image(
        store, NAMES, release, arch="x86_64", python=None, function_tags={}, refresh_base=False,
        builders=Builders("buildah"), notes=[], progress=RecordedProgress(),
    )  # fmt: skip
    try:
        yield release, image, store
    finally:
        store.close()


@pytest.fixture(scope="module")
def news_image(news: tuple[Release, BuiltImage, Store]) -> Iterator[str]:
    """The news image, built by buildah from the generated context; removed afterwards."""
    _, image, _ = news
    progress = RecordedProgress()
    image_id = build_image(image.context, image.uri, detect_builder("buildah"), progress)
    assert image_id.startswith("sha256:")
    assert progress.steps[-1] == f"Built {image.uri}"
    try:
        yield image.uri
    finally:
        buildah("rmi", image.uri)


def test_a_python_311_model_is_built_on_al2023_with_its_own_cpython_pinned_by_digest(
    news: tuple[Release, BuiltImage, Store], news_image: str
) -> None:
    release, image, _ = news
    # GIVEN the post's model, made with Python 3.11 and numpy 2.x
    assert (release.python, release.carries_code) == (python_version(), True)
    assert int(image.context.lock.packages["numpy"].split(".")[0]) >= 2
    # THEN its base is Amazon Linux 2023's OS-only image, pinned by the digest the mirror served
    assert image.base.image == "public.ecr.aws/lambda/provided:al2023"
    assert image.base.digest.startswith("sha256:")
    assert image.base.python_build == f"{python_version()}.{sys.version_info.micro}"
    config = image_config(news_image)
    assert config["architecture"] == "amd64"
    assert config["config"]["Entrypoint"] == [f"/var/lang/bin/python{python_version()}", "-m", "awslambdaric"]  # type: ignore[index]
    assert config["config"]["Cmd"] == [HANDLER]  # type: ignore[index]
    assert config["config"]["WorkingDir"] == "/var/task"  # type: ignore[index]
    assert config["config"]["Labels"]["lambdaserve.base"] == image.base.reference  # type: ignore[index]
    # AND the tag is a function of the base, the lock and the runtime: the same again
    assert image.uri.rsplit(":", 1)[1].startswith(f"py{python_version()}-x86_64-")


def test_the_image_holds_exactly_the_locked_wheels_with_their_bytecode(
    news: tuple[Release, BuiltImage, Store], news_image: str
) -> None:
    _, image, _ = news
    container = buildah("from", "--quiet", news_image)
    try:
        script = (
            "import importlib.metadata as m, importlib.util as u, json, os, sys\n"
            "sources = ['/var/task/lambdaserve/runtime/handler.py', '/var/task/sklearn/base.py']\n"
            "print(json.dumps({'versions': {d.metadata['Name'].lower(): d.version for d in "
            "m.distributions(path=['/var/task'])}, 'compiled': [os.path.isfile(u.cache_from_source(s)) "
            "for s in sources], 'python': sys.version.split()[0], 'prefix': sys.prefix}))"
        )
        found = json.loads(buildah("run", container, "--", "python3", "-c", script))
    finally:
        buildah("rm", container)
    # Every locked distribution, and nothing else, at its locked version (the closure, boto3, awslambdaric)
    locked = image.context.lock.packages
    assert {name.replace("_", "-"): v for name, v in found["versions"].items()} == locked
    assert {"scipy", "joblib", "threadpoolctl", "boto3", "awslambdaric"} <= set(locked)
    # compiled for the image's Python where they sit, and the CPython brought to /var/lang
    assert found["compiled"] == [True, True]
    assert (found["python"], found["prefix"]) == (image.base.python_build, "/var/lang")


@pytest.fixture
def model_in_s3(newsgroups_model: Path) -> Iterator[dict[str, str]]:
    """The model in a versioned bucket of moto's server: the environment deploy gives the function."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name=REGION, **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})  # fmt: skip
    bucket = f"lambdaserve-models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    content = newsgroups_model.read_bytes()
    key = "bundles/news/model.pickle"
    version = s3.put_object(Bucket=bucket, Key=key, Body=content)["VersionId"]
    try:
        yield {
            "LAMBDASERVE_MODEL": f"s3://{bucket}/{key}?versionId={version}",
            "LAMBDASERVE_MODEL_SHA256": hashlib.sha256(content).hexdigest(),
            # What Lambda sets (the region, the role's credentials), and moto's server for S3.
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            **credentials,
        }
    finally:
        server.stop()


@pytest.fixture
def start_function(news_image: str, tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Function]]:
    """Start the image as Lambda does, in a buildah container removed afterwards."""
    started: list[tuple[Function, str]] = []

    def start(function_env: dict[str, str]) -> Function:
        config: Any = image_config(news_image)["config"]
        container = buildah("from", "--quiet", news_image)
        api = RuntimeAPI()
        env = {**function_env, "AWS_LAMBDA_RUNTIME_API": api.address}
        command = ["buildah", "run", "--network", "host"]
        command += [f"--env={name}={value}" for name, value in env.items()]
        command += [container, "--", *config["Entrypoint"], *config["Cmd"]]
        log_path = tmp_path / f"function-{len(started)}.log"
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            except BaseException:
                api.close()
                buildah("rm", container)
                raise
        started.append((Function(api, process, log_path), container))
        return started[-1][0]

    yield start
    for function, container in started:
        try:
            # buildah passes SIGTERM on to the runtime; SIGKILL would leave its helpers behind.
            if function.process.poll() is None:
                function.process.terminate()
            function.process.wait(timeout=POST_TIMEOUT_S)
        finally:
            function.api.close()
            buildah("rm", container)


def test_the_image_answers_an_invocation_with_the_model_from_s3(
    start_function: Callable[[dict[str, str]], Function], model_in_s3: dict[str, str]
) -> None:
    # GIVEN the image started with the model's pinned S3 version and sha256
    function = start_function(model_in_s3)
    # WHEN API Gateway sends it a post about the space shuttle
    request_id = function.api.invoke(api_gateway_event(SPACE_POST))
    # THEN INIT downloaded and loaded the model, and awslambdaric posts the proxy response
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.request_id) == ("response", request_id), function.log()
    assert post.body == {
        "statusCode": 200,
        "headers": {
            "Content-Type": "application/json",
            "x-lambdaserve-model-version": model_in_s3["LAMBDASERVE_MODEL_SHA256"][:12],
        },
        "body": '["sci.space"]',
        "isBase64Encoded": False,
    }


def test_a_model_whose_sha256_differs_fails_init_through_the_runtime_api(
    start_function: Callable[[dict[str, str]], Function], model_in_s3: dict[str, str]
) -> None:
    # GIVEN the image started with a sha256 the object in S3 does not have, and a request waiting
    function = start_function({**model_in_s3, "LAMBDASERVE_MODEL_SHA256": "0" * 64})
    function.api.invoke(api_gateway_event(SPACE_POST))
    # THEN INIT fails, the error goes to /init/error, and the runtime exits without the request
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.error_type) == ("init/error", "ModelLoadError")
    assert f"expects {'0' * 64}" in post.body["errorMessage"]
    assert function.process.wait(timeout=POST_TIMEOUT_S) != 0
    assert function.api.events.qsize() == 1


def elf_machine(path: Path) -> str:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return ELF_MACHINES.get(header[18:20], "other")


def test_an_arm64_image_is_built_here_without_an_emulator_up_to_running_it(
    containers: dict[str, str], iris_bundle: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    # GIVEN the iris model (no pickled code), asked to run on Graviton with Python 3.12
    store = Store(tmp_path / "state")
    try:
        release = release_of(store, "iris", *iris_bundle)
        image = built_image(
            store, NAMES, release, arch="arm64", python="3.12", function_tags={}, refresh_base=False,
            builders=Builders("buildah"), notes=[], progress=RecordedProgress(),
        )  # fmt: skip
    finally:
        store.close()
    assert (image.base.image, image.base.platform) == ("public.ecr.aws/lambda/python:3.12", "linux/arm64")
    # WHEN its context is written and built (only COPY steps: nothing of arm64 runs here)
    context = write_context(image.context, tmp_path / "context", RecordedProgress())
    progress = RecordedProgress()
    image_id = build_image(image.context, image.uri, detect_builder("buildah"), progress)
    try:
        # THEN the wheels are aarch64 builds for CPython 3.12, and the image is an arm64 one
        extensions = list((context / "packages" / "numpy").rglob("*.cpython-312-aarch64-linux-gnu.so"))
        assert extensions
        assert {elf_machine(path) for path in extensions} == {"aarch64"}
        assert not list((context / "packages").rglob("*x86_64*.so"))
        assert image_config(image.uri)["architecture"] == "arm64"
        assert image_id.startswith("sha256:")
        # (running it would need an arm64 machine or an emulator: the point where this test stops)
    finally:
        buildah("rmi", image.uri)


def test_export_image_writes_the_context_whose_lock_pip_installs_with_hashes_only(
    containers: dict[str, str], iris_models: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN a model pushed to a project's store
    env = {**os.environ, **containers, "LAMBDASERVE_HOME": str(tmp_path / "state"), "COLUMNS": "200"}
    cli = [sys.executable, "-m", "lambdaserve"]
    run = {"env": env, "capture_output": True, "text": True, "stdin": subprocess.DEVNULL, "timeout": 600}
    pushed = subprocess.run([*cli, "models", "push", str(iris_models["pickle"]), "--name", "iris"], **run)
    assert pushed.returncode == 0, pushed.stderr
    # WHEN its image's build context is exported for x86_64
    out = tmp_path / "iris-image"
    done = subprocess.run([*cli, "export", "image", "iris", "-o", str(out), "--json"], **run)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    # THEN the directory is a build context: Dockerfile FROM the pinned base, lock, wheels, runtime
    assert {p.name for p in out.iterdir()} == {
        "Dockerfile",
        "requirements.txt",
        "packages",
        "python",
        "lambdaserve",
    }
    assert f"FROM {answer['base']['lambdaserve:base']}\n" in (out / "Dockerfile").read_text()
    assert "@sha256:" in answer["base"]["lambdaserve:base"]
    # AND its lock is every distribution pinned with its hashes, which pip installs for the
    # image's platform with hashes required and wheels only
    lock = (out / "requirements.txt").read_text()
    assert set(answer["packages"]) >= {"scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl", "boto3"}
    assert lock.count("==") == len(answer["packages"])
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    pip += ["--require-hashes", "--only-binary=:all:", "--implementation", "cp"]
    pip += ["--python-version", python_version(), "-d", str(tmp_path / "wheels")]
    for platform in pip_platforms(Base(python_version(), "x86_64")):  # manylinux_2_34_x86_64 and older
        pip += ["--platform", platform]
    installed = subprocess.run([*pip, "-r", str(out / "requirements.txt")], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    assert len(list((tmp_path / "wheels").glob("*.whl"))) == len(answer["packages"])
    # AND a second export names the same image: the pin was recorded, the lock kept
    again = subprocess.run([*cli, "export", "image", "iris", "-o", str(tmp_path / "again"), "--json"], **run)
    assert json.loads(again.stdout)["tag"] == answer["tag"]


def test_the_image_is_pushed_with_a_manifest_lambda_accepts(news_image: str, local_registry: str) -> None:
    # GIVEN the built image and a registry that answers as ECR's endpoint would (its token from
    # GetAuthorizationToken, faked at the AWS boundary: only ECR's own endpoint differs)
    aws = create_autospec(AWS, instance=True)
    token = base64.b64encode(b"AWS:a-twelve-hour-password").decode()
    aws.call.return_value = {
        "authorizationData": [{"authorizationToken": token, "proxyEndpoint": f"http://{local_registry}"}]
    }
    uri = f"{local_registry}/lambdaserve-test:{news_image.rsplit(':', 1)[1]}"
    buildah("tag", news_image, uri)
    progress = RecordedProgress()
    publisher = ImagePublisher(aws, detect_builder("buildah"), {}, progress)
    try:
        # WHEN it is pushed
        digest = publisher.push(uri)
    finally:
        buildah("rmi", uri)
    # THEN the registry holds a Docker v2 schema 2 manifest (Lambda refuses OCI indexes) by that digest
    aws.call.assert_called_once_with("ecr", "get_authorization_token")
    repository, tag = uri.split("/", 1)[1].split(":")
    answer = requests.get(
        f"http://{local_registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert answer.headers["Docker-Content-Digest"] == digest
    assert digest.startswith("sha256:")
    # and the password never appeared on a command line (it went through an auth file)
    assert not any("a-twelve-hour-password" in line for line in progress.details)
