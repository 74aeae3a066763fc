"""The handler's environment variables: the one place that names and writes them.

``handler.py`` reads them; ``serve`` (a function version from the store), ``invoke`` and
``package`` (a bundle or a model file), ``deploy`` and ``export cloudformation`` (the AWS
function) write them with ``handler_variables``.

    LAMBDASERVE_MODEL            path or s3 URL of the model file (required)
    LAMBDASERVE_MODEL_SHA256     expected content hash: a file that differs is refused
    LAMBDASERVE_MODEL_FORMAT     pickle | joblib | skops | onnx (default: from the suffix)
    LAMBDASERVE_MODEL_VERSION    reported in x-lambdaserve-model-version (default: hash prefix)
    LAMBDASERVE_TRUSTED_TYPES    comma-separated types a skops file may build
    LAMBDASERVE_WARM_UP          a request body (the packaged sample) predicted once during INIT
    LAMBDASERVE_PROBABILITIES    the pipeline step whose predict_proba the package step checked
                                 (``probabilities.py``), e.g. ``ilr.lr``
    LAMBDASERVE_REFERENCE        path or s3 URL of the reference statistics /explain needs for
                                 tabular models (``reference.json`` in the bundle)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

MODEL = "LAMBDASERVE_MODEL"
MODEL_SHA256 = "LAMBDASERVE_MODEL_SHA256"
MODEL_FORMAT = "LAMBDASERVE_MODEL_FORMAT"
MODEL_VERSION = "LAMBDASERVE_MODEL_VERSION"
TRUSTED_TYPES = "LAMBDASERVE_TRUSTED_TYPES"
WARM_UP = "LAMBDASERVE_WARM_UP"
PROBABILITIES = "LAMBDASERVE_PROBABILITIES"
REFERENCE = "LAMBDASERVE_REFERENCE"

LOCAL_WARM_UP_BYTES = 4096
AWS_WARM_UP_BYTES = 1024  # Lambda holds 4 KB of variables in all


def handler_variables(
    *,
    sha256: str,
    model_format: str,
    version: str | None = None,
    trusted_types: Iterable[str] = (),
    sample: Any = None,
    warm_up_bytes: int = LOCAL_WARM_UP_BYTES,
    location: str | None = None,
    probabilities: dict[str, Any] | None = None,
    reference: str | None = None,
) -> dict[str, str]:
    """What the handler needs to load and name a model. ``location`` (the file's path or S3
    URL) is left out when the caller can only know it later (an S3 object's version);
    ``probabilities`` is the manifest's record of where probabilities come from, and
    ``reference`` the reference statistics' path or S3 URL."""
    variables = {MODEL_SHA256: sha256, MODEL_FORMAT: model_format}
    if probabilities and probabilities.get("checked") and probabilities.get("path"):
        variables[PROBABILITIES] = str(probabilities["path"])
    if reference:
        variables[REFERENCE] = reference
    if location is not None:
        variables[MODEL] = location
    if version is not None:
        variables[MODEL_VERSION] = version
    trusted = ",".join(trusted_types)
    if trusted:
        variables[TRUSTED_TYPES] = trusted
    variables.update(warm_up_variable(sample, warm_up_bytes))
    return variables


def warm_up_variable(sample: Any, largest: int) -> dict[str, str]:
    """``{"LAMBDASERVE_WARM_UP": sample as JSON}``, or nothing when there is no sample or its JSON
    is over ``largest`` bytes."""
    if sample is None:
        return {}
    text = json.dumps(sample, separators=(",", ":"))
    return {WARM_UP: text} if len(text.encode()) <= largest else {}
