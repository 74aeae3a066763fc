"""Capture records kept locally: parsing a rate, the bounded files, reading them back, the store's rates."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.logbook import LogBook, log_path
from lambdaserve.monitoring.capture import (
    append_records,
    capture_path,
    format_rate,
    is_capture_line,
    parse_rate,
    read_records,
)
from lambdaserve.store import Store
from lambdaserve.store.captures import capture_rates, set_capture_rate
from lambdaserve.store.catalog import Catalog


def record(n: int, stage: str = "prod", time: str = "2026-12-03T14:00:00.000Z", pad: int = 0) -> str:
    return json.dumps(
        {"lambdaserveCapture": 1, "time": time, "requestId": f"r{n}", "version": "1", "stage": stage,
         "route": "predict", "instances": ["x" * pad], "predictions": [n], "probabilities": None,
         "latencyMs": 1.0}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "rate"), [("10%", 0.1), ("0.1", 0.1), ("off", 0.0), ("0", 0.0), ("100%", 1.0), ("1", 1.0)]
)
def test_a_rate_reads_as_a_percentage_a_fraction_or_off(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize(("text", "hint"), [("10", "10%"), ("ten", "10%"), ("150%", "0.1"), ("-1%", "off")])
def test_other_rates_are_refused_saying_what_to_write(text: str, hint: str) -> None:
    with pytest.raises(LambdaserveError) as refused:
        parse_rate(text)
    assert hint in f"{refused.value.message} {refused.value.hint}"


def test_a_rate_is_shown_as_people_write_it() -> None:
    assert [format_rate(r) for r in (0.0, 0.01, 0.1, 1.0)] == ["off", "1%", "10%", "100%"]


def test_the_files_stay_under_the_cap_dropping_the_oldest_records_first(tmp_path: Path) -> None:
    # GIVEN a cap of 2 KB and records of about 300 bytes
    cap = 2048
    for n in range(40):
        append_records(tmp_path, "news", [record(n, pad=100)], cap)
        current = capture_path(tmp_path, "news")
        older = current.with_name(current.name + ".1")
        # THEN neither file ever passes the cap
        assert current.stat().st_size <= cap
        assert not older.exists() or older.stat().st_size <= cap
    # AND the records kept are the newest, in order, with no gap
    kept = [r["requestId"] for r in read_records(tmp_path, "news")]
    assert kept == [f"r{n}" for n in range(40 - len(kept), 40)]
    assert 8 <= len(kept) < 40


def test_reading_skips_damaged_lines_and_filters_by_time_and_stage(tmp_path: Path) -> None:
    path = capture_path(tmp_path, "news")
    path.parent.mkdir(parents=True)
    path.with_name(path.name + ".1").write_text(record(1, time="2026-12-01T00:00:00.000Z") + "\n")
    lines = [
        record(2, time="2026-12-02T00:00:00.000Z"),
        '{"lambdaserveCapture": 1, "time": "2026-12-0',  # cut short by a crash
        "not a record",
        record(3, stage="test", time="2026-12-03T00:00:00.000Z"),
        record(4, time="2026-12-04T00:00:00.000Z"),
    ]
    path.write_text("\n".join(lines) + "\n")
    assert [r["requestId"] for r in read_records(tmp_path, "news")] == ["r1", "r2", "r3", "r4"]
    since = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    assert [r["requestId"] for r in read_records(tmp_path, "news", since=since)] == ["r3", "r4"]
    assert [r["requestId"] for r in read_records(tmp_path, "news", stage="prod")] == ["r1", "r2", "r4"]
    assert list(read_records(tmp_path, "unknown")) == []


def test_the_log_book_sends_records_to_the_capture_file_and_the_rest_to_the_log(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    lines = ["START RequestId: r1 Version: 1", '{"requestId": "r1"}', record(1), "END RequestId: r1"]
    book.write("news", lines)
    assert not any(is_capture_line(line.split("\t", 1)[1]) for line in book.recent("news"))
    book.flush()
    assert "lambdaserveCapture" not in log_path(tmp_path, "news").read_text()
    assert capture_path(tmp_path, "news").read_text() == record(1) + "\n"  # unstamped, one per line


def test_the_log_book_holds_at_most_a_file_of_records_between_flushes(tmp_path: Path) -> None:
    book = LogBook(tmp_path, capture_bytes=1024)
    book.write("news", [record(n) for n in range(100)])
    book.flush()
    assert capture_path(tmp_path, "news").stat().st_size <= 1024


def test_rates_are_kept_per_model_and_stage_and_the_catalog_sees_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    other = Store(tmp_path / "state")  # the CLI, beside a server
    try:
        catalog = Catalog(store)
        assert catalog.captures == {}
        set_capture_rate(other, "news", "prod", 0.1)
        set_capture_rate(other, "news", "test", 1.0)
        catalog.refresh()
        assert catalog.captures == {("news", "prod"): 0.1, ("news", "test"): 1.0}
        set_capture_rate(other, "news", "test", 0.0)  # off: no row
        assert capture_rates(store) == {("news", "prod"): 0.1}
        with pytest.raises(LambdaserveError):
            set_capture_rate(store, "news", "prod", 10.0)
    finally:
        store.close()
        other.close()
