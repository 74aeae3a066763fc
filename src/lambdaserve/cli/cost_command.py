"""``lambdaserve cost``: what a model's endpoint would cost on AWS per month, from what was
measured (the local gateway's REPORT lines, a load test, or the deployed function's REPORT
lines in CloudWatch Logs) or from durations you give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from lambdaserve.cli.options import JSON_OPTION, PROFILE_OPTION, PROJECT_OPTION, STATE_OPTION
from lambdaserve.cli.output import handle_errors, out, print_json
from lambdaserve.cli.render import create_table, plural
from lambdaserve.cli.state import open_store, require_model, state_root
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.deploy.costing import LocalFacts, Measured
    from lambdaserve.deploy.pricing import Estimate

SOURCES = {
    "local": "the local gateway's REPORT lines",
    "loadtest": "a load test's latencies (client side: an upper bound of Duration)",
    "cloudwatch": "the deployed function's REPORT lines in CloudWatch Logs",
}

LABELS = {
    "lambda_requests": "Lambda requests",
    "lambda_duration": "Lambda duration (GB-seconds)",
    "rest_api": "API Gateway REST API",
    "provisioned_concurrency": "provisioned concurrency",
    "storage": "S3 model files",
    "image": "ECR image",
}


@handle_errors
def cost(
    model: str | None = typer.Argument(
        None, help="A model served locally (its REPORT lines give the durations) or deployed (--remote)."
    ),
    requests: str = typer.Option(
        "1M",
        "--requests",
        help="Requests per month, e.g. 1M, 250k, 30000000; or 'seen': the rate of the model's requests "
        "here (its REPORT lines, over at least 10 minutes), as a month.",
    ),
    image_mb: float | None = typer.Option(
        None,
        "--image-mb",
        help="The function's image size in ECR, MB [default: 500, about a scikit-learn image].",
    ),
    region: str | None = typer.Option(
        None,
        "--region",
        help="The AWS region whose prices to use (with --remote, also where the function runs) "
        "[default: the deployed function's region with --remote, else us-east-1].",
    ),
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
    from_loadtest_: str | None = typer.Option(
        None,
        "--from-loadtest",
        help="Durations and throughput from a load test: a file of lambdaserve loadtest --json, or "
        "'latest' for the latest run recorded for MODEL.",
    ),
    remote: bool = typer.Option(
        False,
        "--remote",
        help="Durations and memory from the deployed function's REPORT lines (CloudWatch).",
    ),
    stage: str | None = typer.Option(
        None, "--stage", help="With --remote: only the versions this stage's alias runs [default: all]."
    ),
    since: str = typer.Option("7d", "--since", help="With --remote: REPORT lines of the last 30m, 12h, 7d."),
    project_: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Project a month's AWS bill for a model's endpoint: Lambda, API Gateway, storage.

    Durations come from the REPORT lines the local gateway wrote for MODEL (warm invocations:
    the median), memory from what deploy would give its function. This machine's durations
    stand in for Lambda's, whose CPU share grows with memory: --remote prices from the
    deployed function's own REPORT lines (Duration, Billed Duration, Memory Size, Max Memory
    Used, Init Duration) in CloudWatch Logs. --from-loadtest prices from a load test's
    latencies, and sizes the always-on instance of the break-even from its throughput.
    The output says which source the durations came from. Prices are a dated table inside
    lambdaserve; the free tier is shown apart.

    Example:

        lambdaserve cost news --requests 1M

        lambdaserve cost news --from-loadtest latest

        lambdaserve loadtest news --json > run.json; lambdaserve cost --from-loadtest run.json

        lambdaserve cost news --remote --stage prod --since 3d

        lambdaserve cost --duration-ms 120 --memory 512 --requests 3M --arch arm64
    """
    from lambdaserve.deploy.costing import IMAGE_GB, local_facts, measured_dict, project, seen_per_month
    from lambdaserve.deploy.pricing import parse_volume, prices_for

    seen = requests.strip().lower() == "seen"
    volume = 0 if seen else parse_volume(requests)
    if seen and (remote or from_loadtest_ is not None or model is None):
        raise LambdaserveError(
            "--requests seen prices the usage of a model served here: give its name, without "
            "--remote or --from-loadtest.",
            "e.g. lambdaserve cost news --requests seen",
        )
    if image_mb is not None and not 0 <= image_mb <= 10_240:
        raise LambdaserveError("--image-mb is from 0 to 10240 (Lambda's largest image is 10 GB).")
    if remote and from_loadtest_ is not None:
        raise LambdaserveError("Give --remote or --from-loadtest, not both: one source of durations.")
    if stage is not None and not remote:
        raise LambdaserveError(
            "--stage goes with --remote.", f"e.g. lambdaserve cost {model or 'MODEL'} --remote --stage prod"
        )
    if remote:
        facts, region = _remote_facts(model, stage, since, region, project_, profile, state_dir)
    elif from_loadtest_ is not None:
        facts = _loadtest_facts(model, from_loadtest_, state_dir)
    elif model is not None:
        with open_store(state_dir) as store:
            facts = local_facts(store, model)
    else:
        facts = None
    region = region or "us-east-1"
    if seen:
        volume = seen_per_month(facts.measured if facts else None)
    result = project(
        facts,
        requests=volume,
        image_gb=IMAGE_GB if image_mb is None else image_mb / 1000,
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
    _show(result, model, measured, memory is None, duration_ms is not None, seen)


def _loadtest_facts(model: str | None, source: str, state_dir: Path | None) -> LocalFacts:
    """A load test's figures, with the model's memory and files where the store has it."""
    from lambdaserve.deploy.costing import from_loadtest, local_facts, with_measured
    from lambdaserve.store.loadtests import latest_loadtest

    facts = None
    if source == "latest":
        if model is None:
            raise LambdaserveError(
                "--from-loadtest latest needs a MODEL: the latest run recorded for it.",
                "e.g. lambdaserve cost news --from-loadtest latest",
            )
        with open_store(state_dir) as store:
            facts = local_facts(store, model)
            run = latest_loadtest(store, model)
        if run is None:
            raise LambdaserveError(
                f"No load test is recorded for {model!r}.",
                f"Run one against it where it is served: lambdaserve loadtest {model} --api-key $KEY",
            )
        return with_measured(facts, from_loadtest(run, f"run {run['id']} of {model} ({run['at']})"))
    path = Path(source)
    try:
        run = json.loads(path.read_text())
    except OSError as exc:
        raise LambdaserveError(
            f"Cannot read {path}: {exc.strerror}.", "Give a file of lambdaserve loadtest --json, or 'latest'."
        ) from None
    except ValueError:
        raise LambdaserveError(
            f"{path} is not JSON.", "Write one with: lambdaserve loadtest MODEL --json > run.json"
        ) from None
    if not isinstance(run, dict):
        raise LambdaserveError(
            f"{path} is not the output of lambdaserve loadtest --json.",
            "Write one with: lambdaserve loadtest MODEL --json > run.json",
        )
    named = model or run.get("model")
    if isinstance(named, str) and (model is not None or (state_root(state_dir) / "state.db").is_file()):
        with open_store(state_dir) as store:
            if named in store.models():
                facts = local_facts(store, named)
            elif model is not None:
                require_model(store, model)
    return with_measured(facts, from_loadtest(run, str(path)))


def _remote_facts(
    model: str | None,
    stage: str | None,
    since: str,
    region: str | None,
    project: str | None,
    profile: str | None,
    state_dir: Path | None,
) -> tuple[LocalFacts, str]:
    """The deployed function's REPORT lines in CloudWatch Logs since ``since``, and its region."""
    from lambdaserve.cli.log_command import parse_since_ms
    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.costing import local_facts, measure_reports, with_measured
    from lambdaserve.deploy.deployer import connect
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.deploy.remote import remote_reports

    if model is None:
        raise LambdaserveError(
            "--remote needs a MODEL: whose function's logs to read.", "e.g. lambdaserve cost news --remote"
        )
    since_ms = parse_since_ms(since)
    with open_store(state_dir) as store:
        name = project_name(project, store.root)
        facts = local_facts(store, model) if model in store.models() else None
        aws = connect(store, name, region, profile, AWS)
    names = Names(name, aws.account(), aws.region)
    lines, versions = remote_reports(aws, names, model, stage, since_ms)
    where = f"{names.log_group(model)} in {aws.region}, since {since}" + (
        f", stage {stage} (Lambda version {', '.join(versions)})" if stage and versions else ""
    )
    measured = measure_reports(lines, "cloudwatch", where)
    if measured is None:
        raise LambdaserveError(
            f"No REPORT line in {where}: the function was not invoked then.",
            f"Send it requests (lambdaserve loadtest {model} --remote --stage {stage or 'STAGE'}), wait a "
            "minute for CloudWatch, then ask again; or a longer --since; or price from here without "
            "--remote.",
        )
    return with_measured(facts, measured), aws.region


def _show(
    result: Estimate,
    model: str | None,
    measured: Measured | None,
    default_memory: bool,
    given: bool,
    seen: bool = False,
) -> None:
    from lambdaserve.deploy.pricing import LAMBDA_FREE_GB_S, LAMBDA_FREE_REQUESTS, REST_FREE_REQUESTS
    from lambdaserve.functions.log_lines import billed_ms

    work = result.workload
    out.print(
        f"[bold]{escape(model or 'A function')}[/] on AWS, {result.region}, {work['architecture']}: "
        f"{work['requests']:,} requests a month"
        + (
            f" (the rate seen here: {measured.invocations:,} in {measured.span_s / 3600:.1f} h, as 730 h)"
            if seen and measured is not None and measured.span_s
            else ""
        )
    )
    if given or measured is None:
        out.print("  durations from: --duration-ms")
    if measured is not None:
        label = "measured (not priced)" if given else "durations from"
        out.print(f"  {label}: {SOURCES[measured.source]}: {escape(measured.where)}")
        what = "latency" if measured.source == "loadtest" else "Duration"
        out.print(
            f"  measured: {plural(measured.invocations, 'request' if what == 'latency' else 'invocation')}, "
            f"{what} median {measured.duration_ms:.2f} ms (p90 {measured.p90_ms:.2f} ms)"
            + (
                f", {plural(measured.cold, 'INIT')}"
                + (f" (median {measured.init_ms:.0f} ms)" if measured.init_ms else "")
                if measured.cold
                else ""
            )
            + (f"; Billed Duration median {measured.billed_ms:.0f} ms" if measured.billed_ms else "")
            + (
                f"; Memory Size {measured.memory_mb} MB, Max Memory Used up to "
                f"{measured.max_memory_used_mb} MB"
                if measured.memory_mb
                else ""
            )
            + (f"; {measured.requests_per_s:,.1f} requests a second" if measured.requests_per_s else "")
        )
    if measured is not None and measured.memory_mb:
        memory_note = " (the deployed function's)" if default_memory else ""
    else:
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
    if even.get("capacity_basis") == "load test":
        capacity = (
            f"at the {work['measured_per_vcpu_s']:,.1f} requests a second per core the load test reached "
            f"here, it would serve at least about {even['capacity_requests_per_s']:,.0f} a second (the "
            "client shared those cores)."
        )
    else:
        capacity = (
            f"at {work['duration_ms']:.2f} ms it could serve at most about "
            f"{even['capacity_requests_per_s']:,.0f} requests a second (its vCPUs busy, nothing else)."
        )
    out.print(
        f"  One million requests cost {result.per_million:,.2f}. One always-on {even['instance']} "
        f"({even['vcpus']} vCPUs, {even['usd_per_month']:,.2f} a month) costs less above "
        f"{even['requests_per_month']:,.0f} requests a month; {capacity}"
    )
    out.print(f"  [dim]Prices as of {result.as_of}, from AWS's pricing pages; check them before deciding.[/]")
