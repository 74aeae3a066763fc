"""STAND-IN, branch ``drift`` only: the two readers ``monitoring/drift.py`` uses, with the
signatures and record format agreed for issue 15 part 1. The real module (prediction capture,
built on the ``capture`` branch) replaces this file on merge; nothing else here depends on how
it stores records. This stand-in reads JSON Lines from ``STATE/captures/MODEL.jsonl`` locally
and the function's CloudWatch Logs lines that are capture records remotely.

A record::

    {"lambdaserveCapture": 1, "time": "2026-12-03T14:00:00.123Z", "requestId": "...", "version": "3",
     "stage": "prod", "route": "predict", "instances": [...], "predictions": [...],
     "probabilities": [{"class": p}, ...] | null, "latencyMs": 1.2}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any


def _stamp(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))


def _keep(record: Any, since: datetime | None, stage: str | None) -> bool:
    if not isinstance(record, dict) or record.get("lambdaserveCapture") != 1:
        return False
    if stage is not None and record.get("stage") != stage:
        return False
    return since is None or _stamp(record) >= since


def read_records(
    state_dir: Path, model: str, *, since: datetime | None = None, stage: str | None = None
) -> Iterator[dict[str, Any]]:
    """The model's captured records on this machine, oldest first."""
    path = state_dir / "captures" / f"{model}.jsonl"
    if not path.is_file():
        return
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if _keep(record, since, stage):
                records.append(record)
    yield from sorted(records, key=_stamp)


def remote_records(
    aws_logs_client: Any, log_group: str, *, since: datetime, stage: str | None = None
) -> Iterator[dict[str, Any]]:
    """The capture records the deployed function printed to CloudWatch Logs since ``since``."""
    paginator = aws_logs_client.get_paginator("filter_log_events")
    pages = paginator.paginate(
        logGroupName=log_group,
        startTime=int(since.timestamp() * 1000),
        filterPattern="{ $.lambdaserveCapture = 1 }",
    )
    records = []
    for page in pages:
        for event in page.get("events", []):
            try:
                record = json.loads(event["message"])
            except (json.JSONDecodeError, KeyError):
                continue
            if _keep(record, since, stage):
                records.append(record)
    yield from sorted(records, key=_stamp)
