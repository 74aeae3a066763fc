"""Quality once the labels arrive: ground truth joined to captured predictions by request id.

Labels come late (a support ticket closed, a post moderated) and name the request they are
about by the id its caller got back (``x-amzn-RequestId``). ``quality`` joins them to the
capture records (``capture.py``), which hold the request's version, time and predictions, and
scores each (window, version): accuracy when the predictions are labels, the mean absolute
error when they are numbers. Versions side by side is what makes a canary comparable on
quality, not only on errors. Only captured requests can be scored: send labels for requests
made while capture was on (at 100% for all of them).

A label is one value for a request of one instance, or a list with one value per instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from lambdaserve.monitoring.drift import WINDOWS, record_time, window_start

ID_FIELDS = ("apiRequestId", "requestId")  # API Gateway's id (what callers see), then Lambda's


def quality(
    records: Iterable[Mapping[str, Any]], labels: Mapping[str, Any], window: str = "day"
) -> dict[str, Any]:
    """The labelled share of ``records`` scored per window and version, and overall per version."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    pairs: list[tuple[datetime, str, Any, Any]] = []  # (window start, version, predicted, label)
    matched: set[str] = set()
    for record in records:
        request_id = next((record[f] for f in ID_FIELDS if record.get(f) in labels), None)
        if request_id is None or request_id in matched:
            continue
        truths = _per_instance(record.get("predictions"), labels[request_id])
        if truths is None:
            continue
        predictions = record["predictions"]
        matched.add(request_id)
        start = window_start(_time_of(record), window)
        version = str(record.get("version") or "?")
        pairs.extend((start, version, p, t) for p, t in zip(predictions, truths, strict=True))
    metric = _metric(pairs)
    by_window: dict[tuple[datetime, str], list[tuple[Any, Any]]] = {}
    by_version: dict[str, list[tuple[Any, Any]]] = {}
    for start, version, predicted, truth in pairs:
        by_window.setdefault((start, version), []).append((predicted, truth))
        by_version.setdefault(version, []).append((predicted, truth))
    return {
        "metric": metric,
        "labels": len(labels),
        "matched": len(matched),
        "unmatched": len(labels) - len(matched),
        "versions": {
            v: {"labelled": len(p), "value": _score(metric, p)} for v, p in sorted(by_version.items())
        },
        "windows": [
            {"start": _iso(start), "version": version, "labelled": len(p), "value": _score(metric, p)}
            for (start, version), p in sorted(by_window.items())
        ],
    }


def _per_instance(predictions: Any, truth: Any) -> list[Any] | None:
    """One label per prediction: the label itself for one instance (or a list of one), a list
    of as many labels as instances for a batch; None when they do not line up."""
    if not isinstance(predictions, list) or not predictions:
        return None
    if isinstance(truth, list):
        return truth if len(truth) == len(predictions) else None
    return [truth] if len(predictions) == 1 else None


def _metric(pairs: list[tuple[datetime, str, Any, Any]]) -> str:
    numbers = all(_is_number(p) and not isinstance(p, bool) for _, _, p, _ in pairs)
    fractional = any(isinstance(p, float) and not float(p).is_integer() for _, _, p, _ in pairs)
    return "mean absolute error" if pairs and numbers and fractional else "accuracy"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(float(value))


def _score(metric: str, pairs: list[tuple[Any, Any]]) -> float | None:
    if not pairs:
        return None
    if metric == "accuracy":
        return sum(str(p) == str(t) for p, t in pairs) / len(pairs)
    usable = [(float(p), float(t)) for p, t in pairs if _is_number(p) and _is_number(t)]
    return sum(abs(p - t) for p, t in usable) / len(usable) if usable else None


def _time_of(record: Mapping[str, Any]) -> datetime:
    """The record's time; a record without a readable one counts at the epoch."""
    try:
        return record_time(record)
    except (KeyError, ValueError):
        return datetime.fromtimestamp(0, timezone.utc)


def _iso(stamp: datetime) -> str:
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
