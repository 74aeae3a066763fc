"""``lambdaserve explain``: why the model answered what it did (LIME), as a table or a page."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from lambdaserve.cli.options import ENV_OPTION, JSON_OPTION, TRUST_OPTION
from lambdaserve.cli.output import handle_errors, out, parse_json_option, print_json, progress
from lambdaserve.cli.render import create_table
from lambdaserve.errors import LambdaserveError

_WORD = re.compile(r"\w+", re.UNICODE)  # LIME's text tokens: what r"\W+" splits apart
EXPLAIN_TIMEOUT_S = 60.0


@handle_errors
def explain(
    target: str = typer.Argument(
        ..., help="A bundle or model file (run here), MODEL or MODEL@STAGE served locally, or a URL."
    ),
    data: str = typer.Option(..., "--data", "-d", help="The instances, as for predict (JSON)."),
    num_features: int = typer.Option(6, "--num-features", "-f", help="Features (words) per label."),
    num_samples: int = typer.Option(1000, "--num-samples", help="Perturbed copies the model is asked about."),
    top_labels: int | None = typer.Option(None, "--top-labels", help="Explain the N most probable labels."),
    label: list[str] | None = typer.Option(None, "--label", "-l", help="Explain this label (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="LIME's random state: the same seed, the same answer."),
    html_file: Path | None = typer.Option(
        None, "--html", help="Also write a page: words highlighted by weight."
    ),
    base: str = typer.Option("http://127.0.0.1:8000", "--base", help="Where the local server listens."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="LAMBDASERVE_API_KEY",
        help="x-api-key for a served model [env: LAMBDASERVE_API_KEY].",
    ),
    env: str = ENV_OPTION,
    trust: bool = TRUST_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Explain predictions with LIME: which words (or feature values) pushed the model to its answer.

    The instance is perturbed NUM_SAMPLES times (words removed, or feature values drawn from
    the reference sample's statistics), the model is asked about each copy, and a weighted
    linear model fitted around the instance gives each feature's weight: positive weights
    speak for the label, negative ones against it. A bundle or model file runs here, in a
    fresh execution environment as `invoke` does; a served model answers on its /explain route.

    Example:

        lambdaserve explain bundles/news --data '["God is not a hypothesis"]' --top-labels 2 --html why.html

        lambdaserve explain news@prod --data '["the shuttle reached orbit"]' --api-key $KEY
    """
    instances = parse_json_option(data, "--data")
    body: dict[str, Any] = {
        "instances": instances if isinstance(instances, list) else [instances],
        "num_features": num_features,
        "num_samples": num_samples,
        "random_state": seed,
    }
    if label:
        body["labels"] = label
    elif top_labels is not None:
        body["top_labels"] = top_labels
    status, answer = _ask(target, body, base, api_key, env, trust)
    if status != 200:
        detail = answer.get("error") or answer.get("message") if isinstance(answer, dict) else answer
        raise LambdaserveError(f"The explanation failed ({status}): {detail}", _hint(status))
    if as_json:
        print_json({"explanations": answer})
    else:
        for instance, explained in zip(body["instances"], answer, strict=True):
            _show(instance, explained)
    if html_file is not None:
        html_file.write_text(page(body["instances"], answer))
        if not as_json:
            out.print(f"[green]✓[/] Wrote {escape(str(html_file))}")


def _ask(
    target: str, body: dict[str, Any], base: str, api_key: str | None, env: str, trust: bool
) -> tuple[int, Any]:
    import httpx

    from lambdaserve.functions.invoke import invoke_once
    from lambdaserve.functions.target import load_target
    from lambdaserve.runtime.apigw import rest_proxy_event

    path = Path(target)
    if path.exists():
        resolved = load_target(path, trust=trust)
        event = rest_proxy_event(json.dumps(body), model=resolved.name, route="explain")
        with progress() as reporter:
            reporter.step(f"Explaining with {body['num_samples']:,} samples per instance")
            invocation, _ = invoke_once(
                resolved, event, env_mode=env, progress=reporter, memory_mb=1024, timeout_s=EXPLAIN_TIMEOUT_S
            )
        result = invocation.payload
        if invocation.status != "ok" or not isinstance(result, dict):
            error = invocation.error or {}
            raise LambdaserveError(f"The function failed: {error.get('errorMessage') or invocation.status}.")
        return int(result.get("statusCode", 500)), _json(result.get("body"))
    if target.startswith(("http://", "https://")):
        url = target
    else:
        model, _, stage = target.partition("@")
        url = f"{base.rstrip('/')}/{stage or 'test'}/{model}/explain"
    headers = {"x-api-key": api_key} if api_key else {}
    try:
        with progress() as reporter:
            reporter.step(f"Asking {url}")
            response = httpx.post(url, json=body, headers=headers, timeout=EXPLAIN_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise LambdaserveError(
            f"Could not reach {url}: {exc}.",
            "Start the server (lambdaserve serve), or give a bundle or model file to run here.",
        ) from None
    return response.status_code, _json(response.text)


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return {"error": str(text)[:300]}


def _hint(status: int) -> str | None:
    return {
        403: "Pass the key with --api-key (or LAMBDASERVE_API_KEY); check the model and stage names.",
        504: "Ask for fewer samples with --num-samples.",
    }.get(status)


def _show(instance: Any, explained: dict[str, Any]) -> None:
    shown = instance if isinstance(instance, str) else json.dumps(instance)
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    out.print(
        f"\n[bold]{escape(str(explained['label']))}[/] ({explained['probability']:.1%}) for {escape(shown)!r}"
    )
    if explained.get("note"):
        out.print(f"[yellow]{escape(explained['note'])}[/]")
    for one in explained["explanations"]:
        table = create_table("feature", "weight", "")
        largest = max((abs(w) for _, w in one["weights"]), default=0) or 1.0
        for feature, weight in one["weights"]:
            bar = "█" * max(1, round(12 * abs(weight) / largest))
            colour = "green" if weight > 0 else "red"
            table.add_row(escape(str(feature)), f"{weight:+.4f}", f"[{colour}]{bar}[/]")
        out.print(
            f"why {escape(str(one['label']))} ({one['probability']:.1%}); local model: "
            f"intercept {one['intercept']:.3f}, R² {one['score']:.2f}"
        )
        out.print(table)


def page(instances: list[Any], answers: list[dict[str, Any]]) -> str:
    """A self-contained page: each text with its words highlighted by their weight for the
    first explained label (green for, red against), or a bar chart for a tabular row."""
    parts = []
    for instance, answer in zip(instances, answers, strict=True):
        first = answer["explanations"][0]
        weights = {str(f): float(w) for f, w in first["weights"]}
        largest = max((abs(w) for w in weights.values()), default=0) or 1.0
        heading = (
            f"<h2>{html.escape(str(answer['label']))} <small>{answer['probability']:.1%}</small></h2>"
            f"<p>Weights for <b>{html.escape(str(first['label']))}</b>: green speaks for it, red against.</p>"
        )
        if isinstance(instance, str):
            body = _highlighted(instance, weights, largest)
        else:
            body = _bars(weights, largest)
        parts.append(f"<section>{heading}{body}</section>")
    return _PAGE.format(body="\n".join(parts))


def _highlighted(text: str, weights: dict[str, float], largest: float) -> str:
    out_parts, last = [], 0
    for match in _WORD.finditer(text):
        out_parts.append(html.escape(text[last : match.start()]))
        word = match.group(0)
        weight = weights.get(word)
        if weight is None:
            out_parts.append(html.escape(word))
        else:
            alpha = 0.2 + 0.8 * abs(weight) / largest
            colour = f"rgba(22,163,74,{alpha:.2f})" if weight > 0 else f"rgba(220,38,38,{alpha:.2f})"
            out_parts.append(
                f'<mark style="background:{colour}" title="{weight:+.4f}">{html.escape(word)}</mark>'
            )
        last = match.end()
    out_parts.append(html.escape(text[last:]))
    return f'<pre class="text">{"".join(out_parts)}</pre>'


def _bars(weights: dict[str, float], largest: float) -> str:
    rows = []
    for feature, weight in weights.items():
        width = 100 * abs(weight) / largest
        colour = "#16a34a" if weight > 0 else "#dc2626"
        rows.append(
            f"<tr><td>{html.escape(feature)}</td><td>{weight:+.4f}</td>"
            f'<td><div style="width:{width:.0f}%;background:{colour};height:1em"></div></td></tr>'
        )
    return f"<table>{''.join(rows)}</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lambdaserve explain</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
pre.text{{white-space:pre-wrap;line-height:1.6}} mark{{color:inherit;border-radius:3px;padding:0 2px}}
table{{border-collapse:collapse;width:100%}} td{{padding:2px 8px}} td:last-child{{width:50%}}</style>
</head><body><h1>Why the model answered what it did (LIME)</h1>
{body}
</body></html>
"""
