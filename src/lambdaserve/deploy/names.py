"""What every AWS resource of a project is called, and the tags that find them again.

One project is one S3 bucket and one ECR repository; each model adds a function, its role
and its log group; each stage is a REST API of its own (holding the routes of the models
deployed to that stage), a usage plan and an API key; each model's stage is a Lambda alias
and the model's routes in the stage's API. Names are derived, never
stored: a rerun from another machine finds the same resources. AWS limits names (64
characters for functions and roles, 63 for buckets); a name that would not fit keeps a
readable prefix and ends with a hash of the whole, so two long names never collide.

The project is ``--project``, else ``LAMBDASERVE_PROJECT``, else the name of the folder
that holds the state directory (as docker compose names a project after its folder).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lambdaserve.errors import LambdaserveError

TAG_PROJECT = "lambdaserve:project"
TAG_MODEL = "lambdaserve:model"
TAG_STAGE = "lambdaserve:stage"
# API Gateway writes every API's logs of an account and region with one role set on the account.
APIGATEWAY_LOGS_ROLE = "lambdaserve-apigateway-cloudwatch"
# API Gateway stage names take letters, digits and underscores only (no '-', unlike the
# local gateway's stages and Lambda's aliases).
_API_STAGE = re.compile(r"[a-zA-Z0-9_]{1,128}")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def project_name(explicit: str | None, state_dir: Path) -> str:
    """The project's name: explicit, else LAMBDASERVE_PROJECT, else the state folder's parent."""
    name = explicit or os.environ.get("LAMBDASERVE_PROJECT")
    if not name:
        folder = state_dir.resolve().parent.name
        name = re.sub(r"[^a-z0-9-]+", "-", folder.lower()).strip("-") or "lambdaserve"
        name = name[:40].strip("-") or "lambdaserve"
    if not _PROJECT.fullmatch(name):
        raise LambdaserveError(
            f"{name!r} is not a valid project name.",
            "Use 1-40 lower-case letters, digits or '-', starting with a letter or digit "
            "(--project or LAMBDASERVE_PROJECT); it goes into bucket and function names.",
        )
    return name


def check_api_stage(stage: str) -> str:
    # The stage is also the Lambda alias's name, which may not be all digits (a version number).
    if not _API_STAGE.fullmatch(stage) or stage.isdigit():
        raise LambdaserveError(
            f"{stage!r} cannot be an API Gateway stage name.",
            "On AWS, stage names take letters, digits and '_' only, and not only digits, as the "
            "stage is also a Lambda alias (e.g. test, prod, canary_1).",
        )
    return stage


def fit(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit`` characters, else a prefix of it plus a hash of it."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-_')}-{digest}"


@dataclass(frozen=True)
class Names:
    """Resource names for one project in one account and region."""

    project: str
    account: str
    region: str

    @property
    def bucket(self) -> str:
        return fit(f"lambdaserve-{self.project}-{self.account}-{self.region}", 63)

    @property
    def repository(self) -> str:
        return f"lambdaserve-{self.project}"

    def rest_api(self, stage: str) -> str:
        """The stage's own REST API: it holds the routes of the models deployed to the stage."""
        return f"lambdaserve-{self.project}-{stage}"

    @property
    def legacy_rest_api(self) -> str:
        """The one REST API per project that lambdaserve made before APIs were per stage."""
        return f"lambdaserve-{self.project}"

    def access_log_group(self, stage: str) -> str:
        return f"/aws/apigateway/lambdaserve-{self.project}/{stage}"

    def function(self, model: str) -> str:
        return fit(f"{self.project}-{model}", 64)

    def role(self, model: str) -> str:
        return fit(f"lambdaserve-{self.project}-{model}", 64)

    def role_policy(self) -> str:
        return "read-model-bundles"

    def log_policy(self) -> str:
        return "write-own-logs"

    def log_group(self, model: str) -> str:
        return f"/aws/lambda/{self.function(model)}"

    def keep_warm_rule(self, model: str, stage: str) -> str:
        return fit(f"lambdaserve-{self.project}-{model}-{stage}-warm", 64)

    def usage_plan(self, stage: str) -> str:
        return f"lambdaserve-{self.project}-{stage}"

    def api_key(self, stage: str) -> str:
        return f"lambdaserve-{self.project}-{stage}"

    def bundle_prefix(self, model: str) -> str:
        return f"bundles/{model}/"

    def bundle_key(self, model: str, sha256: str, suffix: str) -> str:
        """Bundles by content hash: the same file is uploaded once, whatever its version number."""
        return f"{self.bundle_prefix(model)}{sha256}{suffix}"

    def image_uri(self, tag: str) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.repository}:{tag}"

    def endpoint(self, api_id: str, stage: str, model: str) -> str:
        return f"https://{api_id}.execute-api.{self.region}.amazonaws.com/{stage}/{model}/predict"

    def tags(self, model: str | None = None, stage: str | None = None) -> dict[str, str]:
        tags = {TAG_PROJECT: self.project}
        if model is not None:
            tags[TAG_MODEL] = model
        if stage is not None:
            tags[TAG_STAGE] = stage
        return tags
