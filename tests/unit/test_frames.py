"""Invoke frames carry text bodies as raw bytes after their JSON: the environment rebuilds
exactly the event the gateway meant, whatever the body holds."""

from __future__ import annotations

import base64
import io
import json
import struct
from typing import Any

import pytest

from lambdaserve.runtime.apigw import compact, expand, raw_bodies
from lambdaserve.runtime.forkserver import receive


def frame(message: dict[str, Any], tail: bytes) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("<I", len(data)) + data + tail


def without_clock(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what expand draws afresh each time (the request's time, its id)."""
    context = {k: v for k, v in event["requestContext"].items() if k not in CLOCK}
    return {**event, "requestContext": context}


CLOCK = ("requestTime", "requestTimeEpoch", "extendedRequestId", "requestId")


def through_the_wire(events: list[Any]) -> list[Any]:
    """What the environment expands, after the gateway's raw_bodies and the socket."""
    sent, tail = raw_bodies(events)
    message = {"type": "invoke", "requestIds": ["r"] * len(events), "events": sent, "tail": len(tail)}
    stream = io.BytesIO(frame(message, tail) + frame({"type": "describe"}, b""))
    received = receive(stream)
    assert received is not None
    assert receive(stream) == {"type": "describe"}  # the next frame starts where the tail ends
    return [expand(event, received["tail"]) for event in received["events"]]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('["the space shuttle"]', id="ascii"),
        pytest.param('["Grüße, 東京 🚀\\n", "\\"quoted\\""]\n', id="non-ascii-escapes-newlines"),
        pytest.param("", id="empty"),
        pytest.param(None, id="no-body"),
        pytest.param(b"\x00\xffbinary", id="bytes-as-base64"),
        pytest.param("lone \udcff surrogate", id="lone-surrogate-stays-in-json"),
    ],
)
def test_each_body_arrives_as_it_was_sent(body: str | bytes | None) -> None:
    # GIVEN two compact events of one message, the first with the body under test
    events = [
        compact(body, model="news", stage="test", route="predict", request_id="a"),
        compact('["second"]', model="news", stage="test", route="predict", request_id="b"),
    ]
    # WHEN they cross the wire
    arrived = through_the_wire(events)
    # THEN each expands to the event it would have been in JSON (ids and times aside)
    expected = [expand(json.loads(json.dumps(e))) for e in events]
    assert [without_clock(e) for e in arrived] == [without_clock(e) for e in expected]
    assert arrived[0]["body"] == (base64.b64encode(body).decode() if isinstance(body, bytes) else body)


def test_text_bodies_leave_the_json_and_other_events_pass_as_they_are() -> None:
    whole = {"body": "a handler's own event", "httpMethod": "POST"}
    sent, tail = raw_bodies([compact("[1, 2]", model="m", stage="s"), whole])
    assert tail == b"[1, 2]"
    assert sent[0]["lambdaserve.http"]["body"] is None
    assert sent[0]["lambdaserve.http"]["bodyAt"] == [0, 6]
    assert sent[1] is whole


def test_a_frame_cut_short_in_its_tail_is_the_end_of_the_stream() -> None:
    sent, tail = raw_bodies([compact('["x"]', model="m", stage="s")])
    message = {"type": "invoke", "requestIds": ["r"], "events": sent, "tail": len(tail)}
    assert receive(io.BytesIO(frame(message, tail)[:-1])) is None
