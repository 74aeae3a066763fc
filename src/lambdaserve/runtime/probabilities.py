"""Class probabilities from inside a pipeline whose last step only decodes labels.

The post's model is ``Pipeline([tfidf, InternalLR(lr), InverseLabelEncoder(le)])``: its
last step turns label numbers into topic names, so the pipeline has no ``predict_proba``
although the ``LogisticRegression`` it wraps has one. ``find_route`` looks for such an
estimator: a step of the pipeline, or an attribute of a step, that is fitted
(``classes_``) and has ``predict_proba``. Its probabilities are the transforms of the steps
before it followed by its own ``predict_proba``; its classes are named by running its
``classes_`` through the steps after it, as the pipeline runs its predictions through them.

A route found this way is a guess about someone else's code. ``ProbabilityRoute.agrees``
checks it on the model's sample: the decoded argmax of its probabilities must equal
``predict`` for every instance. The handler uses a route only once it agrees (or when the
package step recorded that it agreed there, for a function whose sample is too large to
travel in its variables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_PASSTHROUGH = (None, "passthrough", "drop")


@dataclass
class ProbabilityRoute:
    path: str  # "ilr.lr": the step's name, then the attribute holding the estimator
    estimator: Any
    before: list[Any]  # steps whose transform runs first
    classes: list[Any]  # the estimator's classes as the pipeline names them
    decoder: str | None  # the steps after it that name the classes, "inv_le"

    def predict_proba(self, x: Any) -> Any:
        for step in self.before:
            x = step.transform(x)
        return self.estimator.predict_proba(x)

    def agrees(self, predicted: Any, probabilities: Any) -> bool:
        """Whether the decoded argmax of ``probabilities`` is ``predicted``, row by row."""
        import numpy as np

        rows = np.asarray(probabilities)
        labels = list(predicted.tolist() if hasattr(predicted, "tolist") else predicted)
        if rows.ndim != 2 or rows.shape[0] != len(labels) or rows.shape[1] != len(self.classes):
            return False
        best = [self.classes[int(i)] for i in rows.argmax(axis=1)]
        return [str(b) for b in best] == [str(label) for label in labels]

    def describe(self) -> str:
        named = type(self.estimator).__name__
        decoded = f", classes named by step {self.decoder!r}" if self.decoder else ""
        return f"{named} at {self.path}{decoded}"


def find_route(model: Any) -> ProbabilityRoute | None:
    """The first fitted estimator with ``predict_proba`` inside ``model``'s steps, or None."""
    steps = _steps(model)
    if steps is None:
        return None
    for i, (name, step) in enumerate(steps):
        if step in _PASSTHROUGH:
            continue
        found = _with_proba(name, step)
        if found is None:
            continue
        path, estimator = found
        before = [s for _, s in steps[:i] if s not in _PASSTHROUGH]
        after = [(n, s) for n, s in steps[i + 1 :] if s not in _PASSTHROUGH]
        classes = _decoded(estimator.classes_, after)
        if classes is None:
            return None
        decoder = ", ".join(n for n, _ in after) or None
        return ProbabilityRoute(path, estimator, before, classes, decoder)
    return None


def _steps(model: Any) -> list[tuple[str, Any]] | None:
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or not all(isinstance(s, tuple) and len(s) == 2 for s in steps):
        return None
    return [(str(n), s) for n, s in steps]


def _has_proba(value: Any) -> bool:
    return callable(getattr(value, "predict_proba", None)) and getattr(value, "classes_", None) is not None


def _with_proba(name: str, step: Any) -> tuple[str, Any] | None:
    """The step itself, or the first of its attributes, that is a fitted classifier."""
    if _has_proba(step):
        return name, step
    attributes = getattr(step, "__dict__", {})
    for attribute in sorted(attributes):
        if not attribute.startswith("_") and _has_proba(attributes[attribute]):
            return f"{name}.{attribute}", attributes[attribute]
    return None


def _decoded(classes: Any, after: list[tuple[str, Any]]) -> list[Any] | None:
    """``classes`` through the steps after the estimator: ``transform`` for the ones in
    between, ``predict`` for the last, as ``Pipeline.predict`` calls them."""
    values = classes
    try:
        for n, (_, step) in enumerate(after):
            last = n == len(after) - 1
            values = step.predict(values) if last else step.transform(values)
        listed = values.tolist() if hasattr(values, "tolist") else list(values)
    except Exception:
        return None
    return listed if len(listed) == len(classes) else None
