"""``lambdaserve loadtest``: load against a served model or any URL, closed or open loop."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from lambdaserve.cli.loadtest_targets import Target, resolve_local, resolve_remote
from lambdaserve.cli.options import JSON_OPTION, PROFILE_OPTION, PROJECT_OPTION, REGION_OPTION, STATE_OPTION
from lambdaserve.cli.output import err, handle_errors, out, print_json
from lambdaserve.cli.render import create_table
from lambdaserve.cli.state import open_store, state_root
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.loadgen import LoadResult

MAX_DURATION_S = 600.0
MAX_CONNECTIONS = 1024
MAX_RATE = 100_000.0
CLIENT_LIMIT = 0.8  # of a core: above it, the client sets the pace
MAX_BATCH = 10_000  # instances per request with --batch


@handle_errors
def loadtest(
    target: str = typer.Argument(
        ..., help="MODEL or MODEL@STAGE served locally (or, with --remote, deployed to AWS), or a URL."
    ),
    stage: str | None = typer.Option(
        None, "--stage", help="The stage of MODEL [default: test]; same as MODEL@STAGE."
    ),
    remote: bool = typer.Option(
        False,
        "--remote",
        help="Load the stage deployed to AWS: its URL as deploy recorded it, its key from API Gateway.",
    ),
    connections: int | None = typer.Option(
        None, "--connections", "-c", help="Closed loop: this many clients [default: 32]."
    ),
    rate: float | None = typer.Option(
        None, "--rate", "-r", help="Open loop: this many requests a second, each due at its time."
    ),
    duration: float = typer.Option(10.0, "--duration", "-d", help="Seconds of load, after the warm-up."),
    warmup: float = typer.Option(2.0, "--warmup", help="Seconds of load first, not counted."),
    data: str | None = typer.Option(
        None, "--data", help="The request body (JSON) [default: the model's sample]."
    ),
    data_file: Path | None = typer.Option(
        None, "--data-file", help="Bodies, one JSON per line, sent in turn."
    ),
    batch: int | None = typer.Option(
        None, "--batch", help="Instances per request: the body's first instance repeated N times."
    ),
    base: str = typer.Option("http://127.0.0.1:8000", "--base", help="Where the local server listens."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="LAMBDASERVE_API_KEY", help="x-api-key to send [env: LAMBDASERVE_API_KEY]."
    ),
    compare: str | None = typer.Option(
        None,
        "--compare",
        help="flask: then the same load on the post's Flask app under gunicorn (2 workers), started "
        "here with the same model file, and the two side by side.",
    ),
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = PROFILE_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Send load to an endpoint and report throughput, latency percentiles and errors.

    Closed loop (--connections): clients send their next request when the last is answered,
    which measures the most the endpoint serves. Open loop (--rate): requests are due at
    fixed times and each latency counts from when it was due, the right way to measure latency
    at a target load. 429s are shown apart (the usage plan at work). For a model served
    locally, the cold starts the run caused are read from its log. The client runs here: its
    CPU is shown, and near a whole core it is the limit, not the endpoint. A run against a
    model served here is recorded (the last 20 per model): the console's monitoring page
    draws it, and lambdaserve cost --from-loadtest latest prices from it.

    With --remote, the stage deployed to AWS from here: the run then includes the network to
    AWS and API Gateway's own time, and says what it cannot tell.

    Example:

        lambdaserve loadtest news --connections 32 --duration 15 --api-key $KEY

        lambdaserve loadtest news@prod --rate 200 --duration 30

        lambdaserve loadtest news --connections 32 --api-key $KEY --compare flask

        lambdaserve loadtest news --remote --stage prod --rate 20 --duration 60
    """
    import asyncio

    from lambdaserve.baselines.run import flask_server
    from lambdaserve.functions.logbook import log_path
    from lambdaserve.loadgen import closed_loop, open_loop, per_second
    from lambdaserve.store.loadtests import record_loadtest

    if connections is not None and rate is not None:
        raise LambdaserveError(
            "Give --connections or --rate, not both.", "e.g. --connections 32, or --rate 200"
        )
    if not 0 < duration <= MAX_DURATION_S or not 0 <= warmup <= MAX_DURATION_S:
        raise LambdaserveError(f"--duration is from 0 to {MAX_DURATION_S:.0f} s, --warmup at most that.")
    if connections is not None and not 1 <= connections <= MAX_CONNECTIONS:
        raise LambdaserveError(f"--connections is from 1 to {MAX_CONNECTIONS}.")
    if rate is not None and not 0 < rate <= MAX_RATE:
        raise LambdaserveError(f"--rate is above 0 and at most {MAX_RATE:,.0f} requests a second.")
    if batch is not None and not 1 <= batch <= MAX_BATCH:
        raise LambdaserveError(f"--batch is from 1 to {MAX_BATCH:,} instances.", "e.g. --batch 16")
    if compare not in (None, "flask"):
        raise LambdaserveError(f"Unknown --compare {compare!r}.", "Use --compare flask.")
    if remote:
        resolved = resolve_remote(
            target, stage, api_key, region=region, project=project, profile=profile, state_dir=state_dir
        )
        api_key = resolved.api_key
    else:
        resolved = resolve_local(target, stage, base, state_dir)
    url, model = resolved.url, resolved.model
    if compare and resolved.model_file is None:
        raise LambdaserveError(
            "--compare needs a model served here (MODEL or MODEL@STAGE): its file is what Flask loads."
        )
    bodies = _bodies(data, data_file, resolved.sample, model)
    if batch is not None:
        bodies = [_batched(bodies[0], batch)]
    headers = {"x-api-key": api_key} if api_key else {}
    log = log_path(state_root(state_dir), model) if model and not remote else None
    offset = log.stat().st_size if log and log.is_file() else 0

    def show(result: LoadResult, done: float) -> None:
        if not as_json:
            err.print(f"[cyan]•[/] {done:4.0%}  {result.requests:,} answered", highlight=False)

    def load(where: str, sent: dict[str, str]) -> LoadResult:
        if rate is not None:
            run = open_loop(
                where, bodies, rate=rate, duration_s=duration, headers=sent, warmup_s=warmup, progress=show
            )
        else:
            run = closed_loop(
                where, bodies, connections=connections or 32, duration_s=duration, headers=sent,
                warmup_s=warmup, progress=show,
            )  # fmt: skip
        return asyncio.run(run)

    started_ms = int(time.time() * 1000)
    result = load(url, headers)
    if log:
        cold = _cold_starts(log, offset)
    elif resolved.remote:
        cold = _remote_cold_starts(resolved, started_ms, project, profile, state_dir)
    else:
        cold = None
    baseline = None
    if compare and resolved.model_file is not None:
        if not as_json:
            err.print("[cyan]•[/] Starting the Flask app (gunicorn, 2 workers) with the same model file")
        with flask_server(resolved.model_file, bodies[0]) as flask_url:
            baseline = load(flask_url, {})
    summary = _summary(result, resolved, cold, warmup, baseline)
    if resolved.model_file is not None and resolved.model is not None and result.timeline:
        # A model served here: kept for the console and for cost --from-loadtest latest.
        with open_store(state_dir) as store:
            summary["id"] = record_loadtest(store, resolved.model, summary, per_second(result))
    if as_json:
        print_json(summary)
    else:
        _show(result, cold, resolved)
        if baseline is not None:
            _compare(result, baseline)
        if "id" in summary:
            out.print(
                f"  [dim]Recorded as run {summary['id']} of {escape(str(model))}: the console's monitoring "
                "page draws it; lambdaserve cost --from-loadtest latest prices from it.[/]"
            )
    if result.requests == 0:
        raise typer.Exit(1)


def _summary(
    result: LoadResult, target: Target, cold: int | None, warmup: float, baseline: LoadResult | None
) -> dict[str, Any]:
    """What --json prints and the store keeps: the run, where it went, and the baseline's run."""
    where = "aws" if target.remote else "local" if target.model_file is not None else "url"
    summary: dict[str, Any] = {
        **result.summary(),
        "cold_starts": cold,
        "warmup_s": warmup,
        "where": where,
        "model": target.model,
        "stage": target.stage,
        "version": target.version,
    }
    if where == "local":
        summary["server_cores"] = os.cpu_count()  # the server shared this machine with the client
    if target.remote:
        summary["region"] = target.region
        summary["key_source"] = target.key_source
    if baseline is not None:
        summary["flask"] = baseline.summary()
    return summary


def _compare(ours: LoadResult, flask: LoadResult) -> None:
    """The two runs side by side, and their ratios."""
    table = create_table("server", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors")
    for name, run in (("lambdaserve", ours), ("Flask + gunicorn", flask)):
        errors = sum(n for code, n in run.statuses.items() if code >= 400) + sum(run.failures.values())
        table.add_row(
            name,
            f"{run.requests:,}",
            f"{run.requests_per_s:,.1f}",
            *(f"{v:.2f}" if (v := run.percentile(q)) is not None else "-" for q in (50, 99, 100)),
            f"{errors:,}",
        )
    out.print(table)
    busiest = max(ours.client_cores, flask.client_cores)
    if busiest > CLIENT_LIMIT:
        # A client near a whole core sets the pace, and it shares this machine's cores with the
        # servers: the figures then say more about the client than about either server.
        out.print(
            f"  [yellow]The client was the limit[/] ({busiest:.2f} of a core): no ratio is given, since "
            "it would measure the client sharing this machine with each server. Compare at a rate the "
            "client keeps up with (--rate), or with wrk (make bench; docs/performance.md)."
        )
        return
    if flask.requests_per_s and (ours_p99 := ours.percentile(99)) and (flask_p99 := flask.percentile(99)):
        out.print(
            f"  lambdaserve / Flask: {ours.requests_per_s / flask.requests_per_s:.2f}x the requests a "
            "second, "
            f"{ours_p99 / flask_p99:.2f}x the p99. One run each, one after the other, on this machine: "
            "repeat in the other order before trusting a few percent (docs/performance.md)."
        )


def _bodies(data: str | None, data_file: Path | None, sample: Any, model: str | None) -> list[bytes]:
    if data is not None and data_file is not None:
        raise LambdaserveError("Give --data or --data-file, not both.")
    if data_file is not None:
        try:
            lines = [line for line in data_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise LambdaserveError(f"Cannot read {data_file}: {exc.strerror}.") from None
        if not lines:
            raise LambdaserveError(f"{data_file} holds no body.", "One JSON body per line.")
        return [line.encode() for line in lines[:100_000]]
    if data is not None:
        return [data.encode()]
    if sample is not None:
        return [json.dumps(sample).encode()]
    raise LambdaserveError(
        "No body to send" + (f": {model} was packaged without a sample." if model else "."),
        "Give --data '[\"some text\"]' or --data-file bodies.jsonl.",
    )


def _batched(body: bytes, size: int) -> bytes:
    """A request of ``size`` instances: the first instance of ``body`` again and again."""
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        raise LambdaserveError(
            "--batch needs a JSON body to repeat.", "e.g. --data '[\"some text\"]'"
        ) from None
    first = parsed[0] if isinstance(parsed, list) and parsed else parsed
    return json.dumps([first] * size).encode()


def _remote_cold_starts(
    target: Target, started_ms: int, project: str | None, profile: str | None, state_dir: Path | None
) -> int | None:
    """INITs during a remote run: REPORT lines with an Init Duration in CloudWatch Logs since
    it began (None when they cannot be read: CloudWatch may also take a minute to have them)."""
    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.deployer import connect
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.deploy.remote import remote_reports
    from lambdaserve.functions.log_lines import parse_report

    if target.model is None:
        return None
    try:
        with open_store(state_dir) as store:
            aws = connect(store, project_name(project, store.root), target.region, profile, AWS)
        names = Names(project_name(project, state_root(state_dir)), aws.account(), aws.region)
        lines, _ = remote_reports(aws, names, target.model, target.stage, started_ms)
    except LambdaserveError:
        return None
    return sum(1 for line in lines if (report := parse_report(line)) and report[1] is not None)


def _cold_starts(log: Path, offset: int) -> int | None:
    """INITs the run caused: REPORT lines with an Init Duration written since it started."""
    from lambdaserve.functions.log_lines import parse_report

    time.sleep(1.0)  # the server writes its log about every half second
    if not log.is_file():
        return None
    with log.open("rb") as stream:
        stream.seek(offset if log.stat().st_size >= offset else 0)
        text = stream.read().decode(errors="replace")
    return sum(1 for line in text.splitlines() if (report := parse_report(line)) and report[1] is not None)


def _show(result: LoadResult, cold: int | None, target: Target) -> None:
    summary = result.summary()
    how = (
        f"open loop at {result.rate:,.0f} requests/s"
        if result.mode == "open"
        else f"{result.connections} connections"
    )
    out.print(f"[bold]{escape(result.url)}[/]: {how}, {result.duration_s:.1f} s")
    table = create_table("requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms")
    latency = summary["latency_ms"]
    table.add_row(
        f"{result.requests:,}",
        f"{result.requests_per_s:,.1f}",
        *(
            f"{latency[k]:.2f}" if latency[k] is not None else "-"
            for k in ("p50", "p90", "p99", "p99.9", "max")
        ),
    )
    out.print(table)
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(result.statuses.items()))
    out.print(f"  statuses: {statuses or 'none'}")
    if summary["throttled"]:
        out.print(
            f"  429s: {summary['throttled']:,} (the usage plan's throttle or quota at work, not failures)"
        )
    if result.failures:
        out.print(f"  no answer: {dict(result.failures)}")
    if result.dropped:
        out.print(f"  [yellow]dropped[/]: {result.dropped:,} were due while 2,000 were unanswered")
    if cold is not None:
        out.print(f"  cold starts during the run: {cold}")
    busy = "; near 1.0 it is the limit, not the endpoint" if result.client_cores > CLIENT_LIMIT else ""
    if not target.remote:
        out.print(
            f"  the client used {result.client_cores:.2f} of a core{busy}. It runs on this machine: against "
            "a deployed endpoint (--remote) the figures include the network to AWS and API Gateway."
        )
        return
    out.print(f"  the client used {result.client_cores:.2f} of a core{busy}; key sent: {target.key_source}.")
    out.print(
        f"  [bold]What this remote run can tell[/]: how {target.model}@{target.stage} in {target.region} "
        "answers one client on this machine. Each latency includes this machine's network to AWS, TLS and "
        "API Gateway's own time before and after Lambda; the rate is capped by the stage's usage plan "
        "(429s) and the function's reserved concurrency. The cold starts above are the REPORT lines with "
        "an Init Duration CloudWatch had when the run ended (it may take a minute to have them all). "
        "What it cannot tell: Lambda's own durations (lambdaserve cost "
        f"{target.model} --remote reads them from CloudWatch's REPORT lines; lambdaserve logs "
        f"{target.model} --remote shows them), nor what callers elsewhere see."
    )
