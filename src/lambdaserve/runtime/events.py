"""Read a prediction request out of a Lambda event.

Two event shapes arrive here:

- an API Gateway REST proxy event: ``body`` is a string (base64 when
  ``isBase64Encoded`` is true) and ``resource`` / ``path`` say which route was called;
- a direct invocation, as in ``lambda_client.invoke(Payload=json.dumps({"body": [...]}))``:
  ``body`` is already parsed JSON.

The body is a batch when it is a JSON array; any other value is one instance.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from lambdaserve.runtime.errors import BadRequest, PayloadTooLarge

# Lambda refuses synchronous invocation payloads over 6 MB (6,291,456 bytes).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024

_HOW = 'Send a JSON array of instances, e.g. ["some text"] or [[5.1, 3.5, 1.4, 0.2]].'


Route = Literal["predict", "predict_proba", "explain"]


@dataclass(frozen=True)
class PredictionRequest:
    instances: list[Any]  # for explain: the body as sent (instances, or options with them)
    route: Route = "predict"

    @property
    def wants_proba(self) -> bool:
        return self.route == "predict_proba"


def parse_event(event: Any) -> PredictionRequest:
    """Return the request's instances and route, or raise a RequestError."""
    if not isinstance(event, dict):
        raise BadRequest(
            "The event must be an object with a 'body', as API Gateway sends it. When invoking "
            'the function directly, wrap the instances: {"body": ["some text"]}.'
        )
    route = route_of(event)
    payload = _payload(event)
    if payload is None:
        raise BadRequest(f"The body is null. {_HOW}")
    if route == "explain":
        return PredictionRequest(instances=payload, route=route)
    instances = payload if isinstance(payload, list) else [payload]
    return PredictionRequest(instances=instances, route=route)


def route_of(event: Any) -> Route:
    """Which route an event was sent to: the last part of its resource or path."""
    if not isinstance(event, dict):
        return "predict"
    path = event.get("resource") or event.get("path") or event.get("rawPath")
    last = path.rstrip("/").rsplit("/", 1)[-1] if isinstance(path, str) else ""
    return "predict_proba" if last == "predict_proba" else "explain" if last == "explain" else "predict"


def _payload(event: dict[str, Any]) -> Any:
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest(f"The request has no body. {_HOW}")
    if not isinstance(body, str):
        return body  # direct invocation: already parsed
    if len(body) > MAX_PAYLOAD_BYTES // 4 and len(body.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge()
    text = _decode_base64(body) if event.get("isBase64Encoded") else body
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except _NotJSON as exc:
        raise BadRequest(
            f"The body contains {exc}, which JSON does not allow. Send null for a missing value."
        ) from None
    except json.JSONDecodeError as exc:
        hint = ""
        if text[:1] not in ("[", "{", '"') and not text[:1].isdigit():
            hint = ' To send one text, quote it as a JSON string: "some text", or ["some text"].'
        raise BadRequest(
            f"The body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). {_HOW}{hint}"
        ) from None
    except RecursionError:
        raise BadRequest(
            f"The body nests arrays or objects too deeply to read. An instance is one flat row. {_HOW}"
        ) from None
    except ValueError as exc:  # Python's limit on integer digits (4,300)
        raise BadRequest(f"The body holds a number that cannot be read: {exc}. {_HOW}") from None


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json module accepts NaN and Infinity; JSON (and every other client) does not.
    raise _NotJSON(name)


def _decode_base64(body: str) -> str:
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("isBase64Encoded is true but the body is not valid base64.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body is not UTF-8 text. Send JSON encoded as UTF-8.") from None
