"""Drift: whether the requests a model is asked still look like the data it learned from.

Captured records (``capture.py``) are split into windows (an hour or a day, UTC). In each
window every feature's values are counted in the reference's bins (``runtime/distributions.py``:
decile bins for numbers, top values for categories; for text the length in words, the
vocabulary hit rate and the top tokens), and so are the model's predictions. Each count is
compared with the reference's shares by:

- the Population Stability Index, ``PSI = sum((a - e) * ln(a / e))`` over the bins, with ``a``
  the window's share and ``e`` the reference's. An empty bin would make the logarithm
  infinite: a share below ``EPSILON`` (0.0001) counts as ``EPSILON``, so one bin that the
  reference never saw and that holds 10% of the window adds about 0.7. The usual reading:
  below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a shift;
- a two-sample chi-square test of homogeneity on the counts (the reference's counts are its
  shares times its rows), whose p-value comes from ``scipy.stats`` when scipy is importable and
  is otherwise left out (and the report says so). The top tokens get no p-value: the words of
  one text are not independent draws. With thousands of requests a window, small shifts have
  tiny p-values: PSI says how large a shift is, the test only that there is one.

Without a reference (the model was packaged without ``--reference``) each window is compared
with the first window, summarized with the same function the package step uses.

Pure Python: the CLI's environment has no numpy (scipy is used only when present).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime import distributions as dist

EPSILON = 1e-4
STABLE_BELOW = 0.1
SHIFT_ABOVE = 0.25
TOP_FEATURES = 10
LATEST_RECORDS = 10
FEW_INSTANCES = 200  # below this, sampling noise alone moves PSI past 0.1 over 10 bins
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([mhd])")
_AGE_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h`` or ``30m`` as a duration."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise LambdaserveError(f"since {text!r} is not a duration.", "e.g. 30m, 12h or 7d.")
    return float(match[1]) * _AGE_UNITS[match[2]]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The Population Stability Index of two distributions over the same bins (shares)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def reading(value: float) -> str:
    if value < STABLE_BELOW:
        return "stable"
    return "moderate" if value <= SHIFT_ABOVE else "shift"


def chi_square(first: Sequence[float], second: Sequence[float]) -> tuple[float, int]:
    """The chi-square statistic of homogeneity of two rows of counts, and its degrees of freedom."""
    n1, n2 = sum(first), sum(second)
    if n1 <= 0 or n2 <= 0:
        return 0.0, 0
    statistic, used = 0.0, 0
    for a, b in zip(first, second, strict=True):
        column = a + b
        if column <= 0:
            continue  # a bin neither side has: no information
        used += 1
        for observed, row in ((a, n1), (b, n2)):
            expected = row * column / (n1 + n2)
            statistic += (observed - expected) ** 2 / expected
    return statistic, max(used - 1, 0)


def p_value(statistic: float, degrees: int) -> float | None:
    """The chi-square test's p-value, from scipy when it is importable; else None."""
    if degrees <= 0:
        return None
    try:
        from scipy.stats import chi2
    except ImportError:
        return None
    return float(chi2.sf(statistic, degrees))


def has_scipy() -> bool:
    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        return False
    return True


def window_start(stamp: datetime, window: str) -> datetime:
    stamp = stamp.astimezone(timezone.utc)
    if window == "hour":
        return stamp.replace(minute=0, second=0, microsecond=0)
    return stamp.replace(hour=0, minute=0, second=0, microsecond=0)


def record_time(record: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))


def split_windows(records: Iterable[Mapping[str, Any]], window: str) -> list[tuple[datetime, list[Any]]]:
    """Records by window (UTC hours or days), in time order; windows without records are left out."""
    if window not in WINDOWS:
        raise LambdaserveError(f"window {window!r} is not one of hour, day.", "e.g. --window day")
    windows: dict[datetime, list[Any]] = {}
    for record in records:
        windows.setdefault(window_start(record_time(record), window), []).append(record)
    return sorted(windows.items(), key=lambda item: item[0])


class Sample:
    """One window's instances and predictions, as columns by statistic."""

    def __init__(self, records: Sequence[Mapping[str, Any]], reference: Mapping[str, Any]) -> None:
        self.instances: list[Any] = []
        self.predictions: list[Any] = []
        for record in records:
            if record.get("route") == "explain":  # the same instances again, not new requests
                continue
            instances = record.get("instances") or []
            predictions = record.get("predictions")
            self.instances.extend(instances)
            if isinstance(predictions, list) and len(predictions) == len(instances):
                self.predictions.extend(predictions)
        self.columns: dict[str, list[Any]] = {}
        self.n_words = 0
        if reference.get("input") == "text":
            texts = [i if isinstance(i, str) else "" for i in self.instances]
            lengths, hits, words = dist.text_statistics(texts, set(reference.get("vocabulary", [])))
            self.columns = {
                dist.TEXT_LENGTH: lengths,
                dist.VOCABULARY_HIT_RATE: hits,
                dist.TOP_TOKENS_NAME: words,
            }
            self.n_words = len(words)
        else:
            rows = [i for i in self.instances if isinstance(i, (list, dict))]
            names = [f["name"] for f in reference.get("features", [])]
            self.columns = dist.feature_columns(rows, names)


def compare(summary: Mapping[str, Any], values: Sequence[Any], reference_n: float | None) -> dict[str, Any]:
    """One statistic of one window against its summary: PSI, its reading, the test, the histogram.

    ``reference_n``: how many values the summary was made of (None: no p-value)."""
    counts = dist.bin_counts(summary, values)
    expected = dist.reference_proportions(summary)
    n = len(values)
    actual = [c / n if n else 0.0 for c in counts]
    value = psi(expected, actual) if n else 0.0
    found: dict[str, Any] = {
        "name": summary["name"],
        "type": summary["type"],
        "n": n,
        "psi": round(value, 4),
        "reading": reading(value) if n else "no data",
        "p_value": None,
        "bins": dist.bin_labels(summary),
        "reference": [round(e, 4) for e in expected],
        "current": [round(a, 4) for a in actual],
    }
    if reference_n and n:
        p = p_value(*chi_square([e * reference_n for e in expected], counts))
        found["p_value"] = None if p is None else float(f"{p:.3g}")
    # Bins both sides leave empty say nothing; numeric summaries always carry a "missing" bin.
    keep = [i for i, (e, a) in enumerate(zip(expected, actual, strict=True)) if e > 0 or a > 0]
    for key in ("bins", "reference", "current"):
        found[key] = [found[key][i] for i in keep]
    return found


def compare_window(
    records: Sequence[Mapping[str, Any]], reference: Mapping[str, Any], top: int = TOP_FEATURES
) -> dict[str, Any]:
    """A window against the reference's drift section: its top drifting statistics and predictions."""
    sample = Sample(records, reference)
    n_rows = reference.get("n_rows")
    features = []
    for summary in _statistics(reference):
        values = sample.columns.get(summary["name"], [None] * len(sample.instances))
        tokens = summary["name"] == dist.TOP_TOKENS_NAME and reference.get("input") == "text"
        features.append(compare(summary, values, None if tokens else n_rows))
    features.sort(key=lambda f: -f["psi"])
    readings = [f["reading"] for f in features]
    predictions = reference.get("predictions")
    return {
        "records": len(records),
        "instances": len(sample.instances),
        "predictions": compare(predictions, sample.predictions, n_rows) if predictions else None,
        "readings": {r: readings.count(r) for r in ("shift", "moderate", "stable")},
        "features": features[:top],
    }


def _statistics(reference: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(reference.get("features", []))


def drift_report(
    records: Iterable[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
    *,
    window: str = "day",
    top: int = TOP_FEATURES,
) -> dict[str, Any]:
    """Every window of ``records`` against ``reference`` (a drift section), or, without one,
    against the first window. Plain JSON."""
    kept = list(records)
    windows = split_windows(kept, window)
    notes: list[str] = []
    baseline = "reference"
    compared_windows = windows
    if reference is None and windows:
        baseline = "first window"
        first = windows[0][1]
        sample = Sample(first, {})
        instances = sample.instances
        predictions = sample.predictions if len(sample.predictions) == len(instances) else None
        reference = dist.summarize_drift(instances, predictions) if instances else None
        notes.append(
            "No reference in the bundle: each window is compared with the first one "
            f"({window_text(windows[0][0], window)}). Package the model with --reference TRAINING_SAMPLE "
            "to compare with what it learned from."
        )
    elif reference is not None and reference.get("features_left_out"):
        notes.append(
            f"{reference['features_left_out']} features beyond the first {dist.MAX_FEATURES} have no "
            "reference statistics and are not compared."
        )
    if not has_scipy():
        notes.append("p-values are left out: scipy is not installed here (pip install scipy adds them).")
    small = [w for w in compared_windows if sum(len(r.get("instances") or []) for r in w[1]) < FEW_INSTANCES]
    if small and reference is not None:
        notes.append(
            f"{len(small)} window(s) hold fewer than {FEW_INSTANCES} instances: there PSI reads high from "
            "chance alone (about (bins - 1) x (1/n + 1/N) with no drift: 0.2 for 10 bins and 60 requests); "
            "use longer windows (--window day) or capture more."
        )
    report_windows = []
    for start, members in compared_windows:
        entry: dict[str, Any] = {
            "start": _iso(start),
            "end": _iso(start + WINDOWS[window]),
            "label": window_text(start, window),
        }
        if reference is None:
            entry.update({"records": len(members), "instances": 0, "predictions": None, "features": []})
        else:
            entry.update(compare_window(members, reference, top))
        entry["baseline"] = baseline == "first window" and start == windows[0][0]
        report_windows.append(entry)
    return {
        "baseline": baseline,
        "window": window,
        "records": len(kept),
        "thresholds": {"stable_below": STABLE_BELOW, "shift_above": SHIFT_ABOVE, "epsilon": EPSILON},
        "notes": notes,
        "windows": report_windows,
        "latest_records": [_brief(r) for r in kept[-LATEST_RECORDS:]][::-1],
    }


def window_text(start: datetime, window: str) -> str:
    return start.strftime("%Y-%m-%d %H:00 UTC" if window == "hour" else "%Y-%m-%d")


def _iso(stamp: datetime) -> str:
    return stamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _brief(record: Mapping[str, Any]) -> dict[str, Any]:
    """A captured record as the console's table shows it: instances and predictions shortened."""
    return {
        "time": record.get("time"),
        "version": record.get("version"),
        "stage": record.get("stage"),
        "route": record.get("route"),
        "instances": _short(record.get("instances")),
        "predictions": _short(record.get("predictions")),
        "latencyMs": record.get("latencyMs"),
    }


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
