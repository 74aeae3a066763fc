"""Turn a request's instances into what a model's ``predict`` takes.

An instance is one of three kinds, and a batch holds one kind only:

- ``"text"``: a string, for text pipelines (``TfidfVectorizer`` and the like);
- ``"array"``: a flat array of scalars, one row of features in the model's order;
- ``"record"``: an object ``{feature: value}``, for models fitted on a DataFrame.

Everything here is checked before the model sees it, so the caller gets an error that
names the instance and the fix instead of whatever the model would raise.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from lambdaserve.runtime.errors import BadRequest, UnprocessableInput

_SCALARS = (str, int, float, bool, type(None))
_LARGEST_INT = int(sys.float_info.max)
_EXAMPLES = '["some text"], [[5.1, 3.5, 1.4, 0.2]] or [{"feature": 1.0}]'


def kind_of(instances: list[Any]) -> str:
    """Return the batch's kind, or raise BadRequest saying what is wrong and where."""
    if not instances:
        raise BadRequest(f"The batch is empty. Send at least one instance, e.g. {_EXAMPLES}.")
    kinds = {_kind_of_one(i, instance) for i, instance in enumerate(instances)}
    if len(kinds) > 1:
        raise BadRequest(
            "Instances in one request must all be of the same kind; this one mixes "
            + " and ".join(sorted(kinds))
            + ". Send one kind per request."
        )
    return kinds.pop()


def _kind_of_one(index: int, instance: Any) -> str:
    if isinstance(instance, str):
        return "text"
    if isinstance(instance, dict):
        for name, value in instance.items():
            if not isinstance(value, _SCALARS):
                raise BadRequest(
                    f"Instance {index}: the value of {name!r} is a {_json_type(value)}; "
                    "each feature takes a single string, number, boolean or null."
                )
            _check_number(index, value)
        return "record"
    if isinstance(instance, list):
        for value in instance:
            if not isinstance(value, _SCALARS):
                raise BadRequest(
                    f"Instance {index} is a nested array. Each instance is one flat row of "
                    "features, e.g. [[5.1, 3.5], [6.2, 2.9]] for a batch of two rows."
                )
            _check_number(index, value)
        return "array"
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        raise BadRequest(
            f"Instance {index} is a bare number. An array body is a batch of instances: to send "
            "one row of numbers, wrap it in another array, e.g. [[5.1, 3.5, 1.4, 0.2]]."
        )
    raise BadRequest(
        f"Instance {index} is a {_json_type(instance)}. Send instances as strings, "
        f"arrays of numbers or objects, e.g. {_EXAMPLES}."
    )


def _check_number(index: int, value: Any) -> None:
    """A number must fit a 64-bit float, as every model computes in one (1e400 reads as infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, int) and abs(value) <= _LARGEST_INT:
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    raise BadRequest(
        f"Instance {index} holds a number beyond what a 64-bit float holds (about 1.8e308). "
        "Send finite numbers."
    )


def check_width(rows: list[list[Any]], n_features: int | None, names: Sequence[str] | None) -> None:
    """Every array instance must have as many values as the model has features."""
    expected = len(names) if names else n_features
    if expected is None:
        return
    for i, row in enumerate(rows):
        if len(row) != expected:
            order = f" in this order: {', '.join(names)}" if names else ""
            raise UnprocessableInput(
                f"Instance {i} has {len(row)} values; this model takes {expected}{order}."
            )


def check_columns(records: list[dict[str, Any]], names: Sequence[str]) -> None:
    """Every record must name exactly the model's features: no missing, no unknown."""
    known = set(names)
    for i, record in enumerate(records):
        missing = [name for name in names if name not in record]
        unknown = sorted(set(record) - known)
        if missing or unknown:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(repr(n) for n in missing))
            if unknown:
                parts.append("unknown " + ", ".join(repr(n) for n in unknown))
            raise UnprocessableInput(
                f"Instance {i}: {'; '.join(parts)}. This model takes exactly these features: "
                + ", ".join(names)
                + "."
            )


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "value of an unsupported type"
