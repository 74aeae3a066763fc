"""What an execution environment runs: a model file plus what it needs.

A target comes from a bundle (its manifest says everything) or straight from a model
file (inspected on the spot, refused if dangerous and not trusted). Either way it
yields the environment variables the handler reads and the pins the Python
environment must match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdaserve.bundle.inspection import ModelReport, inspect_model
from lambdaserve.bundle.manifest import Manifest, is_bundle, read_manifest
from lambdaserve.bundle.reference import reference_file
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.pythons import Mismatch, PythonEnvironment, cache_root
from lambdaserve.runtime.variables import LOCAL_WARM_UP_BYTES, handler_variables

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PACKAGE_WARM_UP_BYTES = 64 * 1024


@dataclass
class Target:
    name: str
    model_path: Path
    format: str
    sha256: str
    python: str
    requirements: list[str]
    trusted_types: list[str] = field(default_factory=list)
    modules_by_distribution: dict[str, list[str]] = field(default_factory=dict)
    manifest: Manifest | None = None
    report: ModelReport | None = None
    sample: Any = None  # a model file's sample (a bundle's is in its manifest)

    def handler_env(self, version: str | None = None) -> dict[str, str]:
        """The handler's variables, as ``serve`` sets them for the same bundle."""
        manifest = self.manifest
        reference = None
        if manifest is not None and manifest.reference:
            reference = str(reference_file(manifest.reference, cache_root() / "references"))
        return handler_variables(
            location=str(self.model_path.resolve()),
            sha256=self.sha256,
            model_format=self.format,
            version=version,
            trusted_types=self.trusted_types,
            sample=manifest.sample_input if manifest is not None else self.sample,
            # package's check: the whole sample, which also checks a pipeline's inner classifier
            warm_up_bytes=LOCAL_WARM_UP_BYTES if manifest is not None else PACKAGE_WARM_UP_BYTES,
            probabilities=manifest.probabilities if manifest is not None else None,
            reference=reference,
        )


def default_name(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_") or "model"
    return name[:63]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise LambdaserveError(
            f"{name!r} is not a valid model name.",
            "Use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit "
            "(it becomes part of the URL and of AWS resource names).",
        )
    return name


def load_target(
    path: Path,
    *,
    trust: bool = False,
    requirements: list[str] | None = None,
    name: str | None = None,
    report: ModelReport | None = None,
) -> Target:
    """A target from a bundle directory or a model file; refuses a dangerous untrusted file.

    ``report``: the file's inspection when the caller made it already (the console shows
    it before loading), so that a 10 MB pickle is not scanned twice.
    """
    if is_bundle(path):
        manifest = read_manifest(path)
        return Target(
            name=check_name(name or manifest.name),
            model_path=path / manifest.model_file,
            format=manifest.format,
            sha256=manifest.sha256,
            python=manifest.python,
            requirements=manifest.requirements,
            trusted_types=manifest.trusted_types,
            modules_by_distribution={p["name"]: p.get("modules", []) for p in manifest.pins},
            manifest=manifest,
        )
    if path.is_dir():
        read_manifest(path)  # raises: a directory without a manifest is not a bundle
    if report is None or report.path != path:
        report = inspect_model(path, requirements)
    report.check_trust(trust)
    return Target(
        name=check_name(name or default_name(path)),
        model_path=path,
        format=report.format,
        sha256=report.sha256,
        python=report.python,
        requirements=report.requirements,
        trusted_types=report.trusted_on_trust if trust else [],
        modules_by_distribution={p.name: list(p.modules) for p in report.pins},
        report=report,
    )


def explain_failure(
    error: dict[str, object], target: Target, environment: PythonEnvironment
) -> LambdaserveError:
    """Turn an INIT error from the execution environment into the cause and the fix."""
    message = str(error.get("errorMessage") or "INIT failed")
    hints = []
    missing = re.search(r"module '([^']+)'|No module named '([^']+)'", message)
    if missing:
        module = (missing.group(1) or missing.group(2)).split(".", 1)[0]
        package = next(
            (
                req
                for req in target.requirements
                if module in target.modules_by_distribution.get(req.split("==")[0], [])
            ),
            None,
        )
        hints.append(
            f"The model needs the module {module!r}"
            + (f", from {package}. Install it, or " if package else ". Install its package, or ")
            + "run with --env auto (the default) to use an environment built from the bundle's pins."
        )
    mismatch_hint = describe_mismatches(environment.mismatches)
    if mismatch_hint:
        hints.append(mismatch_hint)
    return LambdaserveError(
        f"The model could not be loaded ({error.get('errorType', 'error')}): {message}",
        "\n".join(hints) or None,
    )


def describe_mismatches(mismatches: list[Mismatch]) -> str:
    if not mismatches:
        return ""
    listed = "; ".join(str(m) for m in mismatches)
    return (
        f"This Python does not match the model's pins ({listed}). Run with --env isolated "
        "(or --env auto, the default) to use exactly the pinned versions."
    )
