"""The desired state of one model's stage on AWS, built from the local store and the flags.

This is what the planner compares with what AWS has, and what the CloudFormation export
writes out. Plain values only: nothing here talks to AWS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdaserve.bundle.reference import reference_file
from lambdaserve.defaults import DEFAULT_LOG_RETENTION_DAYS, DEFAULT_TIMEOUT_S
from lambdaserve.deploy.names import Names
from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime.variables import AWS_WARM_UP_BYTES, handler_variables
from lambdaserve.store.records import ModelVersion

DEFAULT_MEMORY_MB = 512  # when the bundle records no measurement (made before lambdaserve measured INIT)
MIN_MEMORY_MB = 256
# A new stage's usage plan throttles each key, and a new function has a concurrency of its own:
# without them one key (or a leaked one) could take every Lambda execution of the account.
DEFAULT_RATE = 10.0  # requests per second, per key
DEFAULT_BURST = 10
DEFAULT_RESERVED_CONCURRENCY = 10
# Lambda refuses a reservation that leaves fewer unreserved executions than this in the account.
MIN_UNRESERVED_CONCURRENCY = 100
ARCHITECTURES = ("x86_64", "arm64")
KEEP_WARM_SCHEDULE = "rate(5 minutes)"
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)  # fmt: skip


def recommended_memory(measured_mb: int | None) -> int:
    """A new function's memory: what INIT and a first prediction used here, plus half again.

    Rounded up to 64 MB, and never below 256 MB. Lambda gives CPU in proportion to memory,
    so a tight setting also slows every invocation.
    """
    if not measured_mb:
        return DEFAULT_MEMORY_MB
    return max(MIN_MEMORY_MB, math.ceil(measured_mb * 1.5 / 64) * 64)


@dataclass(frozen=True)
class Release:
    """One local model version as it goes to AWS: its file in S3 and its function settings."""

    model: str
    version: int
    sha256: str
    format: str
    file: Path  # the model file in the local store
    suffix: str  # ".pickle", ".onnx", ...
    python: str  # "3.11": the image's base
    requirements: tuple[str, ...]
    has_proba: bool
    trusted_types: tuple[str, ...] = ()
    image_uri: str = ""  # the image its requirements need (set by the deployer)
    measured_memory_mb: int | None = None  # Max Memory Used of INIT and a first prediction, when packaged
    carries_code: bool = False  # code pickled by value: its bytecode needs the same Python minor version
    created: str = ""  # when the bundle was made (ISO 8601): the lock resolves as of then
    sample_input: Any = None  # the sample the model was checked with, for the printed curl line
    probabilities: dict[str, Any] | None = None  # where predict_proba comes from (the manifest's record)
    reference_file: Path | None = None  # the reference statistics /explain needs for tabular input

    @classmethod
    def from_version(cls, record: ModelVersion, file: Path, references: Path | None = None) -> Release:
        """``references``: where to write the version's reference statistics as a file."""
        manifest = record.manifest
        summary = manifest.get("reference")
        reference = reference_file(summary, references or file.parent / "references") if summary else None
        return cls(
            model=record.model,
            version=record.version,
            sha256=record.sha256,
            format=record.format,
            file=file,
            suffix=Path(manifest.get("model_file") or file.name).suffix or file.suffix,
            python=str(manifest.get("python") or ""),
            requirements=tuple(manifest.get("requirements") or ()),
            has_proba=bool(manifest.get("has_proba")),
            trusted_types=tuple(manifest.get("trusted_types") or ()),
            measured_memory_mb=manifest.get("max_memory_used_mb"),
            carries_code=_carries_code(manifest.get("scan") or {}),
            created=str(manifest.get("created") or record.created or ""),
            sample_input=manifest.get("sample_input"),
            probabilities=manifest.get("probabilities"),
            reference_file=reference,
        )

    def objects(self, names: Names) -> list[tuple[str, Path, str]]:
        """The S3 objects the release's function reads: (key, local file, what it is)."""
        found = [(names.bundle_key(self.model, self.sha256, self.suffix), self.file, "model")]
        if self.reference_file is not None:
            # reference-<hash>.json: its name holds its content hash, as the model's key does
            key = names.bundle_prefix(self.model) + self.reference_file.name
            found.append((key, self.reference_file, "reference"))
        return found

    def description(self) -> str:
        """The Lambda version's description: how a published version is matched to a local one."""
        return f"lambdaserve {self.model} v{self.version} sha256:{self.sha256}"

    def environment(self) -> dict[str, str]:
        """The function's variables, but for LAMBDASERVE_MODEL (which needs the S3 object's version)."""
        return handler_variables(
            sha256=self.sha256,
            model_format=self.format,
            version=str(self.version),
            trusted_types=self.trusted_types,
            sample=self.sample_input,
            warm_up_bytes=AWS_WARM_UP_BYTES,
            probabilities=self.probabilities,
        )


def _carries_code(scan: dict[str, Any]) -> bool:
    by_value = scan.get("by_value") or {}
    return bool(by_value.get("classes") or by_value.get("functions"))


@dataclass(frozen=True)
class UsagePlanSettings:
    """The stage's usage plan (``--rate --burst --quota``); all None means no limits."""

    rate: float | None = None
    burst: int | None = None
    quota_limit: int | None = None
    quota_period: str | None = None  # DAY | WEEK | MONTH

    def throttle(self) -> dict[str, Any] | None:
        if self.rate is None and self.burst is None:
            return None
        return {"rateLimit": float(self.rate or 0), "burstLimit": int(self.burst or 0)}

    def quota(self) -> dict[str, Any] | None:
        if self.quota_limit is None:
            return None
        return {"limit": self.quota_limit, "period": self.quota_period or "DAY"}


@dataclass(frozen=True)
class AwsFunctionSettings:
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_s: int = DEFAULT_TIMEOUT_S
    reserved_concurrency: int | None = None
    provisioned_concurrency: int | None = None
    keep_warm: bool = False
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    architecture: str = "x86_64"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise LambdaserveError(
                f"--arch {self.architecture} is not an architecture Lambda runs.",
                "Use x86_64, or arm64 (Graviton: about 20% cheaper per GB-second).",
            )
        if not 128 <= self.memory_mb <= 10240:
            raise LambdaserveError(
                f"--memory {self.memory_mb} is outside Lambda's range.", "Give 128 to 10240 (MB)."
            )
        if not 1 <= self.timeout_s <= 900:
            raise LambdaserveError(
                f"--timeout {self.timeout_s} is outside Lambda's range.",
                "Give 1 to 900 seconds; API Gateway itself gives up after 29 s.",
            )
        for flag, value in (
            ("--reserved-concurrency", self.reserved_concurrency),
            ("--provisioned-concurrency", self.provisioned_concurrency),
        ):
            if value is not None and value < 0:
                raise LambdaserveError(f"{flag} {value} is negative.", "Give 0 or more, or leave it out.")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise LambdaserveError(
                f"--log-retention {self.log_retention_days} is not a period CloudWatch Logs offers.",
                f"Use one of {', '.join(map(str, LOG_RETENTION_DAYS))} (days).",
            )


@dataclass(frozen=True)
class Desired:
    """One model's stage on AWS: which release it serves (and a canary), and how."""

    names: Names
    stage: str
    release: Release
    function: AwsFunctionSettings = field(default_factory=AwsFunctionSettings)
    plan: UsagePlanSettings = field(default_factory=UsagePlanSettings)
    canary: Release | None = None
    canary_weight: float = 0.0  # percent
    access_logs: bool = False  # API Gateway's access log of the stage, in CloudWatch Logs
    build_tags: dict[str, str] = field(default_factory=dict)  # the image's base, for status --remote
    explain: bool = False  # the /explain route (LIME, runtime/explaining.py)
    # The stage variable lambdaserveCapture (runtime/capture.py): a fraction of requests whose
    # record the handler writes to its log stream; 0 removes it, None leaves it as deployed.
    capture: float | None = None

    @property
    def model(self) -> str:
        return self.release.model

    @property
    def image_uri(self) -> str:
        return self.release.image_uri

    def function_tags(self) -> dict[str, str]:
        """The function's tags: whose it is, and what its image was built from."""
        return {**self.names.tags(self.model), **self.build_tags}

    @property
    def routes(self) -> tuple[str, ...]:
        routes = ("predict", "predict_proba") if self.release.has_proba else ("predict",)
        return (*routes, "explain") if self.explain else routes

    def releases(self) -> list[Release]:
        return [self.release] if self.canary is None else [self.release, self.canary]
