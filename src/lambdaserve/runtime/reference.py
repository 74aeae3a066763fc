"""The reference a tabular explanation samples from: a summary of the training data, as JSON.

``lime.lime_tabular.LimeTabularExplainer`` keeps the training rows and, with its default
quartile discretizer, uses only these statistics of them (``lime/discretize.py``), which
``summarize_reference`` computes the same way so that explanations agree:

- per feature, the quartiles (``np.percentile`` at 25, 50, 75, duplicates dropped): a value's
  bin is ``np.searchsorted(boundaries, value)``, 0 to len(boundaries);
- per bin, the mean and population standard deviation of the rows in it (0 when empty), and how
  many rows fall in it (lime draws a sample's bin with these frequencies);
- the feature's minimum and maximum (the outer edges of the first and last bins).

lime also fits a StandardScaler on the rows, then sets every scale to 1 and every mean to 0 for
categorical features, which all features are once discretized: it changes nothing, so it is not
kept. The summary holds no row, only ``n_rows`` and these aggregates.

Constraints: standard library at import time, numpy in the functions (``runtime/`` rules).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMAT = 1
MIN_ROWS = 20  # fewer rows make quartiles of two or three values: bins that mean nothing


@dataclass(frozen=True)
class FeatureBins:
    """One feature of a reference, read back for sampling."""

    name: str
    boundaries: list[float]
    minimum: float
    maximum: float
    means: list[float]  # per bin
    stds: list[float]  # per bin, without the 1e-11 lime adds before dividing by them
    counts: list[int]  # per bin

    @property
    def bins_seen(self) -> list[int]:
        """The bins some reference row falls in: the only ones lime draws."""
        return [b for b, count in enumerate(self.counts) if count > 0]

    @property
    def bin_names(self) -> list[str]:
        """lime's descriptions of the bins, by bin: "x <= 1.60", "1.60 < x <= 4.35", "x > 5.10"."""
        qts, name = self.boundaries, self.name
        names = [f"{name} <= {qts[0]:.2f}"]
        names += [f"{low:.2f} < {name} <= {high:.2f}" for low, high in itertools.pairwise(qts)]
        return [*names, f"{name} > {qts[-1]:.2f}"]


def summarize_reference(rows: Any, feature_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Summarize training rows (a list of lists of numbers, a 2-d array or a DataFrame) for
    ``explain_tabular``; the result is plain JSON (``json.dumps`` takes it as it is).

    Feature names default to a DataFrame's columns, else to ``x0``, ``x1``, ... (lime's own
    default, ``0``, ``1``, ..., reads badly in "1.60 < 2 <= 4.35").
    """
    import numpy as np

    try:
        data = np.asarray(rows, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "the reference must be rows of numbers only, each row with the same number of values "
            f"({exc}); encode categories as numbers before summarizing"
        ) from exc
    if data.ndim != 2 or data.shape[1] == 0:
        raise ValueError("the reference must be a table: a list of rows, each a list of numbers")
    n_rows, n_columns = data.shape
    if n_rows < MIN_ROWS:
        raise ValueError(
            f"the reference has {n_rows} rows; explanations need at least {MIN_ROWS} "
            "(quartiles of fewer rows describe nothing): pass more of the training data"
        )
    bad = np.argwhere(~np.isfinite(data))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        raise ValueError(
            f"the reference holds {data[row, column]} at row {row}, column {column} "
            f"({len(bad)} such values): drop or impute NaN and infinite values first"
        )
    names = _feature_names(rows, feature_names, n_columns)
    features = []
    for column in data.T:
        boundaries = np.unique(np.percentile(column, [25, 50, 75]))
        bins = np.searchsorted(boundaries, column)
        means, stds, counts = [], [], []
        for b in range(len(boundaries) + 1):
            selection = column[bins == b]
            means.append(float(np.mean(selection)) if len(selection) else 0.0)
            stds.append(float(np.std(selection)) if len(selection) else 0.0)
            counts.append(len(selection))
        features.append(
            {
                "boundaries": [float(q) for q in boundaries],
                "min": float(np.min(column)),
                "max": float(np.max(column)),
                "bin_means": means,
                "bin_stds": stds,
                "bin_counts": counts,
            }
        )
    return {"format": FORMAT, "n_rows": int(n_rows), "feature_names": names, "features": features}


def read_reference(reference: Mapping[str, Any]) -> list[FeatureBins]:
    """The features of a summary from ``summarize_reference``; ValueError when it is not one."""
    if not isinstance(reference, Mapping):
        raise ValueError("reference must be the summary summarize_reference returns (a JSON object)")
    if reference.get("format") != FORMAT:
        raise ValueError(
            f"the reference has format {reference.get('format')!r}; this version reads format "
            f"{FORMAT}: summarize the training data again with summarize_reference"
        )
    try:
        names, summaries = reference["feature_names"], reference["features"]
        if len(names) != len(summaries) or not names:
            raise ValueError("feature_names and features differ in length")
        features = []
        for name, summary in zip(names, summaries, strict=True):
            feature = FeatureBins(
                name=str(name),
                boundaries=[float(q) for q in summary["boundaries"]],
                minimum=float(summary["min"]),
                maximum=float(summary["max"]),
                means=[float(m) for m in summary["bin_means"]],
                stds=[float(s) for s in summary["bin_stds"]],
                counts=[int(c) for c in summary["bin_counts"]],
            )
            n_bins = len(feature.boundaries) + 1
            if not 2 <= n_bins == len(feature.means) == len(feature.stds) == len(feature.counts):
                raise ValueError(f"feature {name!r} has bins of inconsistent lengths")
            if sorted(set(feature.boundaries)) != feature.boundaries or min(feature.counts) < 0:
                raise ValueError(f"feature {name!r} has unsorted boundaries or negative counts")
            if not feature.bins_seen:
                raise ValueError(f"feature {name!r} has no rows")
            features.append(feature)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"the reference is not a summary from summarize_reference ({exc}): summarize the "
            "training data again"
        ) from exc
    return features


def _feature_names(rows: Any, feature_names: Sequence[str] | None, n_columns: int) -> list[str]:
    if feature_names is None:
        columns = getattr(rows, "columns", None)
        return [str(c) for c in columns] if columns is not None else [f"x{i}" for i in range(n_columns)]
    if isinstance(feature_names, str) or len(feature_names) != n_columns:
        count = 1 if isinstance(feature_names, str) else len(feature_names)
        raise ValueError(
            f"the reference has {n_columns} columns but {count} feature names were given: "
            "give one name per column, in the columns' order"
        )
    names = [str(name) for name in feature_names]
    if len(set(names)) != len(names):
        raise ValueError("feature names must be distinct: each names one column")
    return names
