"""A model's drift report, as ``lambdaserve drift`` prints it and ``GET /_/api/models/{m}/drift``
returns it: the captured records of a period, the reference of the version that answered them,
and ``drift.drift_report`` between the two.

Which reference: the version that answered the newest captured record, when the store has it
with a drift section; else the version the stage serves; else the newest version with one.
Records answered by other versions are compared with the same reference: a new version
trained on other data is a new reference, and the report says which one it used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from lambdaserve.monitoring.drift import drift_report
from lambdaserve.store import Store


def reference_of(
    store: Store, model: str, stage: str | None, records: list[Mapping[str, Any]]
) -> tuple[int | None, dict[str, Any] | None]:
    """The version whose reference the records are compared with, and its drift section."""
    versions = {v.version: v for v in store.versions(model)}

    def drift_of(number: int | None) -> dict[str, Any] | None:
        version = versions.get(number) if number is not None else None
        reference = version.manifest.get("reference") if version else None
        section = reference.get("drift") if isinstance(reference, dict) else None
        return section if isinstance(section, dict) else None

    candidates: list[int | None] = []
    if records and str(records[-1].get("version", "")).isdigit():
        candidates.append(int(str(records[-1]["version"])))
    alias = store.alias(model, stage) if stage else None
    if alias is not None:
        candidates.append(alias.version)
    candidates.extend(sorted(versions, reverse=True))
    for number in candidates:
        section = drift_of(number)
        if section is not None:
            return number, section
    return None, None


def model_drift(
    store: Store,
    model: str,
    records: Iterable[Mapping[str, Any]],
    *,
    stage: str | None,
    since: datetime,
    window: str,
    source: str = "local",
) -> dict[str, Any]:
    """The drift report of ``model``'s captured ``records`` (oldest first), as plain JSON."""
    kept = list(records)
    version, reference = reference_of(store, model, stage, kept)
    report = drift_report(kept, reference, window=window)
    return {
        "model": model,
        "stage": stage,
        "source": source,
        "since": since.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "reference": None
        if reference is None
        else {"version": version, "n_rows": reference.get("n_rows"), "input": reference.get("input")},
        **report,
    }
