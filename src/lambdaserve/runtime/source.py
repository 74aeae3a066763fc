"""Where the model file comes from: a local path, or ``s3://bucket/key?versionId=...``.

A model in S3 is downloaded once per execution environment into ``/tmp`` (the only
writable place in Lambda), pinned to an object version so that a new upload under the
same key never changes a running function. When an expected sha256 is given, a file
with any other content is refused before it is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from lambdaserve.runtime.errors import ModelLoadError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(location: str, expected_sha256: str | None = None) -> Path:
    """Return a local path holding the model named by ``location``, checked if asked."""
    if location.startswith("s3://"):
        path = _download_from_s3(location)
    else:
        path = Path(location)
        if not path.is_file():
            raise ModelLoadError(
                f"LAMBDASERVE_MODEL names {location}, which is not a file. Point it at the model "
                "file (or s3://bucket/key?versionId=...)."
            )
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256.lower():
            raise ModelLoadError(
                f"Refusing {location}: its sha256 is {actual}, but LAMBDASERVE_MODEL_SHA256 expects "
                f"{expected_sha256}. The file changed after it was packaged; package it again."
            )
    return path


def _download_from_s3(location: str) -> Path:
    url = urlparse(location)
    bucket, key = url.netloc, url.path.lstrip("/")
    version = parse_qs(url.query).get("versionId", [None])[0]
    if not bucket or not key:
        raise ModelLoadError(f"{location} is not an S3 URL of the form s3://bucket/key?versionId=...")
    try:
        import boto3
    except ImportError:
        raise ModelLoadError("A model in S3 needs boto3; install it in the function's image.") from None
    target_dir = Path(os.environ.get("LAMBDASERVE_DOWNLOAD_DIR", tempfile.gettempdir())) / "lambdaserve"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / Path(key).name
    extra = {"VersionId": version} if version else None
    try:
        boto3.client("s3").download_file(bucket, key, str(target), ExtraArgs=extra)
    except Exception as exc:  # botocore raises many types; all mean the same to the user
        raise ModelLoadError(f"Could not download {location}: {exc}") from None
    return target
