"""Model files uploaded to the admin API, held until they are published.

``POST /_/api/uploads?filename=model.pickle`` with the file's bytes as the body (no
multipart: the browser sends the ``File`` itself, scripts ``curl --data-binary @FILE``).
The body is streamed to ``<state>/uploads/<random id>/<name>`` and counted as it comes:
past the limit (``serve --max-upload-mb``) the upload stops with a 413 and the partial
file is removed. A ``Content-Length`` above the limit is refused before anything is read.

The user's file name never becomes a path: only its suffix is kept, and only when it is a
model format's (``.pkl .pickle .joblib .skops .onnx``); the stem is reduced to letters,
digits, ``-`` and ``_`` (it appears in messages and the bundle's manifest). The directory
is named by a random id, the only handle the client gets back.

An upload is kept until it is published (``publish.py``), so a file refused for want of
``trust`` can be published with it without being sent again, and for at most
``UPLOAD_TTL_S``; at most ``MAX_PENDING`` are kept, the oldest dropped first.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest

from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime.models import FORMAT_BY_SUFFIX

UPLOAD_TTL_S = 3600.0
MAX_PENDING = 16
MB = 1_000_000  # sizes are shown, and --max-upload-mb counted, in decimal megabytes
ACCEPTED = tuple(FORMAT_BY_SUFFIX)
_ID = re.compile(r"[0-9a-f]{32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class UploadRefused(LambdaserveError):
    """An admin API request refused with ``status`` and, optionally, more fields for the client."""

    def __init__(
        self, status: int, message: str, hint: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "hint": self.hint, **self.details}


@dataclass(frozen=True)
class Upload:
    id: str
    path: Path
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"upload": self.id, "filename": self.path.name, "size": self.size}


def safe_file_name(name: str) -> str:
    """``"../My Model (v2).PKL"`` -> ``"My-Model-v2.pkl"``; refuses a suffix that is no model format."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    suffix = f".{suffix.lower()}" if dot else ""
    if suffix not in ACCEPTED:
        raise UploadRefused(
            400,
            f"{base or 'The file'!r} does not have a model file's extension.",
            f"Upload a {', '.join(ACCEPTED)} file (the extension tells lambdaserve how to read it).",
        )
    return (_UNSAFE.sub("-", stem).strip("-_")[:64] or "model") + suffix


class UploadArea:
    """``<state>/uploads``: one directory per upload, named by a random id."""

    def __init__(self, state_dir: Path, max_bytes: int) -> None:
        self.root = state_dir / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.sweep()

    async def receive(self, request: HTTPRequest) -> Upload:
        filename = safe_file_name(request.query_params.get("filename", ""))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(int(declared))
        self.sweep()
        upload_id = secrets.token_hex(16)
        directory = self.root / upload_id
        directory.mkdir(mode=0o700)
        path = directory / filename
        size = 0
        try:
            with path.open("wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(None)
                    f.write(chunk)
        except ClientDisconnect:
            shutil.rmtree(directory, ignore_errors=True)
            raise UploadRefused(400, "The upload was interrupted.", "Send the file again.") from None
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        if size == 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise UploadRefused(
                400, f"{filename} is empty.", "Choose the model file itself, not an empty one."
            )
        return Upload(upload_id, path, size)

    def get(self, upload_id: str) -> Upload:
        directory = self.root / upload_id if _ID.fullmatch(upload_id or "") else None
        files = [p for p in directory.iterdir() if p.is_file()] if directory and directory.is_dir() else []
        if not files:
            raise UploadRefused(
                404,
                f"No upload {upload_id!r}: it was published already, or it expired.",
                "Upload the file again (POST /_/api/uploads?filename=NAME with the file as the body).",
            )
        return Upload(upload_id, files[0], files[0].stat().st_size)

    def discard(self, upload_id: str) -> None:
        if _ID.fullmatch(upload_id):
            shutil.rmtree(self.root / upload_id, ignore_errors=True)

    def sweep(self) -> None:
        """Remove uploads older than ``UPLOAD_TTL_S``, and the oldest beyond ``MAX_PENDING - 1``."""
        entries = sorted(
            (p for p in self.root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
        )
        now = time.time()
        for n, entry in enumerate(entries):
            if n >= MAX_PENDING - 1 or now - entry.stat().st_mtime > UPLOAD_TTL_S:
                shutil.rmtree(entry, ignore_errors=True)

    def _too_large(self, size: int | None) -> UploadRefused:
        limit_mb = self.max_bytes / MB
        what = f"The file ({size / MB:.1f} MB)" if size is not None else "The file"
        return UploadRefused(
            413,
            f"{what} is larger than this server's upload limit of {limit_mb:g} MB.",
            "Start the server with a higher limit (lambdaserve serve --max-upload-mb N), or publish "
            "the file from the command line: lambdaserve models push FILE --name NAME.",
            {"limit_bytes": self.max_bytes},
        )
