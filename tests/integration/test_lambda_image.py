"""The generated Dockerfile really builds, and the image answers Lambda through the Runtime API.

AWS's base image cannot be pulled offline, so the build starts FROM a stand-in of the same
name assembled from this machine's Python (``lambda_base_image``), in a container storage
of this module's own that is removed afterwards. buildah runs with chroot isolation: it
needs no OCI runtime and no cgroups (crun refuses this machine's hybrid cgroups), and it
shares the host's network, so pip in the build reaches the package index and the function
reaches the Runtime API and S3 (moto's server) on 127.0.0.1.

The function starts as Lambda starts it: the image's ENTRYPOINT and CMD, in its WORKDIR,
with its ENV plus what lambdaserve gives the function (the model as
``s3://...?versionId=...`` and its sha256) and what Lambda adds (the Runtime API address,
region, credentials).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import boto3
import pytest
import requests
from lambda_base_image import buildah, ensure_base_image, storage_env
from moto.server import ThreadedMotoServer
from runtime_api_support import FIRST_POST_TIMEOUT_S, POST_TIMEOUT_S, Function, RuntimeAPI, api_gateway_event

from lambdaserve.bundle.manifest import Manifest
from lambdaserve.bundle.package import package_model
from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.image import HANDLER, build_image, detect_builder, image_context, image_tag
from lambdaserve.deploy.registry import ImagePublisher

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("buildah") is None and not os.environ.get("CI"),
        reason="buildah is not installed (Debian package buildah; .ci/run installs it in CI)",
    ),
]

REGION = "eu-west-1"
KEY = "topics/model.pickle"


class RecordedProgress:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.details: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def detail(self, line: str) -> None:
        self.details.append(line)


@pytest.fixture(scope="module")
def container_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """buildah, and build_image through it, use a storage of their own for this module."""
    if shutil.which("buildah") is None:
        pytest.fail("CI is set but buildah is not installed: .ci/run installs it (apt-get install buildah)")
    root = tmp_path_factory.mktemp("containers")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**storage_env(root / "storage"), "BUILDAH_ISOLATION": "chroot"}.items():
            patch.setenv(name, value)
        try:
            yield root
        finally:
            buildah("rmi", "--all", "--force")
    shutil.rmtree(root / "storage")


@pytest.fixture(scope="module")
def base_image(container_storage: Path) -> str:
    return ensure_base_image(container_storage / "work")


@pytest.fixture(scope="module")
def topics_manifest(text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    output = tmp_path_factory.mktemp("image-bundle") / "topics"
    manifest, _ = package_model(
        text_model, output=output, name="topics", sample=["the rocket reached orbit"], env_mode="local"
    )
    return manifest


@pytest.fixture(scope="module")
def function_image(base_image: str, topics_manifest: Manifest) -> Iterator[str]:
    """The bundle's image, built by buildah from the generated Dockerfile; removed afterwards."""
    context = image_context(topics_manifest.requirements, topics_manifest.python)
    assert context.base_image == base_image
    image = f"lambdaserve-test/topics:{image_tag(context)}"
    progress = RecordedProgress()
    image_id = build_image(context, image, detect_builder("buildah"), progress)
    assert image_id.startswith("sha256:")
    assert progress.steps[-1] == f"Built {image}"
    try:
        yield image
    finally:
        buildah("rmi", image)


@pytest.fixture
def model_in_s3(text_model: Path) -> Iterator[dict[str, str]]:
    """The model in a versioned bucket of moto's server: the environment deploy gives the function."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name=REGION,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = f"lambdaserve-models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    content = text_model.read_bytes()
    version = s3.put_object(Bucket=bucket, Key=KEY, Body=content)["VersionId"]
    try:
        yield {
            "LAMBDASERVE_MODEL": f"s3://{bucket}/{KEY}?versionId={version}",
            "LAMBDASERVE_MODEL_SHA256": hashlib.sha256(content).hexdigest(),
            # What Lambda sets (the region, the role's credentials), and moto's server for S3.
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            **credentials,
        }
    finally:
        server.stop()


def image_config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    return config


@pytest.fixture
def start_image_function(
    function_image: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], Function]]:
    """Start the image as Lambda does, in a buildah container removed afterwards."""
    started: list[tuple[Function, str]] = []

    def start(function_env: dict[str, str]) -> Function:
        config = image_config(function_image)
        container = buildah("from", "--quiet", function_image)
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


def test_the_image_starts_the_runtime_handler_from_the_task_root(function_image: str) -> None:
    # GIVEN the built image, WHEN Lambda reads its configuration
    config = image_config(function_image)
    # THEN it runs the base image's entrypoint with lambdaserve's handler, from the task root
    assert (config["Entrypoint"], config["Cmd"], config["WorkingDir"]) == (
        ["/lambda-entrypoint.sh"],
        [HANDLER],
        "/var/task",
    )


def test_the_image_holds_the_pinned_versions_with_their_bytecode(
    function_image: str, topics_manifest: Manifest
) -> None:
    # GIVEN the image built from the bundle's pins
    container = buildah("from", "--quiet", function_image)
    try:
        # WHEN we look inside, as the function's Python sees it
        script = (
            "import importlib.metadata as m, importlib.util as u, json, os\n"
            "sources = ['/var/task/lambdaserve/runtime/handler.py', '/var/task/sklearn/base.py']\n"
            "print(json.dumps({'versions': {d.metadata['Name']: d.version for d in "
            "m.distributions(path=['/var/task'])}, 'compiled': [os.path.isfile(u.cache_from_source(s)) "
            "for s in sources]}))"
        )
        found = json.loads(buildah("run", container, "--", "python3", "-c", script))
    finally:
        buildah("rm", container)
    # THEN every pin is installed in the task root at its version, boto3 beside them
    pins = dict(requirement.split("==") for requirement in topics_manifest.requirements)
    assert {name: found["versions"].get(name) for name in pins} == pins
    assert "boto3" in found["versions"]
    # AND the runtime and the libraries are compiled already: Lambda's file system is read-only
    assert found["compiled"] == [True, True]


def test_the_image_answers_an_invocation_with_the_model_from_s3(
    start_image_function: Callable[[dict[str, str]], Function], model_in_s3: dict[str, str]
) -> None:
    # GIVEN the image started with the model's pinned S3 version and sha256
    function = start_image_function(model_in_s3)
    # WHEN API Gateway sends it a text about space
    request_id = function.api.invoke(api_gateway_event('["the rocket reached orbit"]'))
    # THEN INIT downloaded and loaded the model, and the runtime posts the proxy response
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.request_id) == ("response", request_id)
    assert post.body == {
        "statusCode": 200,
        "headers": {
            "Content-Type": "application/json",
            "x-lambdaserve-model-version": model_in_s3["LAMBDASERVE_MODEL_SHA256"][:12],
        },
        "body": '["space"]',
        "isBase64Encoded": False,
    }


def test_a_model_whose_sha256_differs_fails_init_through_the_runtime_api(
    start_image_function: Callable[[dict[str, str]], Function], model_in_s3: dict[str, str]
) -> None:
    # GIVEN the image started with a sha256 the object in S3 does not have, and a request waiting
    function = start_image_function({**model_in_s3, "LAMBDASERVE_MODEL_SHA256": "0" * 64})
    function.api.invoke(api_gateway_event('["the rocket reached orbit"]'))
    # THEN INIT fails, the error goes to /init/error, and the runtime exits without the request
    post = function.wait_for_post(FIRST_POST_TIMEOUT_S)
    assert (post.kind, post.error_type) == ("init/error", "ModelLoadError")
    assert f"expects {'0' * 64}" in post.body["errorMessage"]
    assert function.process.wait(timeout=POST_TIMEOUT_S) != 0
    assert function.api.events.qsize() == 1


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    """Distribution's registry (Debian's docker-registry) on a free port, as ECR's stand-in."""
    executable = shutil.which("docker-registry")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but docker-registry is not installed: .ci/run installs it")
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n"
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


def test_the_image_is_pushed_with_a_manifest_lambda_accepts(
    function_image: str, local_registry: str, tmp_path: Path
) -> None:
    # GIVEN the built image and a registry that answers as ECR's endpoint would (its token from
    # GetAuthorizationToken, faked at the AWS boundary: only ECR's own endpoint differs)
    aws = create_autospec(AWS, instance=True)
    token = base64.b64encode(b"AWS:a-twelve-hour-password").decode()
    aws.call.return_value = {
        "authorizationData": [{"authorizationToken": token, "proxyEndpoint": f"http://{local_registry}"}]
    }
    uri = f"{local_registry}/lambdaserve-test:{function_image.rsplit(':', 1)[1]}"
    buildah("tag", function_image, uri)
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
