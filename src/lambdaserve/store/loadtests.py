"""The load tests run against a model served here: a summary and a per-second timeline each,
the last ``KEEP_RUNS`` per model, in the store's SQLite (table ``loadtests``).

``lambdaserve loadtest`` records a run; the admin API and the console's monitoring page read
them; ``lambdaserve cost --from-loadtest latest`` prices from the latest. A timeline point is
``loadgen.Second``: ``t``, ``requests``, ``p50``, ``p99``, ``errors``, ``throttled``. Each run is bounded:
a timeline has at most one point per second of a run (``loadtest --duration`` is at most 600
s), and a model keeps ``KEEP_RUNS`` runs, the oldest removed in the transaction that adds one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from lambdaserve.store.records import now
from lambdaserve.store.store import Store

KEEP_RUNS = 20
MAX_POINTS = 600  # one a second: the longest run loadtest allows


def record_loadtest(
    store: Store, model: str, summary: Mapping[str, Any], timeline: Sequence[Mapping[str, Any]]
) -> int:
    """Keep a run of ``model``; returns its id. Older runs past ``KEEP_RUNS`` are removed."""
    with store.transaction() as db:
        cursor = db.execute(
            "INSERT INTO loadtests (model, at, summary, timeline) VALUES (?, ?, ?, ?)",
            (model, summary.get("at") or now(), json.dumps(summary), json.dumps(list(timeline[:MAX_POINTS]))),
        )
        db.execute(
            "DELETE FROM loadtests WHERE model = ? AND id NOT IN "
            "(SELECT id FROM loadtests WHERE model = ? ORDER BY id DESC LIMIT ?)",
            (model, model, KEEP_RUNS),
        )
    return int(cursor.lastrowid or 0)


def loadtests(store: Store, model: str) -> list[dict[str, Any]]:
    """The model's recorded runs, newest first: their summaries, without timelines."""
    rows = store.db.execute(
        "SELECT id, at, summary FROM loadtests WHERE model = ? ORDER BY id DESC", (model,)
    ).fetchall()
    return [{**json.loads(row["summary"]), "id": row["id"], "at": row["at"]} for row in rows]


def latest_loadtest(store: Store, model: str) -> dict[str, Any] | None:
    """The model's newest run: its summary, with ``timeline``; None when it has none."""
    row = store.db.execute(
        "SELECT id, at, summary, timeline FROM loadtests WHERE model = ? ORDER BY id DESC LIMIT 1", (model,)
    ).fetchone()
    if row is None:
        return None
    return {
        **json.loads(row["summary"]),
        "id": row["id"],
        "at": row["at"],
        "timeline": json.loads(row["timeline"]),
    }
