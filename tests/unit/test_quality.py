"""Late labels joined to captured predictions: accuracy per version and window, as scikit-learn scores it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, mean_absolute_error

from lambdaserve.errors import LambdaserveError
from lambdaserve.monitoring.quality import quality
from lambdaserve.store import Store
from lambdaserve.store.feedback import labels_of, read_label_file, record_labels

TOPICS = ["sci.space", "alt.atheism", "rec.autos"]


def record(request_id: str, version: str, predictions: list[Any], time: str) -> dict[str, Any]:
    return {
        "lambdaserveCapture": 1, "time": time, "requestId": request_id, "version": version,
        "stage": "prod", "route": "predict", "instances": ["..."] * len(predictions),
        "predictions": predictions, "probabilities": None, "latencyMs": 1.0,
    }  # fmt: skip


def test_accuracy_per_version_equals_scikit_learns_on_the_same_labels() -> None:
    # GIVEN 400 captured predictions from a stable version and a canary, and labels for 300
    rng = random.Random(7)
    records, labels = [], {}
    truth: dict[str, list[tuple[str, str]]] = {"1": [], "2": []}
    for i in range(400):
        version = "1" if i % 4 else "2"
        predicted = rng.choice(TOPICS)
        records.append(record(f"r{i}", version, [predicted], f"2026-12-0{1 + i % 3}T10:00:00Z"))
        if i < 300:
            label = predicted if rng.random() < (0.9 if version == "1" else 0.6) else rng.choice(TOPICS)
            labels[f"r{i}"] = label
            truth[version].append((predicted, label))
    report = quality(records, labels)
    # THEN each version's accuracy is scikit-learn's on the same pairs
    assert report["metric"] == "accuracy"
    assert (report["labels"], report["matched"], report["unmatched"]) == (300, 300, 0)
    for version, pairs in truth.items():
        expected = accuracy_score([t for _, t in pairs], [p for p, _ in pairs])
        assert report["versions"][version] == {"labelled": len(pairs), "value": pytest.approx(expected)}
    # AND the windows are days, each version apart
    assert {w["start"][:10] for w in report["windows"]} == {"2026-12-01", "2026-12-02", "2026-12-03"}
    assert sum(w["labelled"] for w in report["windows"]) == 300


def test_numbers_are_scored_by_mean_absolute_error_and_batches_need_a_label_per_instance() -> None:
    records = [
        record("a", "1", [1.5, 2.5], "2026-12-01T00:00:00Z"),
        record("b", "1", [4.25], "2026-12-01T01:00:00Z"),
        record("c", "1", [3.0, 1.0], "2026-12-01T02:00:00Z"),
    ]
    labels = {"a": [1.0, 3.5], "b": 4.0, "c": 2.0, "unknown": 1.0}  # c: one label for two instances
    report = quality(records, labels, window="hour")
    assert report["metric"] == "mean absolute error"
    expected = mean_absolute_error([1.0, 3.5, 4.0], [1.5, 2.5, 4.25])
    assert report["versions"]["1"]["value"] == pytest.approx(expected)
    assert (report["matched"], report["unmatched"]) == (2, 2)
    assert len(report["windows"]) == 2


def test_the_callers_request_id_joins_when_the_record_has_api_gateways() -> None:
    captured = {**record("lambda-id", "1", ["x"], "2026-12-01T00:00:00Z"), "apiRequestId": "gateway-id"}
    assert quality([captured], {"gateway-id": "x"})["versions"]["1"]["value"] == 1.0
    with pytest.raises(ValueError, match="window"):
        quality([captured], {}, window="week")


def test_labels_are_stored_replaced_and_read_from_csv_or_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("request_id,label\nr1,sci.space\nr2,alt.atheism\n")
    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"requestId": "r2", "label": "rec.autos"}\n\n{"requestId": "r3", "label": [1, 2]}\n')
    store = Store(tmp_path / "state")
    try:
        assert record_labels(store, "news", read_label_file(csv_file)) == 2
        assert record_labels(store, "news", read_label_file(lines)) == 2
        assert labels_of(store, "news") == {"r1": "sci.space", "r2": "rec.autos", "r3": [1, 2]}
        assert labels_of(store, "other") == {}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("no-id.csv", "id_of_it,label\nr1,x\n", "request_id and label"),
        ("bad.jsonl", "{not json\n", "Line 1 is not JSON"),
        ("no-label.jsonl", '{"requestId": "r1"}\n', "Line 1 is not a label"),
    ],
)
def test_a_label_file_that_cannot_be_read_says_how_to_write_it(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LambdaserveError) as raised:
        read_label_file(path)
    assert says in f"{raised.value.message} {raised.value.hint}"


def test_an_empty_request_id_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    try:
        with pytest.raises(LambdaserveError, match="not a request id"):
            record_labels(store, "news", [("", "x")])
    finally:
        store.close()
