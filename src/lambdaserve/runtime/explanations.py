"""LIME explanations of text and tabular predictions, written over numpy.

What the ``lime`` package (Ribeiro et al., "Why should I trust you?", 2016) computes, without
``lime``: it pulls matplotlib and scikit-image, and ONNX model environments have numpy but not
scikit-learn. Each function reproduces one lime 0.2 call, with the same random stream, the same
samples and weights within 1e-6 (``tests/unit/test_explanations.py`` compares them):

- ``explain_text``: ``LimeTextExplainer(kernel_width=25, bow=True, split_expression=r"\\W+",
  feature_selection="auto", random_state=seed).explain_instance(text, fn, ...)``;
- ``explain_tabular``: ``LimeTabularExplainer(training_data, mode="classification",
  discretize_continuous=True, discretizer="quartile", random_state=seed).explain_instance(...)``,
  fed ``summarize_reference(training_data)`` (``reference.py``) instead of the rows.

One explanation: draw every perturbed sample first (lime's stream, whatever the batching), call
``predict_proba`` on them ``batch_size`` at a time, row 0 (the instance itself) first, and give up
with ``ExplainTooSlow`` as soon as the pace measured says the deadline would pass; then fit one
weighted ridge model per label (``local_model.py``), as lime's ``explain_instance_with_data`` does.

Constraints: the standard library at import time; numpy when an explanation runs; scipy only in
``explain_tabular`` (lime draws from ``scipy.stats.truncnorm``, whose stream it must share).

lime's behaviour kept although surprising, so that results agree:
- lime reports one ``score`` and ``local_pred`` per explanation, those of the last label it fits
  (with ``top_labels``, the most probable one); here every label has its own.
- Words are case-sensitive tokens between runs of ``\\W``; removing a word removes every
  occurrence, and the separators around it stay.
- The deadline covers the model's calls; the local models' fit after them is not projected
  (milliseconds, up to a second or two at ``MAX_WORDS`` words and ``MAX_SAMPLES`` samples).
"""

from __future__ import annotations

import itertools
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdaserve.runtime.local_model import WeightedRidge
from lambdaserve.runtime.reference import read_reference, summarize_reference

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float64]

__all__ = [
    "MAX_FEATURES",
    "MAX_SAMPLES",
    "MAX_WORDS",
    "MIN_SAMPLES",
    "ExplainTooSlow",
    "Explanation",
    "LabelExplanation",
    "explain_tabular",
    "explain_text",
    "summarize_reference",
]

MIN_SAMPLES = 10
MAX_SAMPLES = 10_000
MAX_FEATURES = 100
# lime has no bound; the samples matrix is num_samples x words (80 MB at 10,000 x 1,000).
MAX_WORDS = 1_000
TEXT_KERNEL_WIDTH = 25.0


class ExplainTooSlow(Exception):
    """The model's pace, measured on the first batches, would take the explanation past its deadline."""

    estimated_s: float  # the whole explanation at that pace
    budget_s: float  # from the call to the deadline
    fitting_samples: int  # how many samples would fit at that pace

    def __init__(self, estimated_s: float, budget_s: float, fitting_samples: int) -> None:
        self.estimated_s = estimated_s
        self.budget_s = budget_s
        self.fitting_samples = fitting_samples
        advice = (
            f"ask for num_samples={fitting_samples} or fewer"
            if fitting_samples >= MIN_SAMPLES
            else f"not even {MIN_SAMPLES} samples fit: allow more time"
        )
        super().__init__(
            f"explaining would take about {estimated_s:.1f} s, "
            f"more than the {budget_s:.1f} s allowed; {advice}"
        )

    def __reduce__(self) -> tuple[type[ExplainTooSlow], tuple[float, float, int]]:
        # Exceptions pickle as cls(*args), and args holds the message alone: keep the fields.
        return type(self), (self.estimated_s, self.budget_s, self.fitting_samples)


@dataclass(frozen=True)
class LabelExplanation:
    label: int  # column index into predict_proba's output
    weights: list[tuple[str, float]]  # (feature description, weight), largest |weight| first
    intercept: float
    score: float  # weighted R^2 of the local model on the samples
    local_prediction: float  # the local model's prediction for the instance


@dataclass(frozen=True)
class Explanation:
    probabilities: list[float]  # predict_proba of the instance itself
    labels: list[LabelExplanation]  # most probable first with top_labels; else as asked
    num_samples: int


@dataclass(frozen=True)
class _Options:
    num_features: int
    num_samples: int
    labels: list[int] | None
    top_labels: int | None
    random_state: int | None
    batch_size: int
    deadline: float | None
    clock: Callable[[], float]


def explain_text(
    text: str,
    predict_proba: Callable[[list[str]], Any],
    *,
    num_features: int = 10,
    num_samples: int = 5000,
    labels: Sequence[int] | None = None,
    top_labels: int | None = None,
    random_state: int | None = None,
    batch_size: int = 250,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Explanation:
    """Which words of ``text`` move ``predict_proba``'s output: lime's text explanation.

    ``predict_proba`` takes a list of texts and returns one row of class probabilities per text.
    Raises ValueError for bad arguments, ExplainTooSlow when ``deadline`` (a ``clock()`` value)
    would pass.
    """
    started = clock()
    options = _options(
        num_features, num_samples, labels, top_labels, random_state, batch_size, deadline, clock
    )
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, not {type(text).__name__}")
    np = _numpy()
    tokens, token_words, words = _split_words(text)
    if not words:
        raise ValueError(
            "the text has no words to explain: send the text the model classifies, "
            "with at least one word (letters or digits)"
        )
    if len(words) > MAX_WORDS:
        raise ValueError(
            f"the text has {len(words)} distinct words; explanations take at most {MAX_WORDS}: "
            "send a shorter excerpt"
        )
    # LimeTextExplainer.__data_labels_distances: how many words to drop, then which.
    rng = np.random.RandomState(random_state)
    n_words = len(words)
    present = np.ones((num_samples, n_words))
    for i, size in enumerate(rng.randint(1, n_words + 1, num_samples - 1), start=1):
        present[i, rng.choice(n_words, size, replace=False)] = 0
    word_of_token = np.array(token_words, dtype=np.intp)  # -1 for separators: always kept

    def texts(start: int, stop: int) -> list[str]:
        out = []
        for i in range(start, stop):
            if i == 0:
                out.append(text)
                continue
            keep = np.append(present[i] > 0, True)[word_of_token]
            out.append("".join(itertools.compress(tokens, keep.tolist())))
        return out

    probabilities = _predict(texts, predict_proba, options, started)
    # sklearn's cosine distance, as lime calls it: rows scaled to unit length (all-zero rows
    # stay zero), 1 - dot product, clipped to [0, 2]; lime multiplies by 100.
    norms = np.sqrt((present * present).sum(axis=1))
    norms[norms == 0.0] = 1.0
    unit = present / norms[:, np.newaxis]
    distances = np.clip(1.0 - unit @ unit[0], 0.0, 2.0) * 100
    return _explain(present, probabilities, distances, TEXT_KERNEL_WIDTH, list(words), options)


def explain_tabular(
    row: Sequence[float],
    predict_proba: Callable[[Any], Any],
    reference: Mapping[str, Any],
    *,
    num_features: int = 10,
    num_samples: int = 5000,
    labels: Sequence[int] | None = None,
    top_labels: int | None = None,
    random_state: int | None = None,
    batch_size: int = 250,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Explanation:
    """Which features of ``row`` move ``predict_proba``'s output: lime's tabular explanation.

    ``reference`` is ``summarize_reference`` of the training data; ``predict_proba`` takes a 2-d
    numpy array (one row per sample, the reference's columns) and returns class probabilities.
    Features are described by their quartile bin, as lime does: ``"1.60 < petal_length <= 4.35"``.
    """
    started = clock()
    options = _options(
        num_features, num_samples, labels, top_labels, random_state, batch_size, deadline, clock
    )
    np = _numpy()
    features = read_reference(reference)
    try:
        from scipy.stats import truncnorm
    except ImportError as exc:
        raise RuntimeError(
            "tabular explanations need scipy (lime samples from scipy.stats.truncnorm): "
            "add scipy to the model's requirements"
        ) from exc
    try:
        instance = np.asarray(row, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError("the row to explain must be a list of numbers") from exc
    if instance.shape != (len(features),):
        raise ValueError(
            f"the row to explain must hold {len(features)} numbers, one per feature "
            f"({', '.join(f.name for f in features)}); got shape {list(instance.shape)}"
        )
    if not np.isfinite(instance).all():
        raise ValueError("the row to explain must not hold NaN or infinite values")

    # LimeTabularExplainer.__data_inverse with a QuartileDiscretizer: every feature is
    # categorical (its quartile bin). A sample draws each feature's bin from the reference's
    # frequencies; the model sees a value drawn from the reference rows of that bin.
    rng = np.random.RandomState(random_state)
    bins = [int(np.searchsorted(f.boundaries, x)) for f, x in zip(features, instance, strict=True)]
    data = np.zeros((num_samples, len(features)))
    data[0] = instance
    inverse = data.copy()
    for column, feature in enumerate(features):
        counts = [feature.counts[b] for b in feature.bins_seen]
        drawn = rng.choice(
            np.array(feature.bins_seen, dtype=float),
            size=num_samples,
            replace=True,
            p=np.array(counts) / float(sum(counts)),
        )
        same_bin = (drawn == bins[column]).astype(int)
        same_bin[0] = 1
        drawn[0] = data[0, column]
        data[:, column] = same_bin
        inverse[:, column] = drawn
    # BaseDiscretizer.undiscretize, feature by feature. Where a bin's bounds are equal (all of
    # its rows at the feature's minimum), lime keeps the z-score itself (0.0), not the value.
    for column, feature in enumerate(features):
        bin_index = inverse[1:, column].astype(int)
        mins = np.array([feature.minimum, *feature.boundaries])[bin_index]
        maxs = np.array([*feature.boundaries, feature.maximum])[bin_index]
        means = np.array(feature.means)[bin_index]
        stds = (np.array(feature.stds) + 0.00000000001)[bin_index]
        low, high = (mins - means) / stds, (maxs - means) / stds
        spread = low != high
        values = low
        values[np.where(spread)] = truncnorm.rvs(
            low[spread], high[spread], loc=means[spread], scale=stds[spread], random_state=rng
        )
        inverse[1:, column] = values
    inverse[0] = instance

    probabilities = _predict(lambda start, stop: inverse[start:stop], predict_proba, options, started)
    # Lime scales by a StandardScaler whose mean and scale it resets to 0 and 1 for categorical
    # features, which all are here: the distance is euclidean on the 0/1 "same bin" matrix.
    distances = np.sqrt(((data - data[0]) ** 2).sum(axis=1))
    kernel_width = float(np.sqrt(len(features)) * 0.75)
    names = [f.bin_names[b] for f, b in zip(features, bins, strict=True)]
    return _explain(data, probabilities, distances, kernel_width, names, options)


def _options(
    num_features: int,
    num_samples: int,
    labels: Sequence[int] | None,
    top_labels: int | None,
    random_state: int | None,
    batch_size: int,
    deadline: float | None,
    clock: Callable[[], float],
) -> _Options:
    """Check the arguments a caller chose; every message says what to send instead."""
    _check_count("num_features", num_features, 1, MAX_FEATURES)
    _check_count("num_samples", num_samples, MIN_SAMPLES, MAX_SAMPLES)
    _check_count("batch_size", batch_size, 1, MAX_SAMPLES)
    if top_labels is not None:
        _check_count("top_labels", top_labels, 1, None)
        if labels is not None:
            raise ValueError("give labels or top_labels, not both")
    label_list = None
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or not labels:
            raise ValueError("labels must be a non-empty list of class indices, such as [0, 2]")
        label_list = []
        for label in labels:
            _check_count("each label", label, 0, None)
            if label not in label_list:  # lime explains a repeated label once
                label_list.append(int(label))
    if random_state is not None:
        _check_count("random_state", random_state, 0, 2**32 - 1)
    if deadline is not None and not (isinstance(deadline, (int, float)) and math.isfinite(deadline)):
        raise ValueError("deadline must be a finite clock() value, or None for no deadline")
    return _Options(
        num_features, num_samples, label_list, top_labels, random_state, batch_size, deadline, clock
    )


def _check_count(name: str, value: Any, low: int, high: int | None) -> None:
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < low or (high is not None and number > high):
        span = f"between {low} and {high}" if high is not None else f"{low} or more"
        raise ValueError(f"{name} must be a whole number {span}, not {value!r}")


def _predict(
    batch: Callable[[int, int], Any],
    predict_proba: Callable[[Any], Any],
    options: _Options,
    started: float,
) -> Array:
    """``predict_proba`` on every sample, ``batch_size`` rows at a time, row 0 first.

    Before each batch after the first, the pace so far (clock time since the call began, per
    sample predicted) projects the total; past the deadline, ExplainTooSlow says how many
    samples would fit at that pace.
    """
    np = _numpy()
    total = options.num_samples
    parts = []
    done = 0
    while done < total:
        if done and options.deadline is not None:
            per_sample = (options.clock() - started) / done
            if started + per_sample * total > options.deadline:
                budget = options.deadline - started
                fitting = total if per_sample <= 0 else max(0, min(total, int(budget / per_sample)))
                raise ExplainTooSlow(per_sample * total, budget, fitting)
        stop = min(done + options.batch_size, total)
        output = np.asarray(predict_proba(batch(done, stop)), dtype=float)
        if output.ndim != 2 or output.shape[0] != stop - done:
            raise RuntimeError(
                f"predict_proba returned shape {list(output.shape)} for {stop - done} inputs; "
                "explanations need one row of class probabilities per input"
            )
        if not done:
            _check_labels(options, output.shape[1])  # before paying for the other batches
        parts.append(output)
        done = stop
    result: Array = np.concatenate(parts)
    return result


def _check_labels(options: _Options, n_classes: int) -> None:
    if options.top_labels is not None:
        return
    asked = options.labels if options.labels is not None else [1]
    wrong = [label for label in asked if label >= n_classes]
    if wrong:
        default = "" if options.labels is not None else " (the default, as in lime)"
        raise ValueError(
            f"label {wrong[0]}{default} is out of range: the model gives {n_classes} "
            f"class probabilities, so labels go from 0 to {n_classes - 1}"
        )


def _explain(
    data: Array,
    probabilities: Array,
    distances: Array,
    kernel_width: float,
    names: list[str],
    options: _Options,
) -> Explanation:
    """lime_base.LimeBase.explain_instance_with_data for each label, with lime's default kernel."""
    np = _numpy()
    first = probabilities[0]
    if options.top_labels is not None:
        labels = [int(label) for label in np.argsort(first)[-options.top_labels :]][::-1]
    else:
        labels = options.labels if options.labels is not None else [1]
    ridge = WeightedRidge(data, np.sqrt(np.exp(-(distances**2) / kernel_width**2)))
    explained = []
    for label in labels:
        y = probabilities[:, label]
        features = ridge.select(y, options.num_features)
        coef, intercept = ridge.fit(y, features, alpha=1.0)
        local = ridge.data[:, features] @ coef + intercept
        ranked = sorted(
            zip(features, coef.tolist(), strict=True), key=lambda pair: abs(pair[1]), reverse=True
        )
        explained.append(
            LabelExplanation(
                label=label,
                weights=[(names[feature], weight) for feature, weight in ranked],
                intercept=float(intercept),
                score=ridge.score(y, local),
                local_prediction=float(local[0]),
            )
        )
    return Explanation([float(p) for p in first], explained, options.num_samples)


def _split_words(text: str) -> tuple[list[str], list[int], list[str]]:
    """lime_text.IndexedString with bow=True and split_expression ``\\W+``.

    Returns the tokens (words and the separators between them, which join back into ``text``),
    the word index of each token (-1 for a separator) and the distinct words in order of first
    appearance.
    """
    import re

    splitter = re.compile(r"(\W+)|$")
    tokens = [s for s in splitter.split(text) if s]
    index: dict[str, int] = {}
    token_words = []
    for token in tokens:
        if splitter.match(token):
            token_words.append(-1)
        else:
            token_words.append(index.setdefault(token, len(index)))
    return tokens, token_words, list(index)


def _numpy() -> Any:
    import numpy

    return numpy
