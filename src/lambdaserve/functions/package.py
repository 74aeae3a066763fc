"""``lambdaserve package``: from a model file to a checked bundle.

Steps, each of which can stop with an error that says how to fix it:

1. inspect the file without loading it (format, imports, dangers, pins);
2. refuse it if it is dangerous and not trusted;
3. load it in a local function, as ``serve`` runs it, with the pinned versions (``--env``), and
   smoke-test ``predict`` (and ``predict_proba`` when the model has it) on the sample;
4. write the bundle directory: the model file and ``lambdaserve.json``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lambdaserve import __version__
from lambdaserve.bundle.inspection import ModelReport
from lambdaserve.bundle.manifest import Manifest, write_bundle
from lambdaserve.bundle.reference import read_rows
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.invoke import LocalFunction, open_function, start
from lambdaserve.functions.pythons import Progress, SilentProgress
from lambdaserve.functions.target import default_name, load_target
from lambdaserve.runtime.apigw import rest_proxy_event

NO_SAMPLE: Any = object()  # --sample not given (None is a valid JSON sample)
MEASURING_MEMORY_MB = 10240


def check_model(
    model_path: Path,
    *,
    name: str | None = None,
    sample: Any = NO_SAMPLE,
    trust: bool = False,
    requirements: list[str] | None = None,
    env_mode: str = "auto",
    progress: Progress | None = None,
    report: ModelReport | None = None,
    reference: Path | None = None,
) -> Manifest:
    """Inspect, refuse if dangerous, load and smoke-test: the manifest of a checked model.

    ``report``: the file's inspection, when the caller has made it already. ``reference``:
    a sample of the training data (CSV or JSON Lines), summarized by the model's function.
    """
    progress = progress or SilentProgress()
    if model_path.is_dir():
        raise LambdaserveError(
            f"{model_path} is a directory.", "Give the model file itself, e.g. model.pickle."
        )
    progress.step(f"Inspecting {model_path.name}")
    target = load_target(model_path, trust=trust, requirements=requirements, name=name, report=report)
    report = target.report
    if report is None:  # load_target always inspects a model file
        raise LambdaserveError(f"{model_path} could not be inspected.")
    rows = _reference_rows(reference, progress) if reference is not None else None
    if sample is not NO_SAMPLE:
        target.sample = sample  # INIT's warm-up: also checks a pipeline's inner classifier

    # Lambda's largest memory size: the check measures what the model needs rather than
    # stopping it at a guess (deploy sizes the function from the measurement).
    function, python = open_function(
        target, env_mode=env_mode, progress=progress, memory_mb=MEASURING_MEMORY_MB
    )
    progress.step(f"Loading the model in {python.describe()}")
    with function:
        start(function, python, target)
        description = function.describe()
        outputs, used_mb = _smoke_test(function, target.name, sample, description, progress)
        used_mb = max(used_mb, function.init_memory_mb)
        summary = _summarize(function, rows, description, progress) if rows is not None else None

    return Manifest(
        name=target.name,
        format=report.format,
        model_file=model_path.name,
        sha256=report.sha256,
        size=report.size,
        python=report.python,
        requirements=report.requirements,
        pins=[pin.to_dict() for pin in report.pins],
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        lambdaserve_version=__version__,
        has_proba=bool(description.get("has_proba")),
        feature_names=description.get("feature_names"),
        n_features=description.get("n_features"),
        classes=description.get("classes"),
        sample_input=None if sample is NO_SAMPLE else sample,
        sample_output=outputs.get("predict"),
        sample_proba=outputs.get("predict_proba"),
        trusted=trust,
        trusted_types=target.trusted_types,
        max_memory_used_mb=used_mb or None,
        probabilities=description.get("probabilities"),
        reference=summary,
        scan={k: v for k, v in report.to_dict().items() if k in ("imports", "dangerous", "by_value")},
        warnings=report.warnings,
    )


def package_model(
    model_path: Path,
    *,
    output: Path | None = None,
    name: str | None = None,
    sample: Any = NO_SAMPLE,
    trust: bool = False,
    requirements: list[str] | None = None,
    env_mode: str = "auto",
    progress: Progress | None = None,
    reference: Path | None = None,
) -> tuple[Manifest, Path]:
    """``check_model``, then write the bundle directory (default ``bundles/NAME``)."""
    progress = progress or SilentProgress()
    # A bundle is named after its directory unless told otherwise: -o bundles/news -> "news".
    name = name or (default_name(output) if output is not None else None)
    manifest = check_model(
        model_path,
        name=name,
        sample=sample,
        trust=trust,
        requirements=requirements,
        env_mode=env_mode,
        progress=progress,
        reference=reference,
    )
    destination = output or Path("bundles") / manifest.name
    write_bundle(destination, manifest, model_path)
    progress.step(f"Bundle written to {destination}")
    return manifest, destination


def _smoke_test(
    function: LocalFunction, name: str, sample: Any, description: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], int]:
    """Each route's answer to the sample, and the Max Memory Used its invocations reported."""
    if sample is NO_SAMPLE:
        return {}, 0
    routes = ["predict", "predict_proba"] if description.get("has_proba") else ["predict"]
    outputs = {}
    used_mb = 0
    for route in routes:
        progress.step(f"Trying {route} on the sample")
        event = rest_proxy_event(json.dumps(sample), model=name, route=route)
        invocation = function.invoke(event)
        response = invocation.payload if isinstance(invocation.payload, dict) else {}
        status = response.get("statusCode")
        if invocation.status != "ok" or status != 200:
            detail = _error_text(invocation.error, response)
            raise LambdaserveError(
                f"The model failed on the sample ({route}, status {status or invocation.status}): {detail}",
                "Check that --sample holds instances of the kind the model was trained on, "
                "e.g. '[\"some text\"]' or '[[5.1, 3.5, 1.4, 0.2]]'. The logs:\n"
                + "\n".join(invocation.logs),
            )
        outputs[route] = json.loads(response["body"])
        if invocation.report is not None:
            used_mb = max(used_mb, invocation.report.max_memory_used_mb)
    return outputs, used_mb


def _reference_rows(path: Path, progress: Progress) -> list[Any]:
    progress.step(f"Reading the reference sample {path.name}")
    rows, total = read_rows(path)
    if total > len(rows):
        progress.step(f"{total:,} rows: summarizing a random {len(rows):,} of them")
    return rows


def _summarize(
    function: LocalFunction, rows: list[Any], description: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    """The reference's statistics, computed beside the model (which checks the rows as
    ``/predict`` would); only the statistics come back."""
    progress.step(f"Summarizing {len(rows):,} reference rows")
    names = description.get("feature_names")
    columns: list[str] | None = None
    if rows and all(isinstance(r, dict) for r in rows):
        columns = list(rows[0])
        if names:  # a training file often holds the label too: only the model's features
            rows = [{n: r.get(n) for n in names} for r in rows]
        elif "text" in columns and all(isinstance(r.get("text"), str) for r in rows):
            pass  # a text model's posts beside their labels: the function keeps the text column
        else:  # a model fitted on arrays: the header's order is the features' order
            rows = [[r.get(c) for c in columns] for r in rows]
    answer = function.invoke({"lambdaserve": "reference", "rows": rows, "columns": columns})
    payload = answer.payload if isinstance(answer.payload, dict) else {}
    if answer.status != "ok" or "reference" not in payload:
        detail = payload.get("error") or _error_text(answer.error, {}) or "no answer"
        raise LambdaserveError(
            f"The reference sample could not be summarized: {detail}",
            "Give rows of the kind the model takes: a CSV whose header names its features, or "
            "JSON Lines of instances as /predict takes them.",
        )
    return dict(payload["reference"])


def _error_text(error: dict[str, Any] | None, response: dict[str, Any]) -> str:
    if error:
        return f"{error.get('errorType')}: {error.get('errorMessage')}"
    try:
        body = json.loads(response.get("body") or "{}")
    except json.JSONDecodeError:
        return str(response.get("body"))
    return str(body.get("error") or body.get("message") or body)
