"""Build an image and push it to ECR with the builder found on this machine.

ECR's password comes from ``GetAuthorizationToken`` (valid 12 hours). It never appears in
a process's arguments: docker reads it on stdin, podman and buildah from an auth file
that only this user can read, removed after the push.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.image import Builder, ImageContext, build_image
from lambdaserve.deploy.plan import Reporter
from lambdaserve.errors import LambdaserveError


class ImagePublisher:
    """``publisher(uri)`` builds the context that ``uri``'s tag stands for and pushes it."""

    def __init__(
        self, aws: AWS, builder: Builder, contexts: dict[str, ImageContext], progress: Reporter
    ) -> None:
        self.aws = aws
        self.builder = builder
        self.contexts = contexts
        self.progress = progress

    def __call__(self, uri: str) -> dict[str, Any]:
        context = self.contexts.get(uri)
        if context is None:
            raise LambdaserveError(f"No build context for the image {uri}.")
        image_id = build_image(context, uri, self.builder, self.progress)
        digest = self.push(uri)
        return {"imageId": image_id, "imageDigest": digest}

    def push(self, uri: str) -> str:
        token = self.aws.call("ecr", "get_authorization_token")["authorizationData"][0]
        user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
        endpoint = token["proxyEndpoint"]
        registry = endpoint.removeprefix("https://").removeprefix("http://")
        self.progress.step(f"Pushing {uri} with {self.builder.name}")
        with tempfile.TemporaryDirectory(prefix="lambdaserve-push-") as scratch:
            digest_file = Path(scratch) / "digest"
            if self.builder.name == "docker":
                self._run(
                    [self.builder.executable, "login", "--username", user, "--password-stdin", registry],
                    stdin=password,
                )
                command = [self.builder.executable, "push", uri]
            else:
                auth = Path(scratch) / "auth.json"
                fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    secret = base64.b64encode(f"{user}:{password}".encode()).decode()
                    json.dump({"auths": {registry: {"auth": secret}}}, f)
                # Lambda takes Docker v2 schema 2 manifests; buildah would push OCI ones by default.
                command = [
                    self.builder.executable,
                    "push",
                    "--authfile",
                    str(auth),
                    "--format",
                    "v2s2",
                    "--digestfile",
                    str(digest_file),
                    # ECR is always HTTPS; a plain-HTTP endpoint is a local registry (the tests').
                    *(["--tls-verify=false"] if endpoint.startswith("http://") else []),
                    uri,
                    f"docker://{uri}",
                ]
            output = self._run(command)
            if digest_file.is_file():
                return digest_file.read_text().strip()
        return next((w for w in output.split() if w.startswith("sha256:")), "")

    def _run(self, command: list[str], stdin: str | None = None) -> str:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        for line in (done.stdout + done.stderr).splitlines():
            if line.strip():
                self.progress.detail(line.rstrip())
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise LambdaserveError(
                f"{self.builder.name} {command[1]} failed ({done.returncode}): " + " ".join(last),
                "Check that the credentials may push to ECR (ecr:InitiateLayerUpload, ecr:PutImage, ...) "
                "and that the repository exists; then rerun deploy.",
            )
        return done.stdout
