"""The ``/explain`` route: why the model answered what it did, as LIME weights.

For each instance, LIME (``explanations.py``) perturbs it, asks the model for class
probabilities on the perturbed copies and fits a weighted linear model around it; the
answer holds, per explained label, the features (words for text, feature conditions for
tabular rows) with their weights, and the local model's intercept and score.

Body: the instances as for ``/predict``, or an object with options::

    {"instances": ["..."], "num_features": 6, "num_samples": 1000, "top_labels": 2}
    {"instances": ["..."], "labels": ["sci.space"], "random_state": 7}

Defaults: 6 features, 1000 samples, the top label, random_state 0 (the same question gets
the same answer). Text is explained by removing words; tabular rows need the training
statistics of a reference sample (``--reference`` at package time), which the function
reads from ``LAMBDASERVE_REFERENCE``. A model without probabilities is explained on its
hard predictions as one-hot probabilities, and the answer says so.

Time: the explanation must end within what is left of the function's timeout and of API
Gateway's 29 s; after the first batch of samples it projects the total and, when that is
too long, answers 504 with the number of samples that would fit.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdaserve.runtime import explanations
from lambdaserve.runtime import instances as inst
from lambdaserve.runtime.errors import BadRequest, RequestError

MAX_INSTANCES = 10
DEFAULT_FEATURES = 6
DEFAULT_SAMPLES = 1000
API_GATEWAY_BUDGET_S = 28.0  # of REST API's 29 s integration timeout, keeping time to answer
ANSWER_MARGIN_S = 0.25
_OPTIONS = ("instances", "num_features", "num_samples", "labels", "top_labels", "random_state")


class ExplainTimeout(RequestError):
    """The explanation would not end in time (504, with how many samples would fit)."""

    def __init__(self, slow: explanations.ExplainTooSlow, asked: int) -> None:
        super().__init__(
            504,
            f"Explaining with {asked} samples would take about {slow.estimated_s:.0f} s, more than "
            f"the {slow.budget_s:.0f} s left before the function's timeout or API Gateway's 29 s. "
            f'Ask for fewer, e.g. "num_samples": {max(slow.fitting_samples, 10)}, or explain fewer '
            "instances per request.",
        )


@dataclass(frozen=True)
class ExplainOptions:
    num_features: int = DEFAULT_FEATURES
    num_samples: int = DEFAULT_SAMPLES
    labels: tuple[str, ...] | None = None
    top_labels: int | None = None
    random_state: int = 0


def parse_request(payload: Any) -> tuple[list[Any], ExplainOptions]:
    """The instances and options of an explain body; BadRequest on anything else."""
    if not (isinstance(payload, dict) and "instances" in payload):
        instances = payload if isinstance(payload, list) else [payload]
        return _checked_count(instances), ExplainOptions()
    unknown = sorted(set(payload) - set(_OPTIONS))
    if unknown:
        raise BadRequest(f"Unknown explain option {unknown[0]!r}. The options are: {', '.join(_OPTIONS)}.")
    nulls = sorted(k for k, v in payload.items() if v is None)
    if nulls:
        raise BadRequest(f'"{nulls[0]}" is null: leave the option out to take its default.')
    raw = payload["instances"]
    instances = raw if isinstance(raw, list) else [raw]
    labels = payload.get("labels")
    top_labels = _integer(payload, "top_labels", None, 1, 1000)
    if labels is not None:
        if top_labels is not None:
            raise BadRequest('Give "labels" or "top_labels", not both.')
        if not isinstance(labels, list) or not labels or len(labels) > 100:
            raise BadRequest('"labels" is a list of 1 to 100 class names, e.g. ["sci.space"].')
        labels = tuple(str(label) for label in labels)
    options = ExplainOptions(
        num_features=_integer(payload, "num_features", DEFAULT_FEATURES, 1, explanations.MAX_FEATURES),
        num_samples=_integer(payload, "num_samples", DEFAULT_SAMPLES, 10, explanations.MAX_SAMPLES),
        labels=labels,
        top_labels=top_labels,
        random_state=_integer(payload, "random_state", 0, 0, 2**32 - 1),
    )
    return _checked_count(instances), options


def _checked_count(instances: list[Any]) -> list[Any]:
    if len(instances) > MAX_INSTANCES:
        raise BadRequest(
            f"{len(instances)} instances to explain; one request explains at most {MAX_INSTANCES} "
            "(each costs num_samples predictions). Split them over several requests."
        )
    return instances


def _integer(payload: dict[str, Any], name: str, default: Any, low: int, high: int) -> Any:
    value = payload.get(name, default)
    if value is None or value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f'"{name}" must be a whole number from {low} to {high}; got {json.dumps(value)}.')
    return value


class Explainer:
    """LIME around one loaded model (an ``EstimatorModel`` or an ``ONNXModel``)."""

    def __init__(self, model: Any, reference_location: str | None = None) -> None:
        self.model = model
        self.reference_location = reference_location
        self._reference: dict[str, Any] | None = None

    def explain(
        self,
        instances: list[Any],
        options: ExplainOptions,
        seconds_left: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[dict[str, Any]]:
        kind = inst.kind_of(instances)
        self.model.prepare(instances)  # the same 400/422 as /predict for input the model refuses
        budget = API_GATEWAY_BUDGET_S if seconds_left is None else min(seconds_left, API_GATEWAY_BUDGET_S)
        deadline = clock() + budget - ANSWER_MARGIN_S
        one_hot = not self.model.has_proba
        answers = []
        for instance in instances:
            classes = self._classes(instance, one_hot)
            predict = self._predict_fn(kind, classes, one_hot)
            indices = self._label_indices(options.labels, classes)
            explain = functools.partial(
                explanations.explain_text if kind == "text" else explanations.explain_tabular,
                num_features=options.num_features,
                num_samples=options.num_samples,
                labels=indices,
                # the predicted label unless told otherwise
                top_labels=None if indices is not None else (options.top_labels or 1),
                random_state=options.random_state,
                deadline=deadline,
                clock=clock,
            )
            try:
                if kind == "text":
                    found = explain(instance, predict)
                else:
                    found = explain(self._row(instance, kind), predict, self._load_reference())
            except explanations.ExplainTooSlow as slow:
                raise ExplainTimeout(slow, options.num_samples) from None
            except ModelCallFailed as failed:  # the model's own error: answered as /predict's
                raise failed.error from None
            except ValueError as exc:  # LIME's checks of what was asked
                raise BadRequest(f"Cannot explain this: {exc}.") from None
            answers.append(_answer(found, classes, one_hot))
        return answers

    # -- what LIME asks the model ------------------------------------------------------
    def _classes(self, instance: Any, one_hot: bool) -> list[str]:
        if self.model.classes is not None:
            return [str(c) for c in self.model.classes]
        x = self.model.prepare([instance])
        if not one_hot:
            self.model.probability_rows(x)  # an ONNX model learns its classes on first call
            if self.model.classes is not None:
                return [str(c) for c in self.model.classes]
        # Hard predictions of a model that does not list its classes: "this label or not".
        label = str(_first(self.model.predict(x)))
        return [label, f"not {label}"]

    def _predict_fn(self, kind: str, classes: list[str], one_hot: bool) -> Callable[[Any], Any]:
        import numpy as np

        model = self.model

        def prepared(batch: Any) -> Any:
            rows = batch if kind == "text" else [list(map(float, row)) for row in batch]
            return model.prepare(list(rows))

        if not one_hot:
            return _reporting(lambda batch: np.asarray(model.probability_rows(prepared(batch)), dtype=float))
        position = {label: i for i, label in enumerate(classes)}
        other = position.get(f"not {classes[0]}")

        def hard(batch: Any) -> Any:
            predicted = model.predict(prepared(batch))
            labels = predicted.tolist() if hasattr(predicted, "tolist") else list(predicted)
            out = np.zeros((len(labels), len(classes)))
            for i, label in enumerate(labels):
                column = position.get(str(label), other)
                if column is not None:
                    out[i, column] = 1.0
            return out

        return _reporting(hard)

    def _label_indices(self, labels: tuple[str, ...] | None, classes: list[str]) -> list[int] | None:
        if labels is None:
            return None
        position = {label: i for i, label in enumerate(classes)}
        missing = [label for label in labels if label not in position]
        if missing:
            shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
            raise BadRequest(f"The model has no class {missing[0]!r}. Its classes: {shown}.")
        return [position[label] for label in labels]

    def _row(self, instance: Any, kind: str) -> list[float]:
        names = self.model.feature_names
        values = [instance[n] for n in names] if kind == "record" and names else instance
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise BadRequest(
                "Explaining a tabular instance needs numbers for every feature; LIME perturbs "
                "each one around the reference sample's statistics."
            )
        return [float(v) for v in values]

    def _load_reference(self) -> dict[str, Any]:
        if self._reference is not None:
            return self._reference
        if not self.reference_location:
            raise BadRequest(
                "Explaining tabular input needs the training data's statistics, and this model "
                "was packaged without them. Package it again with a sample of its training data: "
                "lambdaserve package MODEL --reference train.csv (or models push ... --reference)."
            )
        from lambdaserve.runtime import source

        path = source.fetch(self.reference_location)
        reference: dict[str, Any] = json.loads(path.read_text())
        if "features" not in reference:  # a reference kept for drift only
            raise BadRequest(
                "The reference sample this model was packaged with cannot be used to explain rows "
                f"({reference.get('explain') or 'it holds no numeric statistics'}). LIME perturbs "
                "numeric features: package it with a reference of numbers only."
            )
        self._reference = reference
        return reference


class ModelCallFailed(Exception):
    """The model raised while LIME asked it: kept apart from LIME's own ValueErrors."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _reporting(predict: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(batch: Any) -> Any:
        try:
            return predict(batch)
        except Exception as exc:
            raise ModelCallFailed(exc) from exc

    return call


def _first(values: Any) -> Any:
    return values[0] if not hasattr(values, "tolist") else values.tolist()[0]


def _answer(found: explanations.Explanation, classes: list[str], one_hot: bool) -> dict[str, Any]:
    probabilities = found.probabilities
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    answer: dict[str, Any] = {
        "label": classes[best],
        "probability": probabilities[best],
        "explanations": [
            {
                "label": classes[one.label],
                "probability": probabilities[one.label],
                "weights": [[feature, weight] for feature, weight in one.weights],
                "intercept": one.intercept,
                "score": one.score,
                "local_prediction": one.local_prediction,
            }
            for one in found.labels
        ],
        "num_samples": found.num_samples,
    }
    if one_hot:
        answer["note"] = (
            "The model gives no probabilities, so LIME explained its hard predictions as one-hot "
            "probabilities: coarser weights than with predict_proba."
        )
    return answer
