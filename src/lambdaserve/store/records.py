"""The records the store holds, as plain immutable values, and the rules their values
follow: stage names, a plan's limits, ids, timestamps."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from lambdaserve.errors import LambdaserveError

QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
KEY_ALPHABET = string.ascii_letters + string.digits
ID_ALPHABET = string.ascii_lowercase + string.digits


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def random_string(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class ModelVersion:
    """One published version of a model: an immutable file plus its manifest."""

    model: str
    version: int
    sha256: str
    format: str
    file: str  # path of the model file, relative to the state directory
    manifest: dict[str, Any]
    created: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = self.manifest.get("size")
        data.pop("manifest")
        return data


@dataclass(frozen=True)
class Alias:
    """A stage of a model: the version it serves, and optionally a canary with its weight."""

    model: str
    stage: str
    version: int
    canary_version: int | None = None
    canary_weight: float = 0.0  # percent of requests, 0-100
    updated: str = ""
    sequence: int = 0  # larger for the stage changed later: the order of changes, to the last one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UsagePlan:
    """A usage plan: throttle (token bucket of ``burst`` refilled at ``rate``/s) and quota,
    for the stages it is attached to (API Gateway's API stages): its keys work only there."""

    id: str
    name: str
    rate: float | None = None
    burst: int | None = None
    quota_limit: int | None = None
    quota_period: str | None = None  # DAY | WEEK | MONTH, in UTC
    created: str = ""
    stages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages)}

    def describe(self) -> str:
        throttle = f"{self.rate:g}/s, burst {self.burst}" if self.rate is not None else "no throttle"
        quota = f"{self.quota_limit}/{self.quota_period}" if self.quota_limit is not None else "no quota"
        where = "stage" if len(self.stages) == 1 else "stages"
        return f"{throttle}; {quota}; {where} {', '.join(self.stages)}"


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its hash, never its value (shown once, when created)."""

    id: str
    name: str
    prefix: str  # the first characters, to recognise a key in lists
    hash: str
    plan_id: str | None
    enabled: bool
    created: str
    revoked: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        return data


@dataclass(frozen=True)
class Deployment:
    """One deploy of a model's stage to AWS, as it ended: status "deployed", "failed" or "destroyed"."""

    project: str
    region: str
    account: str
    model: str
    stage: str
    version: int
    status: str
    canary_version: int | None = None
    canary_weight: float = 0.0
    lambda_version: str | None = None
    url: str | None = None
    image: str | None = None
    base: str | None = None  # the image's base pin, as the function's tags record it (JSON)
    message: str | None = None
    at: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_QUOTA = 2**31 - 1


def parse_quota(text: object) -> tuple[int | None, str | None]:
    """``"100/DAY"`` -> (100, "DAY"); None -> no quota."""
    if text in (None, ""):
        return None, None
    count, _, period = str(text).partition("/")
    period = period.upper()
    if not count.isdigit() or period not in QUOTA_PERIODS:
        raise LambdaserveError(
            f"{text!r} is not a quota.", "Write it as COUNT/PERIOD, e.g. 100/DAY, 5000/MONTH."
        )
    if len(count) > 10 or not 1 <= int(count) <= MAX_QUOTA:
        raise LambdaserveError(
            f"{text!r}: a quota counts from 1 to {MAX_QUOTA} requests per period, as API Gateway's do.",
            "e.g. 100/DAY, 5000/MONTH; leave the quota out for none.",
        )
    return int(count), period


def period_start(period: str, wall: float) -> str:
    """The start of the quota period containing ``wall`` (UTC), as an ISO date."""
    day = datetime.fromtimestamp(wall, timezone.utc).date()
    if period == "WEEK":
        day -= timedelta(days=day.weekday())
    elif period == "MONTH":
        day = day.replace(day=1)
    return f"{period}:{day.isoformat()}"


def period_end(period: str, wall: float) -> float:
    """When the quota period containing ``wall`` ends (UTC), as a timestamp."""
    start = datetime.fromisoformat(period_start(period, wall).split(":", 1)[1]).replace(tzinfo=timezone.utc)
    if period == "DAY":
        end = start + timedelta(days=1)
    elif period == "WEEK":
        end = start + timedelta(days=7)
    else:
        end = (start + timedelta(days=32)).replace(day=1)
    return end.timestamp()


def check_limits(
    rate: float | None, burst: int | None, quota_limit: int | None, quota_period: str | None
) -> None:
    """A usage plan's throttle and quota, as API Gateway accepts them. The messages name the
    settings, not the command-line flags: the console shows them too."""
    if (rate is None) != (burst is None):
        raise LambdaserveError(
            "A throttle needs both a rate (requests per second) and a burst (the bucket's size).",
            "e.g. rate 10 and burst 10; or neither, for no throttle.",
        )
    if rate is not None and (rate <= 0 or burst is None or burst < 1):
        raise LambdaserveError("The rate must be above 0 and the burst at least 1.")
    if quota_limit is not None and (quota_limit < 1 or quota_period not in QUOTA_PERIODS):
        raise LambdaserveError("A quota is a positive count per DAY, WEEK or MONTH.", "e.g. 100 per DAY")


def check_stage(stage: str) -> str:
    # Stage names become URL path segments; "_" is reserved for lambdaserve's own routes.
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,127}", stage):
        raise LambdaserveError(
            f"{stage!r} is not a valid stage name.",
            "Use letters, digits, '-' and '_', starting with a letter or digit (e.g. test, prod).",
        )
    return stage


def check_stages(stages: Sequence[str]) -> tuple[str, ...]:
    """A plan's stages: at least one, each a valid stage name, in the order given, once each."""
    attached = tuple(dict.fromkeys(check_stage(s.strip()) for s in stages))
    if not attached:
        raise LambdaserveError(
            "A usage plan needs at least one stage: its keys are accepted only there.",
            "e.g. the stages test and prod",
        )
    return attached
