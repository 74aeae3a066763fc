"""Ground-truth labels sent after the fact, by the request id the caller got back.

``lambdaserve feedback --file`` and ``POST /_/api/models/{model}/feedback`` store them here
(table ``feedback``); ``monitoring/quality.py`` joins them to the captured predictions. A label
sent again for the same request replaces the first. Bounded: a model keeps its newest
``KEEP_LABELS`` labels; one call takes at most ``MAX_BATCH``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lambdaserve.errors import LambdaserveError
from lambdaserve.store.records import now
from lambdaserve.store.store import Store

KEEP_LABELS = 1_000_000
MAX_BATCH = 100_000
MAX_ID = 128
_ID_NAMES = ("request_id", "requestId", "request id", "id")


def record_labels(store: Store, model: str, labels: Iterable[tuple[str, Any]]) -> int:
    """Store ``(request id, label)`` pairs for ``model``; how many were stored."""
    rows = []
    for request_id, label in labels:
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID:
            raise LambdaserveError(
                f"{request_id!r} is not a request id.",
                "Give the x-amzn-RequestId header of the response the label is about.",
            )
        rows.append((model, request_id, json.dumps(label), now()))
        if len(rows) > MAX_BATCH:
            raise LambdaserveError(f"Over {MAX_BATCH:,} labels at once.", "Send them in several calls.")
    with store.transaction() as db:
        db.executemany("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)", rows)
        db.execute(
            "DELETE FROM feedback WHERE model = ? AND rowid NOT IN "
            "(SELECT rowid FROM feedback WHERE model = ? ORDER BY rowid DESC LIMIT ?)",
            (model, model, KEEP_LABELS),
        )
    return len(rows)


def labels_of(store: Store, model: str) -> dict[str, Any]:
    """The model's labels: request id -> label."""
    rows = store.db.execute("SELECT request_id, label FROM feedback WHERE model = ?", (model,))
    return {row["request_id"]: json.loads(row["label"]) for row in rows}


def read_label_file(path: Path) -> list[tuple[str, Any]]:
    """Labels from a CSV (a request id column and a ``label`` column) or JSON Lines
    (``{"requestId": ..., "label": ...}``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        hint = "Give a UTF-8 CSV or JSON Lines file."
        raise LambdaserveError(f"Cannot read {path}: {exc}.", hint) from None
    if path.suffix.lower() in (".jsonl", ".json"):
        return [_from_object(_json(line, number), number) for number, line in _lines(text)]
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    id_column = next((name for name in _ID_NAMES if name in header), None)
    if id_column is None or "label" not in header:
        raise LambdaserveError(
            f"{path.name} has the columns {', '.join(header) or 'none'}.",
            "Give a header with request_id and label, e.g. request_id,label.",
        )
    return [(row[id_column], row["label"]) for row in reader]


def _lines(text: str) -> Iterable[tuple[int, str]]:
    return ((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip())


def _json(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise LambdaserveError(
            f"Line {number} is not JSON.", 'Each line is {"requestId": "...", "label": ...}.'
        ) from None


def _from_object(value: Any, number: int) -> tuple[str, Any]:
    if not isinstance(value, dict) or "label" not in value:
        raise LambdaserveError(
            f"Line {number} is not a label.", 'Each line is {"requestId": "...", "label": ...}.'
        )
    request_id = next((value[name] for name in _ID_NAMES if name in value), None)
    return str(request_id) if request_id is not None else "", value["label"]
