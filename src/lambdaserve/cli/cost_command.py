"""``lambdaserve cost``: what a model's endpoint would cost on AWS per month, from what the
local gateway measured (its REPORT lines) or from durations you give."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from lambdaserve.cli.options import JSON_OPTION, STATE_OPTION
from lambdaserve.cli.output import handle_errors, out, print_json
from lambdaserve.cli.render import create_table, plural
from lambdaserve.cli.state import open_store
from lambdaserve.deploy.costing import Measured, local_facts, measured_dict, project
from lambdaserve.deploy.pricing import (
    LAMBDA_FREE_GB_S,
    LAMBDA_FREE_REQUESTS,
    REST_FREE_REQUESTS,
    Estimate,
    parse_volume,
    prices_for,
)
from lambdaserve.functions.log_lines import billed_ms

LABELS = {
    "lambda_requests": "Lambda requests",
    "lambda_duration": "Lambda duration (GB-seconds)",
    "rest_api": "API Gateway REST API",
    "provisioned_concurrency": "provisioned concurrency",
    "storage": "S3 model files",
}


@handle_errors
def cost(
    model: str | None = typer.Argument(
        None, help="A model served locally: its REPORT lines give the durations."
    ),
    requests: str = typer.Option("1M", "--requests", help="Requests per month, e.g. 1M, 250k, 30000000."),
    region: str = typer.Option("us-east-1", "--region", help="The AWS region whose prices to use."),
    arch: str = typer.Option("x86_64", "--arch", help="x86_64 or arm64 (Graviton: cheaper GB-seconds)."),
    memory: int | None = typer.Option(
        None, "--memory", help="Function memory in MB [default: what deploy would set for the model]."
    ),
    duration_ms: float | None = typer.Option(
        None, "--duration-ms", help="Duration per invocation in ms [default: the median measured here]."
    ),
    cold_share: float | None = typer.Option(
        None, "--cold-share", help="Share of invocations that run INIT first, 0-1 [default: none]."
    ),
    keep_warm: int = typer.Option(0, "--keep-warm", help="Stages invoked every 5 minutes to stay warm."),
    provisioned: int = typer.Option(0, "--provisioned", help="Environments of provisioned concurrency."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Project a month's AWS bill for a model's endpoint: Lambda, API Gateway, storage.

    Durations come from the REPORT lines the local gateway wrote for MODEL (warm invocations:
    the median), memory from what deploy would give its function. This machine's durations
    stand in for Lambda's, whose CPU share grows with memory: measure on AWS (lambdaserve logs
    --remote) for the real figure. Prices are a dated table inside lambdaserve; the free
    tier is shown apart. Also: the volume above which one always-on instance costs less.

    Example:

        lambdaserve cost news --requests 1M

        lambdaserve cost --duration-ms 120 --memory 512 --requests 3M --arch arm64
    """
    volume = parse_volume(requests)
    facts = None
    if model is not None:
        with open_store(state_dir) as store:
            facts = local_facts(store, model)
    result = project(
        facts,
        requests=volume,
        region=region,
        architecture=arch,
        memory_mb=memory,
        duration_ms=duration_ms,
        cold_share=cold_share or 0.0,
        stages_kept_warm=keep_warm,
        provisioned=provisioned,
    )
    measured = facts.measured if facts else None
    if as_json:
        print_json(
            {
                **result.to_dict(),
                "measured": measured_dict(facts),
                "sources": prices_for(region).sources,
            }
        )
        return
    _show(result, model, measured, memory is None)


def _show(result: Estimate, model: str | None, measured: Measured | None, default_memory: bool) -> None:
    work = result.workload
    out.print(
        f"[bold]{escape(model or 'A function')}[/] on AWS, {result.region}, {work['architecture']}: "
        f"{work['requests']:,} requests a month"
    )
    if measured is not None:
        out.print(
            f"  measured here: {plural(measured.invocations, 'invocation')}, Duration median "
            f"{measured.duration_ms:.2f} ms (p90 {measured.p90_ms:.2f} ms)"
            + (
                f", {plural(measured.cold, 'INIT')} (median {measured.init_ms:.0f} ms)"
                if measured.cold
                else ""
            )
        )
    memory_note = " (deploy's default for this model)" if default_memory else ""
    billed = billed_ms(work["duration_ms"])
    out.print(
        f"  priced at: {work['duration_ms']:.2f} ms, billed {billed} ms; {work['memory_mb']} MB{memory_note}"
    )
    table = create_table("item", "USD per month")
    for key, value in result.lines.items():
        table.add_row(LABELS.get(key, key), f"{value:,.2f}")
    table.add_row("[bold]total[/]", f"[bold]{result.total:,.2f}[/]")
    out.print(table)
    free = result.free_tier
    out.print(
        f"  Free tier, if the account has it to spare: Lambda's {LAMBDA_FREE_REQUESTS:,} requests and "
        f"{LAMBDA_FREE_GB_S:,} GB-s a month take off "
        f"{free['lambda_requests'] + free['lambda_duration']:,.2f}; "
        f"in an account's first 12 months, {REST_FREE_REQUESTS:,} REST API calls take off "
        f"{free['rest_api_first_12_months']:,.2f}."
    )
    out.print(
        f"  An HTTP API instead of the REST API: {result.http_api_instead:,.2f} instead of "
        f"{result.lines['rest_api']:,.2f} (no API keys or usage plans there)."
    )
    even = result.break_even
    out.print(
        f"  One million requests cost {result.per_million:,.2f}. One always-on {even['instance']} "
        f"({even['vcpus']} vCPUs, {even['usd_per_month']:,.2f} a month) costs less above "
        f"{even['requests_per_month']:,.0f} requests a month; at {work['duration_ms']:.2f} ms it could "
        f"serve at most about {even['capacity_requests_per_s']:,.0f} requests a second (its vCPUs busy, "
        "nothing else)."
    )
    out.print(f"  [dim]Prices as of {result.as_of}, from AWS's pricing pages; check them before deciding.[/]")
