"""How joblib lays arrays out inside its pickle stream, so a scan can step over them.

After each ``NumpyArrayWrapper`` is built, joblib reads the array's bytes straight from the
file: a padding byte and padding, then ``count * itemsize`` raw bytes; for object arrays,
a nested pickle instead. A scan must skip exactly what joblib reads, by numpy's rules
for item sizes, or it would read array bytes as opcodes.
"""

from __future__ import annotations

import re
from typing import IO, Any

from lambdaserve.bundle.pickle_values import PickledCall, ScanError, global_key

JOBLIB_ARRAY_WRAPPERS = {("joblib.numpy_pickle", "NumpyArrayWrapper")}


def mentions_wrapper(value: Any, depth: int = 0) -> bool:
    if global_key(value) in JOBLIB_ARRAY_WRAPPERS:
        return True
    if isinstance(value, (tuple, list)) and depth < 4:
        return any(mentions_wrapper(v, depth + 1) for v in value)
    return False


def dtype_layout(dtype: Any) -> tuple[int, bool]:
    """(item size, holds Python objects) of a pickled ``numpy.dtype``, as numpy decides them.

    The sizes must be numpy's, not the file's: joblib reads ``dtype.itemsize`` bytes per
    item, and a scan that skipped any other count would lose its place in the stream.
    numpy takes the element size from the state only for flexible types (bytes, unicode,
    void); for every other type it comes from the type code ('f8' is 8 bytes whatever the
    state says), and only 'O' holds objects.
    """
    if not (isinstance(dtype, PickledCall) and isinstance(dtype.args, tuple) and dtype.args):
        raise ScanError("a joblib array with an unreadable dtype")
    descr = dtype.args[0]
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    if not isinstance(descr, str) or not descr:
        raise ScanError("a joblib array with an unreadable dtype")
    if (len(state) > 4 and state[4] is not None) or (len(state) > 2 and state[2] is not None):
        return _compound_layout(state)
    if descr[0] in "SUVa":
        elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
        if elsize <= 0:
            raise ScanError(f"a joblib array of dtype {descr!r} without its size")
        return elsize, False
    digits = re.fullmatch(r"[a-zA-Z?]+(\d+)", descr)
    if not digits:
        raise ScanError(f"a joblib array of dtype {descr!r}, which the scan cannot size")
    return int(digits.group(1)), descr[0] == "O"


def _compound_layout(state: tuple[Any, ...]) -> tuple[int, bool]:
    """A structured dtype (fields: decision trees' nodes) or a sub-array dtype.

    numpy's state holds the whole item's size (``elsize``), and the fields' or the
    sub-array's own dtypes: the item holds objects if any of them does.
    """
    elsize = state[5] if len(state) > 5 else None
    if not isinstance(elsize, int) or elsize <= 0:
        raise ScanError("a joblib array of a structured dtype without its size")
    parts: list[Any] = []
    fields = state[4] if len(state) > 4 else None
    if isinstance(fields, dict):
        parts += [field[0] for field in fields.values() if isinstance(field, tuple) and field]
    elif fields is not None:
        raise ScanError("a joblib array of a structured dtype with unreadable fields")
    subarray = state[2]
    if isinstance(subarray, tuple) and subarray:
        parts.append(subarray[0])
    elif subarray is not None:
        raise ScanError("a joblib array of a sub-array dtype that cannot be read")
    return elsize, any(dtype_layout(part)[1] for part in parts)


def skip_bytes(stream: IO[bytes], size: int) -> None:
    while size > 0:
        chunk = stream.read(min(size, 1 << 24))
        if not chunk:
            raise ScanError("the file ends inside a joblib array")
        size -= len(chunk)
