"""A reference sample of the training data: read it, bounded, for the package step.

``package --reference train.csv`` (or ``.jsonl``, ``.json``) gives the training data's
distribution, which LIME needs to perturb tabular rows and ``lambdaserve drift`` compares
captured requests with. A text model's reference is JSON Lines of strings (one post per
line), or a CSV of one column of texts (or with a ``text`` column beside others).
The rows are read here, bounded, and handed to the model's execution environment, which
checks them as ``/predict`` would and keeps only summary statistics
(``runtime/reference.py`` for LIME, ``runtime/distributions.py`` for drift): the bundle stores
the statistics, never the rows.

The statistics travel to the function as a JSON file: ``reference_file`` writes it once
under a name made of its content hash, in the bundle, the store or the S3 bucket's place.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from lambdaserve.errors import LambdaserveError

MAX_FILE_BYTES = 200 * 1000 * 1000
MAX_ROWS = 10_000  # more are sampled down to this many (seeded): quartiles need no more
_SUFFIXES = (".csv", ".jsonl", ".json")


def read_rows(path: Path) -> tuple[list[Any], int]:
    """The instances in ``path`` (at most MAX_ROWS, sampled), and how many it held."""
    if not path.is_file():
        raise LambdaserveError(f"{path} is not a file.", "Give a CSV or JSON Lines file of training rows.")
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise LambdaserveError(
            f"Cannot read a reference from {path.name}.",
            "Give a .csv file with a header row of feature names, or .jsonl (one instance per line).",
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LambdaserveError(
            f"{path.name} is {size / 1e6:.0f} MB; a reference is read up to {MAX_FILE_BYTES / 1e6:.0f} MB.",
            f"Give a sample of the training data ({MAX_ROWS:,} rows are plenty).",
        )
    try:
        rows = _csv_rows(path) if suffix == ".csv" else _json_rows(path, suffix)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        hint = "Give UTF-8 CSV or JSON Lines."
        raise LambdaserveError(f"{path.name} could not be read: {exc}.", hint) from None
    if not rows:
        raise LambdaserveError(f"{path.name} holds no rows.", "Give a sample of the training data.")
    total = len(rows)
    if total > MAX_ROWS:
        rows = random.Random(0).sample(rows, MAX_ROWS)
    return rows, total


def _csv_rows(path: Path) -> list[Any]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return []
        rows = []
        for number, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) != len(header):
                raise LambdaserveError(
                    f"{path.name}, line {number}: {len(values)} values under {len(header)} column names.",
                    "Give every row one value per column of the header.",
                )
            rows.append({name: _number(value) for name, value in zip(header, values, strict=True)})
        if len(header) == 1 and all(isinstance(row[header[0]], str) for row in rows):
            return [row[header[0]] for row in rows]  # one column of strings: a text model's texts
        return rows


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _json_rows(path: Path, suffix: str) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise LambdaserveError(f"{path.name} is not a JSON array of instances.", "Give [row, row, ...].")
        return data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def reference_file(summary: dict[str, Any], directory: Path) -> Path:
    """``summary`` as ``reference-<sha256>.json`` in ``directory`` (written once)."""
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = directory / f"reference-{digest[:16]}.json"
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        staging.write_text(text)
        staging.rename(path)
    return path
