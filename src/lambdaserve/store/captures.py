"""Capture rates of the stages served here: the fraction of requests whose record the handler
writes (``runtime/capture.py``), per (model, stage), in the store's SQLite (table ``captures``).

``serve --capture``, ``lambdaserve capture set`` and the admin API write them; the gateway's
``Catalog`` reads them with the rest of the state and puts the stage's rate into each event it
builds, as the stage variable ``lambdaserveCapture``, the way API Gateway passes a stage's
variables. A rate of 0 removes the row: capture is off unless a row says otherwise.
"""

from __future__ import annotations

from lambdaserve.errors import LambdaserveError
from lambdaserve.store.records import check_stage, now
from lambdaserve.store.store import Store


def set_capture_rate(store: Store, model: str, stage: str, rate: float) -> float:
    """Capture ``rate`` (0 to 1) of ``model``'s requests on ``stage``; 0 turns capture off."""
    check_stage(stage)
    if not 0.0 <= rate <= 1.0:
        raise LambdaserveError(
            f"A capture rate is a fraction from 0 to 1, not {rate!r}.", "e.g. 0.1 for 10%, 0 for off."
        )
    with store.transaction() as db:
        if rate == 0.0:
            db.execute("DELETE FROM captures WHERE model = ? AND stage = ?", (model, stage))
        else:
            db.execute("INSERT OR REPLACE INTO captures VALUES (?, ?, ?, ?)", (model, stage, rate, now()))
    return rate


def capture_rates(store: Store, model: str | None = None) -> dict[tuple[str, str], float]:
    """(model, stage) -> rate, for the stages whose capture is on."""
    query = "SELECT model, stage, rate FROM captures" + (" WHERE model = ?" if model else "")
    return {(r[0], r[1]): float(r[2]) for r in store.db.execute(query, (model,) if model else ())}
