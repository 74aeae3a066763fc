"""What a model's endpoint costs on AWS per month: Lambda, API Gateway, storage, and the
volume at which one always-on instance would cost less.

Pure arithmetic over a dated price table (``PRICES``, one entry per region, each with the
pages it was read from). Lambda bills requests, and GB-seconds of *billed* duration (each
invocation rounded up to the millisecond; for container images INIT is billed too, which the
cold-start share adds). The free tier (1M requests and 400,000 GB-s of Lambda a month, for
every account; 1M REST API calls a month for an account's first 12 months) is shown apart,
because an account shares it between all its functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.log_lines import billed_ms

MILLION = 1_000_000
SECONDS_PER_MONTH = 730 * 3600  # AWS's pricing pages count a month as 730 hours
KEEP_WARM_PER_MONTH = 730 * 12  # one invocation every 5 minutes, per stage
LAMBDA_FREE_REQUESTS = 1_000_000
LAMBDA_FREE_GB_S = 400_000
REST_FREE_REQUESTS = 1_000_000  # for 12 months after the account is made


@dataclass(frozen=True)
class Instance:
    name: str
    vcpus: int
    memory_gib: float
    usd_per_hour: float


@dataclass(frozen=True)
class RegionPrices:
    """Prices in USD, as AWS's pages listed them on ``as_of`` (first pricing tier only)."""

    region: str
    as_of: str
    sources: tuple[str, ...]
    lambda_request_per_million: float
    lambda_gb_s: dict[str, float]  # by architecture: x86_64, arm64
    provisioned_gb_s: dict[str, float]  # provisioned concurrency, per GB-s kept ready
    provisioned_duration_gb_s: dict[str, float]  # duration of invocations on it
    rest_api_per_million: float  # the first 333 million a month
    http_api_per_million: float  # the first 300 million a month
    s3_gb_month: float
    ecr_gb_month: float
    instances: dict[str, Instance]  # by architecture: the smallest general-purpose one we compare


_SOURCES = (
    "https://aws.amazon.com/lambda/pricing/",
    "https://aws.amazon.com/api-gateway/pricing/",
    "https://aws.amazon.com/s3/pricing/",
    "https://aws.amazon.com/ecr/pricing/",
    "https://aws.amazon.com/ec2/pricing/on-demand/",
)

_US_EAST_1 = RegionPrices(
    region="us-east-1",
    as_of="2026-12-03",
    sources=_SOURCES,
    lambda_request_per_million=0.20,
    lambda_gb_s={"x86_64": 0.0000166667, "arm64": 0.0000133334},
    provisioned_gb_s={"x86_64": 0.0000041667, "arm64": 0.0000033334},
    provisioned_duration_gb_s={"x86_64": 0.0000097222, "arm64": 0.0000077778},
    rest_api_per_million=3.50,
    http_api_per_million=1.00,
    s3_gb_month=0.023,
    ecr_gb_month=0.10,
    instances={
        "x86_64": Instance("t3.small", 2, 2.0, 0.0208),
        "arm64": Instance("t4g.small", 2, 2.0, 0.0168),
    },
)

PRICES: dict[str, RegionPrices] = {
    "us-east-1": _US_EAST_1,
    # Lambda, the REST API and storage cost the same there; the HTTP API and instances more.
    "eu-west-1": replace(
        _US_EAST_1,
        region="eu-west-1",
        http_api_per_million=1.11,
        instances={
            "x86_64": Instance("t3.small", 2, 2.0, 0.0228),
            "arm64": Instance("t4g.small", 2, 2.0, 0.0184),
        },
    ),
}


def prices_for(region: str) -> RegionPrices:
    if region not in PRICES:
        raise LambdaserveError(
            f"No prices for {region!r} in this version of lambdaserve.",
            f"Use one of {', '.join(PRICES)}; other regions' prices are on {_SOURCES[0]}.",
        )
    return PRICES[region]


@dataclass(frozen=True)
class Workload:
    """What one month asks of the endpoint."""

    requests: int
    duration_ms: float  # per warm invocation, as REPORT says (billed: rounded up to the ms)
    memory_mb: int
    architecture: str = "x86_64"
    cold_share: float = 0.0  # the share of invocations that run INIT first
    init_ms: float = 0.0  # and how long INIT takes (billed for container images)
    stages_kept_warm: int = 0
    provisioned: int = 0  # environments of provisioned concurrency, all month
    stored_gb: float = 0.0  # model files in S3
    image_gb: float = 0.0  # the function's image in ECR
    measured_per_vcpu_s: float | None = None  # a load test's requests/s per core, for the instance


@dataclass
class Estimate:
    region: str
    as_of: str
    workload: dict[str, Any]
    lines: dict[str, float]  # monthly USD per item, before any free tier
    total: float
    free_tier: dict[str, float]  # what the free tier would take off, each apart
    http_api_instead: float  # the REST API line, were it an HTTP API
    per_million: float  # the cost of a million requests at this size, without free tier
    break_even: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(workload: Workload, prices: RegionPrices) -> Estimate:
    """The month's bill for ``workload`` in ``prices``' region (USD, unrounded)."""
    arch = workload.architecture
    if arch not in prices.lambda_gb_s:
        raise LambdaserveError(f"Unknown architecture {arch!r}.", "Use x86_64 or arm64.")
    if workload.requests < 0 or workload.duration_ms < 0 or workload.memory_mb < 128:
        raise LambdaserveError("Requests and duration must not be negative, and memory is at least 128 MB.")
    invocations = workload.requests + workload.stages_kept_warm * KEEP_WARM_PER_MONTH
    gb = workload.memory_mb / 1024
    billed_s = billed_ms(workload.duration_ms) / 1000
    init_s = math.ceil(workload.init_ms) / 1000 * workload.cold_share
    gb_s = invocations * (billed_s + init_s) * gb
    lines = {
        "lambda_requests": invocations / MILLION * prices.lambda_request_per_million,
        "lambda_duration": gb_s * prices.lambda_gb_s[arch],
        "rest_api": workload.requests / MILLION * prices.rest_api_per_million,
    }
    if workload.provisioned:
        # Kept ready all month; invocations on it are billed at its (lower) duration price.
        ready = workload.provisioned * gb * SECONDS_PER_MONTH
        lines["provisioned_concurrency"] = ready * prices.provisioned_gb_s[arch]
        lines["lambda_duration"] = gb_s * prices.provisioned_duration_gb_s[arch]
    if workload.stored_gb:
        lines["storage"] = workload.stored_gb * prices.s3_gb_month
    if workload.image_gb:
        lines["image"] = workload.image_gb * prices.ecr_gb_month
    free = {
        "lambda_requests": min(invocations, LAMBDA_FREE_REQUESTS)
        / MILLION
        * prices.lambda_request_per_million,
        "lambda_duration": 0.0
        if workload.provisioned
        else min(gb_s, LAMBDA_FREE_GB_S) * prices.lambda_gb_s[arch],
        "rest_api_first_12_months": min(workload.requests, REST_FREE_REQUESTS)
        / MILLION
        * prices.rest_api_per_million,
    }
    per_million = (
        prices.lambda_request_per_million
        + MILLION * (billed_s + init_s) * gb * prices.lambda_gb_s[arch]
        + prices.rest_api_per_million
    )
    result = Estimate(
        region=prices.region,
        as_of=prices.as_of,
        workload=asdict(workload),
        lines=lines,
        total=sum(lines.values()),
        free_tier=free,
        http_api_instead=workload.requests / MILLION * prices.http_api_per_million,
        per_million=per_million,
    )
    result.break_even = break_even(workload, prices, per_million)
    return result


def break_even(workload: Workload, prices: RegionPrices, per_million: float) -> dict[str, Any]:
    """The monthly volume above which one always-on instance costs less than Lambda + the
    REST API, and how many requests a second that instance could serve: at this duration
    (its vCPUs kept busy, nothing else counted: an upper bound), or, from a load test, at
    the throughput it reached per core here (the client shared those cores: a lower bound)."""
    instance = prices.instances[workload.architecture]
    monthly = instance.usd_per_hour * 730
    if workload.measured_per_vcpu_s:
        # What a load test reached per core of the machine that served it, client beside it.
        capacity_per_s = instance.vcpus * workload.measured_per_vcpu_s
    else:
        capacity_per_s = instance.vcpus * 1000 / max(workload.duration_ms, 0.001)
    return {
        "instance": instance.name,
        "vcpus": instance.vcpus,
        "capacity_basis": "load test" if workload.measured_per_vcpu_s else "duration",
        "usd_per_month": monthly,
        "requests_per_month": monthly / per_million * MILLION if per_million else math.inf,
        "capacity_requests_per_s": capacity_per_s,
        "capacity_requests_per_month": capacity_per_s * SECONDS_PER_MONTH,
    }


def parse_volume(text: str) -> int:
    """``1M``, ``250k``, ``3000000``, ``1.5M/month`` -> requests per month."""
    cleaned = text.strip().lower().removesuffix("/month").replace(",", "").replace("_", "")
    scale = {"k": 1_000, "m": MILLION, "b": 1_000_000_000}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale != 1 else cleaned
    try:
        value = float(number)
    except ValueError:
        raise LambdaserveError(
            f"{text!r} is not a number of requests per month.", "e.g. --requests 1M, 250k or 3000000"
        ) from None
    if not 0 <= value * scale <= 1e15:
        raise LambdaserveError(f"{text!r} is out of range.", "e.g. --requests 1M")
    return round(value * scale)
