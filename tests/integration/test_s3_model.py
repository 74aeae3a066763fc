"""A model in versioned S3: INIT downloads the pinned version and checks its hash.

S3 is moto's server on 127.0.0.1 (DESIGN.md section 7), reached through boto3 exactly as
the Lambda function reaches S3, with AWS_ENDPOINT_URL pointing at it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambdaserve.runtime.apigw import rest_proxy_event
from lambdaserve.runtime.errors import ModelLoadError
from lambdaserve.runtime.handler import PredictionService

KEY = "news/model.pickle"


@pytest.fixture
def bucket() -> str:
    return f"lambdaserve-models-{uuid.uuid4().hex[:12]}"  # moto's state outlives one server


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bucket: str) -> Iterator[object]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "LAMBDASERVE_DOWNLOAD_DIR": str(tmp_path / "tmp"),
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        yield client
    finally:
        server.stop()


def test_init_loads_the_pinned_version_even_after_a_newer_upload(
    s3: object, bucket: str, text_model: Path
) -> None:
    # GIVEN a model uploaded to a versioned bucket, then overwritten by something else
    content = text_model.read_bytes()
    first = s3.put_object(Bucket=bucket, Key=KEY, Body=content)["VersionId"]  # type: ignore[attr-defined]
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"not a model")  # type: ignore[attr-defined]
    # WHEN INIT runs with the first version pinned and its hash
    service = PredictionService.from_environment(
        {
            "LAMBDASERVE_MODEL": f"s3://{bucket}/{KEY}?versionId={first}",
            "LAMBDASERVE_MODEL_SHA256": hashlib.sha256(content).hexdigest(),
        }
    )
    # THEN the function serves that version
    response = service.handle(rest_proxy_event('["the rocket reached orbit"]', model="news"), None)
    assert (response["statusCode"], response["body"]) == (200, '["space"]')


def test_init_refuses_an_object_whose_hash_differs(s3: object, bucket: str, text_model: Path) -> None:
    latest = s3.put_object(Bucket=bucket, Key=KEY, Body=b"tampered")["VersionId"]  # type: ignore[attr-defined]
    with pytest.raises(ModelLoadError, match="sha256"):
        PredictionService.from_environment(
            {
                "LAMBDASERVE_MODEL": f"s3://{bucket}/{KEY}?versionId={latest}",
                "LAMBDASERVE_MODEL_SHA256": hashlib.sha256(text_model.read_bytes()).hexdigest(),
            }
        )


def test_a_missing_object_is_an_init_error_that_names_it(s3: object, bucket: str) -> None:
    with pytest.raises(ModelLoadError, match=f"Could not download s3://{bucket}/missing.pickle"):
        PredictionService.from_environment({"LAMBDASERVE_MODEL": f"s3://{bucket}/missing.pickle"})
