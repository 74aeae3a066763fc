"""Build API Gateway proxy responses with bodies that are always valid JSON.

Models return numpy arrays and scalars, pandas objects, NaN and infinities; JSON has
none of these. ``to_json`` keeps the common case on the fast path (plain lists of
finite numbers and strings) and cleans the rest: numpy values become Python ones,
NaN and infinities become null, anything else becomes its string.
"""

from __future__ import annotations

import json
import math
from typing import Any

JSON_HEADERS = {"Content-Type": "application/json"}


def proxy_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The dict Lambda returns for an API Gateway proxy integration."""
    return {
        "statusCode": status,
        "headers": {**JSON_HEADERS, **(headers or {})},
        "body": to_json(body),
        "isBase64Encoded": False,
    }


def to_json(value: Any) -> str:
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not hasattr(value, "columns"):
        value = tolist()  # a model's numpy output: plain lists go straight to json.dumps
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(jsonable(value), allow_nan=False, separators=(",", ":"))


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types (recursively)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    if hasattr(value, "columns") and callable(getattr(value, "to_dict", None)):  # a DataFrame: rows
        return jsonable(value.to_dict(orient="records"))
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, pandas objects
    if callable(tolist):
        return jsonable(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return jsonable(item())
    return str(value)


def _key(key: Any) -> str:
    """Spell a dict key as json.dumps would: True -> "true", None -> "null", 1.5 -> "1.5"."""
    return (
        key
        if isinstance(key, str)
        else json.dumps(key)
        if key is None or isinstance(key, (bool, int, float))
        else str(key)
    )
