"""``lambdaserve invoke``: one invocation in a fresh execution environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.json import JSON

from lambdaserve.cli.options import ENV_OPTION, JSON_OPTION, REQUIREMENT_OPTION, STATE_OPTION, TRUST_OPTION
from lambdaserve.cli.output import err, handle_errors, out, print_json, progress, warn
from lambdaserve.cli.state import state_root
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.functions.target import Target


@handle_errors
def invoke(
    target: Path = typer.Argument(..., help="A bundle directory or a model file."),
    data: str | None = typer.Option(
        None, "--data", "-d", help="Request body (JSON), sent as API Gateway would send a POST body."
    ),
    event: Path | None = typer.Option(None, "--event", "-e", help="A Lambda event file ('-' for stdin)."),
    route: str = typer.Option("predict", "--route", help="predict or predict_proba (with --data)."),
    env: str = ENV_OPTION,
    trust: bool = TRUST_OPTION,
    requirement: list[str] | None = REQUIREMENT_OPTION,
    memory: int = typer.Option(
        256, "--memory", help="Memory size in MB; the environment is killed above it."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Function timeout in seconds."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run INIT and one invocation in a fresh process, as `sam local invoke` does, without Docker.

    Prints Lambda's START / END / REPORT lines and the handler's logs on stderr, and the
    handler's result on stdout. Exits 0 only when the result's statusCode is 2xx. The
    function runs as `serve` runs it; a file pushed to the local store under the same name
    reports its version number there (x-lambdaserve-model-version), as `serve` does.

    Example:

        lambdaserve invoke bundles/news --data '["God is not a hypothesis"]'

        lambdaserve invoke model.pickle --event tests/events/apigw-rest-post.json
    """
    from lambdaserve.functions.invoke import invoke_once
    from lambdaserve.functions.target import describe_mismatches, load_target
    from lambdaserve.runtime.apigw import rest_proxy_event

    if (data is None) == (event is None):
        raise LambdaserveError(
            "Give exactly one of --data and --event.",
            "e.g. --data '[\"some text\"]', or --event event.json with a full Lambda event.",
        )
    if route not in ("predict", "predict_proba"):
        raise LambdaserveError(f"Unknown --route {route!r}.", "Use predict or predict_proba.")
    resolved = load_target(target, trust=trust, requirements=requirement or [])
    payload = (
        _read_event(event) if event is not None else rest_proxy_event(data, model=resolved.name, route=route)
    )
    with progress() as reporter:
        invocation, python = invoke_once(
            resolved,
            payload,
            env_mode=env,
            progress=reporter,
            memory_mb=memory,
            timeout_s=timeout,
            version=_stored_version(resolved, state_dir),
        )
    if python.mismatches and not python.isolated:
        warn(describe_mismatches(python.mismatches))
    result = invocation.payload
    succeeded = invocation.status == "ok" and _status_of(result) in range(200, 300)
    if as_json:
        print_json(
            {
                "result": result,
                "error": invocation.error,
                "status": invocation.status,
                "report": invocation.report.to_dict() if invocation.report else None,
                "logs": invocation.logs,
                "environment": {
                    "python": python.python,
                    "isolated": python.isolated,
                    "mismatches": [str(m) for m in python.mismatches],
                },
            }
        )
    else:
        # Written as they are: Lambda's lines are tab-separated, and rich would expand the tabs.
        sys.stderr.write("".join(f"{line}\n" for line in invocation.logs))
        sys.stderr.flush()
        shown = result if invocation.status == "ok" else invocation.error
        if out.is_terminal:
            out.print(JSON(json.dumps(shown)))
        else:
            sys.stdout.write(json.dumps(shown) + "\n")
        _summarise(result, invocation.status)
    if not succeeded:
        raise typer.Exit(1)


def _stored_version(target: Target, state_dir: Path | None) -> str | None:
    """The number of the stored version that is this very file (same name, same sha256)."""
    from lambdaserve.store import Store

    root = state_root(state_dir)
    if not (root / "state.db").is_file():
        return None
    store = Store(root)
    try:
        same = [v for v in store.versions(target.name) if v.sha256 == target.sha256]
    finally:
        store.close()
    return str(same[-1].version) if same else None


def _read_event(path: Path) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise LambdaserveError(f"Cannot read the event file {path}: {exc.strerror}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LambdaserveError(
            f"The event file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).",
            "An event is a JSON object, e.g. an API Gateway proxy event with a 'body'.",
        ) from None


def _status_of(result: Any) -> int | None:
    return result.get("statusCode") if isinstance(result, dict) else None


def _summarise(result: Any, status: str) -> None:
    if status != "ok":
        err.print(f"[red]✗ The invocation failed ({status}).[/]")
        return
    code = _status_of(result)
    body = result.get("body") if isinstance(result, dict) else None
    colour = "green" if code and 200 <= code < 300 else "red"
    err.print(f"[{colour}]→ {code}[/] {body}", highlight=False)
