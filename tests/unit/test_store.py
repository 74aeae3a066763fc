"""The store alone: versions as Lambda publishes them, stages that roll back step by step,
keys kept only as hashes, and usage counted per UTC period."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaserve.errors import LambdaserveError
from lambdaserve.store import Store
from lambdaserve.store.catalog import Catalog
from lambdaserve.store.records import period_start


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state")
    yield store
    store.close()


def publish(store: Store, tmp_path: Path, content: bytes, name: str = "iris") -> tuple[int, bool]:
    model = tmp_path / "model.pickle"
    model.write_bytes(content)
    manifest = {"sha256": content.hex().ljust(64, "0")[:64], "format": "pickle"}
    record, created = store.add_version(name, manifest, model)
    return record.version, created


def test_the_same_content_again_publishes_no_new_version(store: Store, tmp_path: Path) -> None:
    assert publish(store, tmp_path, b"a") == (1, True)
    assert publish(store, tmp_path, b"a") == (1, False)
    assert publish(store, tmp_path, b"b") == (2, True)
    assert publish(store, tmp_path, b"a") == (3, True)  # as PublishVersion: only the latest counts
    assert [v.version for v in store.versions("iris")] == [1, 2, 3]


def test_a_stage_rolls_back_one_change_at_a_time_and_then_goes_away(store: Store, tmp_path: Path) -> None:
    for content in (b"a", b"b"):
        publish(store, tmp_path, content)
    store.set_alias("iris", "prod", 1)
    store.set_alias("iris", "prod", 1, canary_version=2, canary_weight=10)
    store.set_alias("iris", "prod", 2)
    steps = []
    for _ in range(3):
        alias = store.rollback("iris", "prod")
        steps.append(None if alias is None else (alias.version, alias.canary_version, alias.canary_weight))
    assert steps == [(1, 2, 10.0), (1, None, 0.0), None]
    with pytest.raises(LambdaserveError, match="no earlier state"):
        store.rollback("iris", "prod")


def test_a_key_is_kept_as_a_hash_and_found_by_its_value_until_revoked(store: Store, tmp_path: Path) -> None:
    plan = store.create_plan("p")
    key, value = store.create_key("alice", plan.id)
    assert value not in (key.hash, key.id)
    assert key.prefix == value[:6]
    assert store.find_key(value) == key
    catalog = Catalog(store)  # the server's view
    assert catalog.key(value) == key
    cli = Store(tmp_path / "state")  # another process revokes it
    cli.revoke_key("alice")
    cli.close()
    assert catalog.key(value) == key  # cached until the catalog looks...
    assert catalog.refresh()
    assert catalog.key(value) is None  # ...and sees the store changed
    assert not catalog.refresh()  # nothing new: nothing reloaded
    assert catalog.key("x" * 40) is None


def test_usage_is_counted_per_key_and_period(store: Store) -> None:
    wall = 1_796_300_000.0  # 2026-12-03
    today, week = period_start("DAY", wall), period_start("WEEK", wall)
    assert (today, week, period_start("MONTH", wall)) == (
        "DAY:2026-12-03",
        "WEEK:2026-11-30",
        "MONTH:2026-12-01",
    )
    store.save_usage({("k1", today): 3, ("k2", today): 5})
    store.save_usage({("k1", today): 4})
    assert (store.usage("k1", today), store.usage("k2", today), store.usage("k1", week)) == (4, 5, 0)


def test_the_default_plan_takes_serves_limits_and_its_key_is_made_once(store: Store) -> None:
    plan = store.default_plan("test", rate=5, quota="100/DAY")
    assert (plan.rate, plan.burst, plan.quota_limit, plan.quota_period) == (5, 5, 100, "DAY")
    first = store.default_key(plan)
    assert first is not None
    assert store.find_key(first) is not None
    assert store.default_key(store.default_plan("test")) is None  # limits kept, no second key
    assert store.plan("default").quota_limit == 100
