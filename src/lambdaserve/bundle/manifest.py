"""The bundle on disk: a directory with the model file and ``lambdaserve.json``.

The manifest is the contract between packaging and everything after it (invoke, the
local gateway, the Lambda image): which file, which content hash, which Python and
pinned requirements, what the model takes and returns, and what the scan found.
Bundles are written to a temporary sibling and renamed into place, so a reader never
sees half a bundle.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lambdaserve.errors import LambdaserveError

MANIFEST_NAME = "lambdaserve.json"
SCHEMA_VERSION = 1


@dataclass
class Manifest:
    name: str
    format: str
    model_file: str
    sha256: str
    size: int
    python: str
    requirements: list[str]
    created: str
    lambdaserve_version: str
    pins: list[dict[str, Any]] = field(default_factory=list)
    has_proba: bool = False
    feature_names: list[str] | None = None
    n_features: int | None = None
    classes: list[str] | None = None
    sample_input: Any = None
    sample_output: Any = None
    sample_proba: Any = None
    trusted: bool = False
    trusted_types: list[str] = field(default_factory=list)
    max_memory_used_mb: int | None = None  # INIT and the sample's predictions, as Lambda's REPORT counts it
    # Where class probabilities come from (the model's predict_proba, or a classifier found
    # inside its pipeline and checked on the sample): runtime/probabilities.py.
    probabilities: dict[str, Any] | None = None
    # Statistics of a sample of the training data (--reference), never the rows themselves.
    reference: dict[str, Any] | None = None
    scan: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def read_manifest(bundle: Path) -> Manifest:
    manifest_path = bundle / MANIFEST_NAME
    if not manifest_path.is_file():
        raise LambdaserveError(
            f"{bundle} is not a bundle: it has no {MANIFEST_NAME}.",
            "Make one with: lambdaserve package MODEL_FILE -o " + str(bundle),
        )
    try:
        data = json.loads(manifest_path.read_text())
        manifest = Manifest.from_dict(data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise LambdaserveError(
            f"{manifest_path} is damaged: {exc}.", "Package the model again to rewrite it."
        ) from None
    if manifest.schema_version > SCHEMA_VERSION:
        raise LambdaserveError(
            f"{bundle} was made by a newer lambdaserve (manifest version {manifest.schema_version}).",
            "Upgrade lambdaserve: pip install -U lambdaserve",
        )
    if not (bundle / manifest.model_file).is_file():
        raise LambdaserveError(
            f"{bundle} is missing its model file {manifest.model_file}.", "Package the model again."
        )
    return manifest


def write_bundle(target: Path, manifest: Manifest, model_path: Path) -> Path:
    """Write model + manifest to ``target`` atomically; replace an older bundle there."""
    if target.exists() and not is_bundle(target) and any(target.iterdir()):
        raise LambdaserveError(
            f"{target} exists and is not a bundle; refusing to write into it.",
            "Choose another directory with -o, or empty this one.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        shutil.copyfile(model_path, staging / manifest.model_file)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        if target.exists():
            retired = target.with_name(f".{target.name}.old{os.getpid()}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
