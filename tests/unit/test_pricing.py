"""The cost arithmetic, checked against the examples AWS publishes on its pricing pages."""

from __future__ import annotations

import pytest

from lambdaserve.deploy.pricing import PRICES, Workload, estimate, parse_volume, prices_for
from lambdaserve.errors import LambdaserveError

US_EAST_1 = PRICES["us-east-1"]


def lambda_bill_after_free_tier(requests: int, seconds: float, memory_mb: int) -> float:
    result = estimate(Workload(requests, seconds * 1000, memory_mb), US_EAST_1)
    lines, free = result.lines, result.free_tier
    lambda_only = lines["lambda_requests"] + lines["lambda_duration"]
    return lambda_only - free["lambda_requests"] - free["lambda_duration"]


@pytest.mark.parametrize(
    ("requests", "seconds", "memory_mb", "published"),
    [
        # https://aws.amazon.com/lambda/pricing/ examples 1 and 2 (US East, N. Virginia). AWS
        # rounds the GB-s price to $0.00001667 there, hence a cent of tolerance.
        (3_000_000, 1.0, 512, 18.74),
        (30_000_000, 0.2, 128, 11.63),
    ],
)
def test_lambda_matches_aws_published_examples(
    requests: int, seconds: float, memory_mb: int, published: float
) -> None:
    assert lambda_bill_after_free_tier(requests, seconds, memory_mb) == pytest.approx(published, abs=0.011)


def test_api_gateway_bills_per_million_and_an_http_api_costs_less() -> None:
    result = estimate(Workload(1_000_000, 2.0, 512), US_EAST_1)
    assert result.lines["rest_api"] == pytest.approx(3.50)
    assert result.http_api_instead == pytest.approx(1.00)
    assert result.free_tier["rest_api_first_12_months"] == pytest.approx(3.50)


def test_billed_duration_is_rounded_up_to_the_millisecond_and_arm_is_cheaper() -> None:
    x86 = estimate(Workload(1_000_000, 1.2, 1024), US_EAST_1)
    arm = estimate(Workload(1_000_000, 1.2, 1024, architecture="arm64"), US_EAST_1)
    assert x86.lines["lambda_duration"] == pytest.approx(1_000_000 * 0.002 * 0.0000166667)
    assert arm.lines["lambda_duration"] < x86.lines["lambda_duration"]


def test_cold_starts_keep_warm_and_provisioned_concurrency_add_what_they_cost() -> None:
    base = estimate(Workload(1_000_000, 10.0, 512), US_EAST_1)
    cold = estimate(Workload(1_000_000, 10.0, 512, cold_share=0.01, init_ms=1000.0), US_EAST_1)
    warm = estimate(Workload(1_000_000, 10.0, 512, stages_kept_warm=1), US_EAST_1)
    ready = estimate(Workload(1_000_000, 10.0, 512, provisioned=1), US_EAST_1)
    # 1% of invocations pay a 1 s INIT: 10,000 s of 0.5 GB
    assert cold.lines["lambda_duration"] - base.lines["lambda_duration"] == pytest.approx(
        5_000 * 0.0000166667
    )
    assert warm.lines["lambda_requests"] - base.lines["lambda_requests"] == pytest.approx(8_760 * 0.2 / 1e6)
    assert ready.lines["provisioned_concurrency"] == pytest.approx(0.5 * 730 * 3600 * 0.0000041667)


def test_the_break_even_is_where_the_instance_costs_as_much_as_lambda_and_api_gateway() -> None:
    result = estimate(Workload(1_000_000, 2.0, 512), US_EAST_1)
    even = result.break_even
    assert even["instance"] == "t3.small"
    at_even = estimate(Workload(round(even["requests_per_month"]), 2.0, 512), US_EAST_1)
    assert at_even.total == pytest.approx(even["usd_per_month"], rel=1e-3)


@pytest.mark.parametrize(
    ("text", "count"),
    [("1M", 1_000_000), ("250k", 250_000), ("3,000,000", 3_000_000), ("1.5M/month", 1_500_000)],
)
def test_volumes_read_as_people_write_them(text: str, count: int) -> None:
    assert parse_volume(text) == count


@pytest.mark.parametrize("text", ["lots", "-1M", "1e99"])
def test_a_volume_that_is_not_one_says_how_to_write_it(text: str) -> None:
    with pytest.raises(LambdaserveError):
        parse_volume(text)


def test_a_region_without_prices_says_which_there_are() -> None:
    with pytest.raises(LambdaserveError, match="us-east-1"):
        prices_for("mars-1")


def test_the_image_is_priced_in_ecr_and_the_model_files_in_s3() -> None:
    prices = prices_for("us-east-1")
    month = estimate(Workload(requests=0, duration_ms=1, memory_mb=128, stored_gb=2.0, image_gb=0.5), prices)
    assert month.lines["storage"] == pytest.approx(2.0 * prices.s3_gb_month)
    assert month.lines["image"] == pytest.approx(0.5 * prices.ecr_gb_month)


def test_requests_seen_runs_the_local_rate_for_a_month_and_needs_ten_minutes_of_it() -> None:
    from datetime import datetime, timedelta, timezone

    from lambdaserve.deploy.costing import measure_reports, seen_per_month
    from lambdaserve.errors import LambdaserveError

    start = datetime(2026, 12, 3, 10, tzinfo=timezone.utc)

    def lines(count: int, every_s: float) -> list[str]:
        stamps = [
            (start + timedelta(seconds=i * every_s)).isoformat().replace("+00:00", "Z") for i in range(count)
        ]
        return [
            f"{s}\tREPORT RequestId: r{i}\tDuration: 2.00 ms\tBilled Duration: 2 ms\t"
            for i, s in enumerate(stamps)
        ]

    # 121 invocations, one every 10 s: 1,200 s from the first to the last
    measured = measure_reports(lines(121, 10.0), "local", "news.log")
    assert measured is not None
    assert measured.span_s == 1200
    assert seen_per_month(measured) == round(121 / 1200 * 730 * 3600)
    with pytest.raises(LambdaserveError, match="at least 10 minutes"):
        seen_per_month(measure_reports(lines(10, 10.0), "local", "news.log"))
