"""Distributions of a model's inputs and outputs as bins: the reference's drift statistics.

The package step summarizes the reference sample with ``summarize_drift`` inside the model's
environment (``handler.summarize_reference``); ``lambdaserve drift`` bins captured instances
with the same edges and values (``monitoring/drift.py``), and, with no reference, summarizes a
first window of captures with the same function. One module for both sides, so a value falls
in the same bin wherever it is counted.

Per feature, one of two summaries:

- ``numeric`` (numbers with more than ``FEW_VALUES`` distinct values): decile edges (the 10th
  to 90th percentiles, linear interpolation as numpy's default, rounded to 6 significant
  digits, duplicates merged) and the share of rows per bin; bin ``i`` holds the values
  ``edges[i-1] < x <= edges[i]`` (``bisect_left``, as lime's ``searchsorted``); values that are
  not numbers (null) count in ``missing``;
- ``categorical`` (strings, booleans, or numbers with at most ``FEW_VALUES`` distinct values):
  the ``TOP_VALUES`` most frequent values (as ``value_key`` strings) with their shares, and the
  share of all other values in ``other``.

For text, three statistics stand for features: the length in words (numeric), the vocabulary
hit rate (the share of a text's words among the reference's ``VOCABULARY_SIZE`` most frequent
tokens; numeric; the vocabulary is made from every other reference text and the rates are those
of the rest, as new texts would have them) and the ``TOP_TOKENS`` most frequent tokens
(categorical over token occurrences). Words are scikit-learn's default tokens: lower-cased
runs of two or more word characters. The predictions are summarized as a feature is (a
classifier's: class -> share).

Bounded: at most ``MAX_FEATURES`` features are summarized (the rest are counted in
``features_left_out``); a numeric feature is about 20 numbers, a categorical one at most 21.
The vocabulary (5,000 tokens, about 40 kB) is the largest part of a text reference.

Constraints: the standard library only (``runtime/`` rules); the CLI, which has no numpy,
runs this too.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMAT = 1
DECILES = [q / 10 for q in range(1, 10)]
FEW_VALUES = 10  # numbers with at most this many distinct values are categories
TOP_VALUES = 20
TOP_TOKENS = 50
VOCABULARY_SIZE = 5000
MAX_FEATURES = 500
TEXT_LENGTH = "text length (words)"
VOCABULARY_HIT_RATE = "vocabulary hit rate"
TOP_TOKENS_NAME = "top tokens"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's CountVectorizer default


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def value_key(value: Any) -> str:
    """A category's name as a JSON object key: ``1`` and ``1.0`` are one category."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def quantiles(values: Sequence[float], fractions: Sequence[float]) -> list[float]:
    """``np.percentile(values, 100 * f)`` for each fraction (linear interpolation); values sorted."""
    last = len(values) - 1
    found = []
    for f in fractions:
        position = f * last
        low = math.floor(position)
        high = min(low + 1, last)
        found.append(values[low] + (values[high] - values[low]) * (position - low))
    return found


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _shares(counts: Sequence[int | float], total: int | float) -> list[float]:
    return [round(c / total, 6) if total else 0.0 for c in counts]


def summarize_values(values: Sequence[Any], name: str = "") -> dict[str, Any]:
    """One feature's summary (numeric or categorical, as the module's docstring says)."""
    numbers = sorted(float(v) for v in values if is_number(v))
    others = [v for v in values if not is_number(v) and v is not None and not _is_nan(v)]
    if numbers and not others and len(set(numbers)) > FEW_VALUES:
        edges = sorted({_round(q) for q in quantiles(numbers, DECILES)})
        counts = [0] * (len(edges) + 1)
        for x in numbers:
            counts[bisect.bisect_left(edges, x)] += 1
        total = len(values)
        return {
            "name": name,
            "type": "numeric",
            "edges": edges,
            "proportions": _shares(counts, total),
            "missing": round((total - len(numbers)) / total, 6),
        }
    counted = Counter(value_key(v) for v in values)
    top = counted.most_common(TOP_VALUES)
    total = len(values)
    return {
        "name": name,
        "type": "categorical",
        "shares": {key: round(n / total, 6) for key, n in top},
        "other": round((total - sum(n for _, n in top)) / total, 6) if total else 0.0,
    }


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def bin_labels(summary: Mapping[str, Any]) -> list[str]:
    """The bins' names, in ``bin_counts`` order: "<= 1.6", "1.6 to 4.35", "> 5.1"; or the values."""
    if summary["type"] == "numeric":
        edges = summary["edges"]
        if not edges:
            return ["all", "missing"]
        labels = [f"<= {edges[0]:g}"]
        labels += [f"{low:g} to {high:g}" for low, high in itertools.pairwise(edges)]
        return [*labels, f"> {edges[-1]:g}", "missing"]
    return [*summary["shares"], "other"]


def reference_proportions(summary: Mapping[str, Any]) -> list[float]:
    """The reference's share per bin, in ``bin_labels`` order."""
    if summary["type"] == "numeric":
        return [*summary["proportions"], summary.get("missing", 0.0)]
    return [*summary["shares"].values(), summary["other"]]


def bin_counts(summary: Mapping[str, Any], values: Iterable[Any]) -> list[int]:
    """How many of ``values`` fall in each of the summary's bins (``bin_labels`` order)."""
    if summary["type"] == "numeric":
        edges = summary["edges"]
        counts = [0] * (len(edges) + 2)
        for v in values:
            if is_number(v):
                counts[bisect.bisect_left(edges, float(v))] += 1
            else:
                counts[-1] += 1
        return counts
    index = {key: i for i, key in enumerate(summary["shares"])}
    counts = [0] * (len(index) + 1)
    for v in values:
        counts[index.get(value_key(v), len(index))] += 1
    return counts


def text_statistics(texts: Sequence[str], vocabulary: set[str]) -> tuple[list[int], list[float], list[str]]:
    """Each text's length in words and vocabulary hit rate, and all the words, in order."""
    lengths, hits, words = [], [], []
    for text in texts:
        found = tokens(text)
        lengths.append(len(found))
        hits.append(sum(w in vocabulary for w in found) / len(found) if found else 1.0)
        words.extend(found)
    return lengths, hits, words


def summarize_texts(texts: Sequence[str]) -> dict[str, Any]:
    """The text part of a drift summary: the vocabulary and the three statistics."""
    counted = Counter(w for text in texts for w in tokens(text))
    # The vocabulary comes from every other text and the hit rates from the others: a text's
    # own words are always in a vocabulary made with it, so in-sample rates would read high
    # and new texts of the very same kind would seem to drift.
    learned = texts[::2] if len(texts) > 1 else texts
    held_out = texts[1::2] if len(texts) > 1 else texts
    in_learned = Counter(w for text in learned for w in tokens(text))
    vocabulary = sorted(w for w, _ in in_learned.most_common(VOCABULARY_SIZE))
    _, hits, _ = text_statistics(held_out, set(vocabulary))
    lengths, _, words = text_statistics(texts, set())
    top_tokens = counted.most_common(TOP_TOKENS)
    total = len(words)
    top = {
        "name": TOP_TOKENS_NAME,
        "type": "categorical",
        "shares": {w: round(n / total, 6) for w, n in top_tokens},
        "other": round((total - sum(n for _, n in top_tokens)) / total, 6) if total else 0.0,
    }
    length = summarize_values(lengths, TEXT_LENGTH)
    hit_rate = summarize_values(hits, VOCABULARY_HIT_RATE)
    return {"vocabulary": vocabulary, "features": [length, hit_rate, top]}


def summarize_drift(
    instances: Sequence[Any],
    predictions: Sequence[Any] | None,
    feature_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ``drift`` section of a reference: per-feature bins and the predictions' distribution.

    ``instances``: strings (text), flat arrays in the order of ``feature_names``, or objects
    {feature: value}; ``predictions``: the model's output for each instance (or None).
    """
    if not instances:
        raise ValueError("the reference holds no rows")
    section: dict[str, Any] = {"format": FORMAT, "n_rows": len(instances)}
    if all(isinstance(i, str) for i in instances):
        section["input"] = "text"
        section.update(summarize_texts(list(instances)))
    else:
        columns = feature_columns(instances, feature_names)
        kept = list(columns)[:MAX_FEATURES]
        section["input"] = "record" if isinstance(instances[0], Mapping) else "array"
        section["features"] = [summarize_values(columns[name], name) for name in kept]
        section["features_left_out"] = len(columns) - len(kept)
    if predictions is not None:
        section["predictions"] = summarize_values(list(predictions), "predictions")
    return section


def feature_columns(instances: Sequence[Any], feature_names: Sequence[str] | None) -> dict[str, list[Any]]:
    """Rows (arrays or objects) as columns by feature name; arrays name theirs ``x0``, ``x1``, ...
    unless ``feature_names`` gives the order."""
    columns: dict[str, list[Any]] = {}
    for n, row in enumerate(instances):
        items = row.items() if isinstance(row, Mapping) else enumerate(row)
        for key, value in items:
            name = (
                key
                if isinstance(key, str)
                else (feature_names[key] if feature_names and key < len(feature_names) else f"x{key}")
            )
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * n  # a feature the earlier rows lacked
            column.append(value)
        for column in columns.values():
            if len(column) < n + 1:
                column.append(None)
    return columns
