"""Load a model file and give every format the same small interface.

Lifecycle: ``load_model`` runs once per execution environment (Lambda's INIT); then
``prepare`` -> ``predict`` / ``predict_proba`` run once per invocation. ``prepare``
checks and shapes the instances (see ``instances.py``) so that the model only ever
sees input of the kind it was fitted on.

Formats: pickle (cloudpickle or plain), joblib, skops and ONNX. Their libraries are
imported only when a model of that format is loaded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambdaserve.runtime import instances as inst
from lambdaserve.runtime.allowlist import RefusedGlobal, restricted_joblib_load, restricted_load
from lambdaserve.runtime.errors import BadRequest, ModelLoadError
from lambdaserve.runtime.limits import TooLarge, check_zip
from lambdaserve.runtime.probabilities import ProbabilityRoute, find_route

FORMAT_BY_SUFFIX = {
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
    ".skops": "skops",
    ".onnx": "onnx",
}


def format_of(path: str | Path) -> str:
    suffix = Path(str(path).split("?", 1)[0]).suffix.lower()
    try:
        return FORMAT_BY_SUFFIX[suffix]
    except KeyError:
        raise ModelLoadError(
            f"Cannot tell the format of {path}: name it with one of "
            + ", ".join(FORMAT_BY_SUFFIX)
            + " or set LAMBDASERVE_MODEL_FORMAT."
        ) from None


def load_model(path: Path, fmt: str, trusted_types: list[str] | None = None) -> EstimatorModel | ONNXModel:
    """Load the file; raise ModelLoadError with the cause and the fix on any failure."""
    try:
        if fmt == "onnx":
            return ONNXModel(path)
        return EstimatorModel(_load_estimator(path, fmt, trusted_types or []))
    except ModelLoadError:
        raise
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"Loading {path.name} needs the module {exc.name!r}, which is not installed in this "
            "environment. Install the model's pinned requirements (lambdaserve.json)."
        ) from exc
    except Exception as exc:
        raise ModelLoadError(f"Could not load {path.name} as {fmt}: {type(exc).__name__}: {exc}") from exc


def _load_estimator(path: Path, fmt: str, trusted_types: list[str]) -> Any:
    # Pickles and joblib files load with the allow-list the scan applied (allowlist.py):
    # a global the scan missed is refused here, before anything of it runs.
    try:
        if fmt == "pickle":
            with path.open("rb") as f:
                return restricted_load(f, trusted_types)  # cloudpickle output is a standard pickle
        if fmt == "joblib":
            return restricted_joblib_load(path, trusted_types)
    except RefusedGlobal as refused:
        raise ModelLoadError(
            f"{path.name} imports {refused.module}.{refused.name}, which lambdaserve's allow-list refuses "
            f"({refused.why}). Nothing of it ran. Package the model again: lambdaserve refuses such a file "
            "unless it is trusted (--trust, only for a file you made yourself)."
        ) from None
    if fmt == "skops":
        import skops.io

        try:
            check_zip(path)  # before skops reads any entry whole
        except TooLarge as exc:
            raise ModelLoadError(str(exc)) from None
        return skops.io.load(path, trusted=trusted_types)
    raise ModelLoadError(f"Unknown model format {fmt!r}.")


class EstimatorModel:
    """A scikit-learn style object: anything with ``predict`` (and maybe ``predict_proba``)."""

    format_family = "estimator"

    def __init__(self, estimator: Any) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError(
                f"The file holds {_with_article(type(estimator).__name__)}, which has no predict method. "
                "Save the fitted model (e.g. the Pipeline), not its parts or results."
            )
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names: list[str] | None = [str(n) for n in names] if names is not None else None
        n_features = getattr(estimator, "n_features_in_", None)
        self.n_features: int | None = int(n_features) if n_features is not None else None
        self.has_proba = callable(getattr(estimator, "predict_proba", None))
        classes = getattr(estimator, "classes_", None)
        self.classes: list[Any] | None = list(classes) if classes is not None else None
        self._calling = _prediction_context()
        # Without its own predict_proba, a pipeline may still hold a classifier that has one
        # (probabilities.py); it is used once it agrees with predict (``check_route``).
        self.route: ProbabilityRoute | None = None if self.has_proba else find_route(estimator)
        self.route_checked = False

    def check_route(self, x: Any) -> bool:
        """Use the pipeline's inner classifier for probabilities if, on the prepared instances
        ``x``, its decoded argmax is what ``predict`` answers."""
        route = self.route
        if route is None or self.route_checked:
            return self.route_checked
        with self._calling():
            agrees = route.agrees(self.estimator.predict(x), route.predict_proba(x))
        if agrees:
            self.accept_route()
        return agrees

    def accept_route(self) -> None:
        """Take the route as checked (by ``check_route``, here or when the model was packaged)."""
        if self.route is not None:
            self.route_checked = self.has_proba = True
            self.classes = self.route.classes

    def probability_source(self) -> dict[str, Any]:
        """Where probabilities come from, as ``inspect`` and the bundle report it."""
        if self.route is None:
            return {"source": "predict_proba" if self.has_proba else None}
        return {
            "source": "pipeline step" if self.route_checked else None,
            "path": self.route.path,
            "found": self.route.describe(),
            "checked": self.route_checked,
        }

    def prepare(self, instances: list[Any]) -> Any:
        kind = inst.kind_of(instances)
        tabular = self.feature_names is not None or self.n_features is not None
        if kind == "text":
            if tabular:
                raise BadRequest(f"This model takes {self._rows_hint()}, not strings.")
            return instances
        if kind == "array":
            inst.check_width(instances, self.n_features, self.feature_names)
            if self.feature_names is None:
                return instances
            return _data_frame(instances, self.feature_names)
        if self.feature_names is None:
            raise BadRequest(
                "This model was not fitted on named features, so it does not take objects. Send "
                + (self._rows_hint() if tabular else "instances of the kind it was trained on, e.g. strings")
                + "."
            )
        inst.check_columns(instances, self.feature_names)
        return _data_frame([[r[n] for n in self.feature_names] for r in instances], self.feature_names)

    def _rows_hint(self) -> str:
        if self.feature_names:
            return (
                f"objects with the features {', '.join(self.feature_names)}, or rows of "
                f"{len(self.feature_names)} values in that order"
            )
        return f"rows of {self.n_features} numbers"

    def predict(self, x: Any) -> Any:
        with self._calling():
            return self.estimator.predict(x)

    def concat(self, parts: list[Any]) -> Any:
        """One model input from several prepared ones (lists, or DataFrames)."""
        if all(isinstance(p, list) for p in parts):
            return [row for part in parts for row in part]
        import pandas as pd

        return pd.concat(parts, ignore_index=True)

    def probability_rows(self, x: Any) -> Any:
        """The probability matrix, one column per class of ``classes``."""
        with self._calling():
            if self.route is not None and self.route_checked:
                return self.route.predict_proba(x)
            return self.estimator.predict_proba(x)

    def predict_proba(self, x: Any) -> list[dict[str, Any]]:
        labels = [str(c) for c in self.classes] if self.classes is not None else None
        return _label_rows(self.probability_rows(x), labels)


def _prediction_context() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """What every model call runs in: scikit-learn without its parameter validation.

    scikit-learn checks the arguments of its public functions on every call, also the
    ones a fitted pipeline makes to itself at prediction time (``normalize`` inside
    ``TfidfVectorizer.transform``, for one): about 0.1 ms per call, a tenth of a
    one-post prediction of the newsgroups model. A fitted model's parameters were
    checked when it was fitted, and the input is still checked (``check_array``), so
    the outputs are the same. Set LAMBDASERVE_SKLEARN_VALIDATION=1 to keep the checks.
    """
    sklearn = sys.modules.get("sklearn")  # imported by loading the model, if it needs it
    if sklearn is None or os.environ.get("LAMBDASERVE_SKLEARN_VALIDATION") == "1":
        return contextlib.nullcontext
    calling = functools.partial(sklearn.config_context, skip_parameter_validation=True)
    try:
        with calling():
            pass
    except TypeError:  # scikit-learn before 1.3 has no such setting
        return contextlib.nullcontext
    return calling


class ONNXModel:
    """An ONNX graph run by onnxruntime, as converted by skl2onnx and similar tools.

    One input takes a whole row (numbers, or a string for text models); several inputs
    mean one input per column, named after the features. The first output is the
    prediction; a second one, when present, holds class probabilities.
    """

    format_family = "onnx"

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: parallelism comes from execution environments, and a session
        # without a thread pool survives the fork that creates them.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        self.feature_names: list[str] | None = [i.name for i in self.inputs] if len(self.inputs) > 1 else None
        width = self.inputs[0].shape[1] if len(self.inputs[0].shape) > 1 else None
        self.n_features: int | None = width if isinstance(width, int) and len(self.inputs) == 1 else None
        self.has_proba = len(self.outputs) > 1
        self.classes: list[Any] | None = None

    def prepare(self, instances: list[Any]) -> dict[str, Any]:
        import numpy as np

        kind = inst.kind_of(instances)
        if len(self.inputs) == 1:
            only = self.inputs[0]
            if kind == "record":
                raise BadRequest("This ONNX model takes one input tensor: send arrays, not objects.")
            if kind == "array":
                inst.check_width(instances, self.n_features, None)
            rows = [[i] for i in instances] if kind == "text" else instances
            return {only.name: np.asarray(rows, dtype=_numpy_type(only.type))}
        names = [i.name for i in self.inputs]
        if kind == "text":
            raise BadRequest("This ONNX model takes named features: send objects {feature: value}.")
        if kind == "array":
            inst.check_width(instances, None, names)
            instances = [dict(zip(names, row, strict=True)) for row in instances]
        inst.check_columns(instances, names)
        return {
            i.name: np.asarray([[r[i.name]] for r in instances], dtype=_numpy_type(i.type))
            for i in self.inputs
        }

    def predict(self, x: Any) -> Any:
        return self.session.run([self.outputs[0].name], x)[0]

    def concat(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np

        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def predict_proba(self, x: Any) -> list[dict[str, Any]]:
        rows = self.session.run([self.outputs[1].name], x)[0]
        if isinstance(rows, list):  # skl2onnx's ZipMap: already one {class: p} per row
            return [{str(k): float(v) for k, v in row.items()} for row in rows]
        return _label_rows(rows, None)

    def probability_rows(self, x: Any) -> Any:
        """The probability matrix; ``classes`` is set from a ZipMap's keys on the first call."""
        import numpy as np

        rows = self.session.run([self.outputs[1].name], x)[0]
        if isinstance(rows, list):
            keys = list(rows[0]) if rows else []
            if self.classes is None:
                self.classes = keys
            return np.asarray([[row[k] for k in keys] for row in rows], dtype=float)
        matrix = np.asarray(rows, dtype=float)
        if self.classes is None and matrix.ndim == 2:
            self.classes = list(range(matrix.shape[1]))
        return matrix

    def probability_source(self) -> dict[str, Any]:
        return {"source": "the graph's second output" if self.has_proba else None}


def _label_rows(rows: Any, labels: list[str] | None) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        values = row.tolist() if hasattr(row, "tolist") else list(row)
        keys = labels if labels is not None else [str(i) for i in range(len(values))]
        out.append(dict(zip(keys, values, strict=False)))
    return out


def _with_article(noun: str) -> str:
    """``an int``, ``a dict``: a type's name as a sentence says it."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _data_frame(rows: list[list[Any]], columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


_ONNX_TYPES = {
    "tensor(string)": "object",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


def _numpy_type(onnx_type: str) -> str:
    return _ONNX_TYPES.get(onnx_type, "float32")
