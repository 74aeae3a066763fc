"""Prediction capture: a sampled record of what the model was asked and what it answered.

A captured request gets one JSON line on the handler's stdout, which is the function's log
stream on AWS (CloudWatch Logs) and the local gateway's log book, where it goes to the
capture file instead (``monitoring/capture.py``)::

    {"lambdaserveCapture": 1, "time": "2026-12-03T14:00:00.123Z", "requestId": "...", "version": "3",
     "stage": "prod", "route": "predict", "instances": [...], "predictions": [...],
     "probabilities": [{"class": p, ...}, ...] | null, "latencyMs": 1.234}

The rate is a fraction per request: the event's stage variable ``lambdaserveCapture`` ("0.1",
set by ``deploy --capture`` on AWS and by the local gateway from its store), else the
variable ``LAMBDASERVE_CAPTURE``, else 0 (off). Off costs one dict lookup per request and
no random draw. A record over 64 KB is not written; the request's log line says
``"captureSkipped": 1`` instead.

Standard library only: it runs in the Lambda image with the rest of ``runtime/``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

STAGE_VARIABLE = "lambdaserveCapture"  # API Gateway stage variable names: letters, digits, _
ENVIRONMENT_VARIABLE = "LAMBDASERVE_CAPTURE"
MAX_RECORD_BYTES = 64 * 1024
MARKER = "lambdaserveCapture"  # the record's first key: readers recognise a line by it


def fraction(text: object) -> float:
    """A rate as the stage variable or the environment holds it ("0.1"); 0 for anything else.

    A rate is checked where it is set (``lambdaserve capture set``, ``deploy --capture``), so a
    value that does not read as a fraction from 0 to 1 can only come from a hand edit: it is
    taken as off rather than failing requests.
    """
    try:
        rate = float(str(text))
    except ValueError:
        return 0.0
    return rate if 0.0 <= rate <= 1.0 else 0.0


class CaptureSampler:
    """Decides which requests are captured and writes their records.

    ``rng`` (uniform on [0, 1)) and ``wall`` (seconds since the epoch) are injected by tests.
    """

    def __init__(
        self,
        default_rate: float = 0.0,
        *,
        rng: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.default_rate = default_rate
        self.rng = rng
        self.wall = wall
        self._parsed: dict[str, float] = {}  # stage variable text -> rate

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> CaptureSampler:
        return cls(fraction(environ.get(ENVIRONMENT_VARIABLE) or "0"))

    def rate(self, event: Any) -> float:
        """The event's rate: its stage variable, else the environment's."""
        variables = event.get("stageVariables") if isinstance(event, dict) else None
        if variables:
            text = variables.get(STAGE_VARIABLE)
            if text is not None:
                rate = self._parsed.get(text)
                if rate is None:
                    rate = fraction(text)
                    if len(self._parsed) < 64:  # a few values in practice; bounded whatever comes
                        self._parsed[text] = rate
                return rate
        return self.default_rate

    def sampled(self, event: Any) -> bool:
        """Whether to capture this request: a draw of the rng, only when the rate is not 0."""
        rate = self.rate(event)
        return rate > 0.0 and (rate >= 1.0 or self.rng() < rate)

    def record(
        self,
        *,
        request_id: str,
        version: str,
        stage: str | None,
        route: str,
        instances: list[Any],
        predictions: Any,
        probabilities: Any,
        latency_ms: float,
        api_request_id: str | None = None,
    ) -> str | None:
        """The record as one JSON line, or None when it is over ``MAX_RECORD_BYTES``."""
        stamp = datetime.fromtimestamp(self.wall(), timezone.utc)
        record = {
            MARKER: 1,
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestId": request_id,
            # API Gateway's id, the x-amzn-RequestId its caller got (on AWS not Lambda's): labels
            # sent later name the request by it (monitoring/quality.py)
            **({"apiRequestId": api_request_id} if api_request_id else {}),
            "version": version,
            "stage": stage,
            "route": route,
            "instances": instances,
            "predictions": predictions,
            "probabilities": probabilities,
            "latencyMs": round(latency_ms, 3),
        }
        text = json.dumps(record, allow_nan=False)
        if len(text) > MAX_RECORD_BYTES // 4 and len(text.encode("utf-8")) > MAX_RECORD_BYTES:
            return None
        return text


def api_request_id_of(event: Any) -> str | None:
    """API Gateway's request id in a proxy event (``requestContext.requestId``)."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    found = context.get("requestId") if isinstance(context, dict) else None
    return found if isinstance(found, str) else None


def stage_of(event: Any) -> str | None:
    """The API Gateway stage an event came through; None for a direct invocation."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    stage = context.get("stage") if isinstance(context, dict) else None
    return stage if isinstance(stage, str) else None
