"""``lambdaserve serve``: the local API Gateway + Lambda, in one command."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from lambdaserve.cli.options import ENV_OPTION, JSON_OPTION, STATE_OPTION, TRUST_OPTION
from lambdaserve.cli.output import err, handle_errors, out, print_json, progress, warn
from lambdaserve.defaults import DEFAULT_STAGE
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.store import Store, UsagePlan


@handle_errors
def serve(
    model: Path | None = typer.Argument(
        None, help="A model file or a bundle to serve (optional: serve what is registered)."
    ),
    handler: str | None = typer.Option(
        None, "--handler", help="Serve your own Lambda handler, module.function."
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="Model (or handler function) name."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
    state_dir: Path | None = STATE_OPTION,
    stage: str = typer.Option(
        DEFAULT_STAGE, "--stage", help="Stage the model is served under: /STAGE/NAME/predict."
    ),
    no_api_key: bool = typer.Option(False, "--no-api-key", help="Do not require x-api-key."),
    rate: float | None = typer.Option(
        None, "--rate", help="Throttle of the default plan: requests per second."
    ),
    burst: int | None = typer.Option(None, "--burst", help="Throttle of the default plan: bucket size."),
    quota: str | None = typer.Option(None, "--quota", help="Quota of the default plan, e.g. 100/DAY."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Reserved concurrency: most environments."
    ),
    provisioned: int = typer.Option(
        0, "--provisioned", help="Provisioned concurrency: environments kept ready."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Function timeout in seconds."),
    memory: int = typer.Option(256, "--memory", help="Memory size in MB; an environment above it is killed."),
    mode: str = typer.Option(
        "batch", "--mode", help="batch: concurrent requests share model calls; lambda: one per environment."
    ),
    runtime: str = typer.Option(
        "default", "--runtime", help="default, or awslambdaric (AWS's runtime client)."
    ),
    env: str = ENV_OPTION,
    trust: bool = TRUST_OPTION,
    max_upload_mb: int = typer.Option(
        200, "--max-upload-mb", help="Largest model file the web console accepts, in MB."
    ),
    capture: str | None = typer.Option(
        None,
        "--capture",
        help="Record this share of requests (10%, 0.1, or off) on the stages served, in "
        "STATE/capture/MODEL.jsonl [default: as set before, else off].",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Serve models (or your own handler) behind a local API Gateway + Lambda, and the console.

    With a model file, registers it (a new version when its content changed), points the
    stage at it, creates an API key on first use, and prints the URL, the key and a curl line.
    Without one, serves what is registered; with nothing registered yet, serves the web
    console at /_/, where a model can be uploaded.

    Example:

        lambdaserve serve model.pickle

        lambdaserve serve model.pickle --capture 10%

        curl -X POST http://127.0.0.1:8000/test/model/predict -H "x-api-key: $KEY" -d '["some text"]'
    """
    from lambdaserve.apigateway.gateway import Gateway, GatewaySettings  # only when serving
    from lambdaserve.app.listen import bind
    from lambdaserve.functions.service import HandlerSpec
    from lambdaserve.functions.settings import MODES, RUNTIMES, FunctionSettings
    from lambdaserve.functions.target import check_name
    from lambdaserve.monitoring.capture import parse_rate
    from lambdaserve.store import Store
    from lambdaserve.store.captures import set_capture_rate
    from lambdaserve.store.records import check_stage

    if mode not in MODES:
        raise LambdaserveError(f"Unknown --mode {mode!r}.", "Use batch (the default) or lambda.")
    if runtime not in RUNTIMES:
        raise LambdaserveError(f"Unknown --runtime {runtime!r}.", "Use default or awslambdaric.")
    check_stage(stage)
    capture_rate = parse_rate(capture) if capture is not None else None
    if max_upload_mb < 1:
        raise LambdaserveError("--max-upload-mb must be at least 1.", "e.g. --max-upload-mb 500")
    store = Store(state_dir)
    served: list[tuple[str, str]] = []
    handlers: list[Any] = []
    if handler:
        function_name = check_name(name or handler.rpartition(".")[0].rpartition(".")[2] or "handler")
        handlers.append(HandlerSpec(function_name, handler, str(Path.cwd())))
        served.append((function_name, "$LATEST"))
    elif model is not None:
        served.append(_register(store, model, name, stage, trust, env, as_json))

    if capture_rate is not None:
        for route_name, route_stage in [(n, stage) for n, v in served if v != "$LATEST"] or [
            (a.model, a.stage) for a in store.aliases()
        ]:
            set_capture_rate(store, route_name, route_stage, capture_rate)
    created_key = None
    plan: UsagePlan | None = None
    if not no_api_key:
        plan = store.default_plan(stage, rate, burst, quota)
        created_key = store.default_key(plan)
    token, new_token = store.admin_token()
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(
            f"Listening on {host}: anyone who can reach this machine can call the API "
            "and the Lambda Invoke API."
        )

    settings = GatewaySettings(
        api_key_required=not no_api_key,
        function=FunctionSettings(
            memory_mb=memory,
            timeout_s=timeout,
            reserved=concurrency,
            provisioned=provisioned,
            mode=mode,
            runtime=runtime,
        ),
        env_mode=env,
        stage=stage,
        handlers=handlers,
        domain_name=f"{host}:{port}",
        warm=served,
        on_event=_event_printer(as_json),
        max_upload_mb=max_upload_mb,
    )
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    routes = [(n, stage) for n, _ in served] or [(a.model, a.stage) for a in store.aliases()]

    def announce() -> None:
        first_name, first_stage = routes[0] if routes else (None, None)
        url = None
        if first_name is not None:
            url = f"{base}/{first_stage}/{first_name}" + ("" if handlers else "/predict")
        if as_json:
            info = {
                "url": url,
                "base": base,
                "console": f"{base}/_/",
                "model": first_name,
                "stage": first_stage,
                "version": served[0][1] if served else None,
                "state_dir": str(store.root),
            }
            if url is not None and first_name is not None and first_stage is not None:
                info["try"] = _try_command(
                    store, url, first_name, first_stage, handlers, no_api_key, created_key
                )
            if created_key:
                info["api_key"] = created_key
            if new_token:
                info["admin_token"] = token
            print_json(info)
            return
        out.print(f"[green]✓[/] Serving on [bold]{base}[/]  (state: {store.root})")
        starting = [f"{n} v{v}" for n, v in served if not gateway.lambdas.settled(n, v)]
        if starting:
            out.print(
                f"  INIT of {', '.join(starting)} is still running: a request now waits for it "
                "(a line says when it is done)."
            )
        for route_name, route_stage in routes:
            out.print(f"  POST {base}/{route_stage}/{route_name}" + ("" if handlers else "/predict"))
        if not routes:
            out.print("  Nothing registered yet: upload a model in the console.")
        if plan is not None:
            where = f"plan default, {'stage' if len(plan.stages) == 1 else 'stages'} {', '.join(plan.stages)}"
            if created_key:
                out.print(f"  API key (shown once; {where}): [bold]{created_key}[/]")
            else:
                out.print(
                    f"  API key: your existing one ({where}; another: lambdaserve keys create --name NAME)"
                )
            others = sorted({s for _, s in routes} - set(plan.stages))
            if others:
                out.print(
                    f"  Its key gets 403 on {', '.join(others)}, as on API Gateway; to allow it: "
                    f"lambdaserve plans update default --stage {','.join([*plan.stages, *others])}"
                )
        if new_token:
            out.print(f"  Admin token (shown once, also in {store.root / 'admin-token'}): {token}")
        out.print(f"  Console: {base}/_/  (sign in with the admin token)")
        if url is not None and first_name is not None and first_stage is not None:
            if not no_api_key and not created_key:
                out.print("  Set KEY to your API key, then")
            line = _try_command(store, url, first_name, first_stage, handlers, no_api_key, created_key)
            out.print(f"  Try: {line}", markup=False, highlight=False, soft_wrap=True)
            out.print(f"  Docs: {base}/_/docs   Logs: lambdaserve logs {first_name} --follow")
        sys.stdout.flush()

    sock = bind(host, port)  # a busy port is an error before anything starts
    gateway = Gateway(store, settings)
    gateway.prepare()  # INIT of the served versions starts now, in parallel with what follows
    from lambdaserve.app.server import run_server  # uvicorn: imported while INIT runs

    run_server(gateway, sock, token, announce)


def _try_command(
    store: Store,
    url: str,
    name: str,
    stage: str,
    handlers: list[Any],
    no_api_key: bool,
    key: str | None,
) -> str:
    """A curl line that works when pasted: the model's own sample as the body, and the key
    (or ``$KEY`` in double quotes, so that the shell fills it in)."""
    command = f"curl -X POST {url}"
    if not no_api_key:
        command += f" -H {shlex.quote(f'x-api-key: {key}')}" if key else ' -H "x-api-key: $KEY"'
    return f"{command} -d {shlex.quote(_try_body(store, name, stage, handlers))}"


def _try_body(store: Store, name: str, stage: str, handlers: list[Any]) -> str:
    """The served version's packaged sample; without one, instances of the model's shape."""
    alias = None if handlers else store.alias(name, stage)
    manifest = store.version(name, alias.version).manifest if alias is not None else {}
    if manifest.get("sample_input") is not None:
        return json.dumps(manifest["sample_input"])
    if manifest.get("feature_names"):
        return json.dumps([dict.fromkeys(manifest["feature_names"], 0)])
    if manifest.get("n_features"):
        return json.dumps([[0] * int(manifest["n_features"])])
    return json.dumps(["some text"])


def _register(
    store: Store, model: Path, name: str | None, stage: str, trust: bool, env: str, as_json: bool
) -> tuple[str, str]:
    """Put the model in the store (a new version if its content changed) and point the stage at it."""
    from lambdaserve.bundle.manifest import is_bundle, read_manifest
    from lambdaserve.functions.package import NO_SAMPLE, check_model
    from lambdaserve.functions.target import default_name

    if is_bundle(model):
        manifest = read_manifest(model).to_dict()
        return _publish(
            store, name or manifest["name"], manifest, model / manifest["model_file"], stage, as_json
        )
    if not model.is_file():
        raise LambdaserveError(
            f"{model} is not a file or a bundle.", "Give a model file or a bundle directory."
        )
    with progress() as reporter:
        checked = check_model(
            model,
            name=name or default_name(model),
            sample=NO_SAMPLE,
            trust=trust,
            env_mode=env,
            progress=reporter,
        )
    return _publish(store, checked.name, checked.to_dict(), model, stage, as_json)


def _publish(
    store: Store, name: str, manifest: dict[str, object], model_file: Path, stage: str, as_json: bool
) -> tuple[str, str]:
    from lambdaserve.functions.target import check_name

    record, created = store.add_version(check_name(name), manifest, model_file)
    alias = store.alias(record.model, stage)
    if alias is None or alias.version != record.version or alias.canary_version is not None:
        store.set_alias(record.model, stage, record.version)
    if not as_json:
        what = "registered as" if created else "already registered as"
        err.print(
            f"[cyan]•[/] {model_file.name} {what} version {record.version} of {record.model}; "
            f"stage {stage} -> {record.version}"
        )
    return record.model, str(record.version)


def _event_printer(as_json: bool) -> Callable[[dict[str, Any]], None]:
    """serve's own log lines: INIT done or failed, environments killed and why."""

    def show(event: dict[str, Any]) -> None:
        if as_json:
            print_json({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **event})
            return
        where = f"{event['model']} v{event['version']}"
        if event["event"] == "init":
            err.print(f"[cyan]•[/] {where}: INIT done in {event['initMs']:.0f} ms")
        elif event["event"] == "init_error":
            err.print(f"[red]✗[/] {where}: INIT failed: {event['errorType']}: {event['errorMessage']}")
        elif event["event"] == "missing_route":
            told = f"{event['request']}: 403 Missing Authentication Token. {event['hint']}"
            err.print(f"[yellow]![/] {escape(told)}", highlight=False)
        elif event["event"] == "environment_killed":
            err.print(
                f"[yellow]![/] {where}: an execution environment was killed ({event['reason']}); "
                f"{event['requests']} request(s) answered 502"
            )

    return show
