"""Usage plans in the store: their stages, the default plan, and state directories made
before plans had stages (migrated in place so that their keys keep working where they did)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lambdaserve.errors import LambdaserveError
from lambdaserve.store import Store
from lambdaserve.store.records import check_stages

# The tables as they were before plans had stages (lambdaserve 0.x, until 2026-12).
OLD_SCHEMA = """
CREATE TABLE plans (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, rate REAL, burst INTEGER,
    quota_limit INTEGER, quota_period TEXT, created TEXT NOT NULL);
CREATE TABLE keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    plan_id TEXT, enabled INTEGER NOT NULL DEFAULT 1, created TEXT NOT NULL, revoked TEXT);
CREATE TABLE aliases (
    model TEXT NOT NULL, stage TEXT NOT NULL, version INTEGER NOT NULL,
    canary_version INTEGER, canary_weight REAL NOT NULL DEFAULT 0, updated TEXT NOT NULL,
    PRIMARY KEY (model, stage));
INSERT INTO plans VALUES ('p1', 'basic', 5, 10, NULL, NULL, '2026-11-01T00:00:00+00:00');
INSERT INTO keys VALUES ('k1', 'alice', 'abcdef', 'h1', 'p1', 1, '2026-11-01T00:00:00+00:00', NULL);
INSERT INTO keys VALUES ('k2', 'bob', 'ghijkl', 'h2', NULL, 1, '2026-11-01T00:00:00+00:00', NULL);
INSERT INTO aliases VALUES ('iris', 'prod', 1, NULL, 0, '2026-11-01T00:00:00+00:00');
INSERT INTO aliases VALUES ('iris', 'staging', 1, NULL, 0, '2026-11-01T00:00:00+00:00');
"""


def test_plans_made_before_stages_keep_working_on_every_stage_the_store_knows(tmp_path: Path) -> None:
    # GIVEN a state directory from before plans had stages: a plan, a key in it, a key in none
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "state.db") as db:
        db.executescript(OLD_SCHEMA)
    # WHEN a new lambdaserve opens it (twice: the second finds it done)
    Store(state).close()
    store = Store(state)
    # THEN the plan is attached to every stage served, and test; the planless key joins default
    assert store.plan("basic").stages == ("prod", "staging", "test")
    keys = {k.name: k for k in store.api_keys()}
    default = store.plan("default")
    assert (keys["alice"].plan_id, keys["bob"].plan_id) == ("p1", default.id)
    assert (default.stages, default.rate, default.quota_limit) == (("prod", "staging", "test"), None, None)
    store.close()


def test_the_default_plan_is_made_on_the_stage_asked_for_and_gains_others(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    assert store.default_plan("prod").stages == ("prod",)
    assert store.default_plan("test").stages == ("prod", "test")
    assert store.default_plan("prod").stages == ("prod", "test")
    assert [p.name for p in store.plans()] == ["default"]
    store.close()


def test_a_key_is_always_in_a_plan(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with pytest.raises(LambdaserveError, match="No usage plan 'missing'"):
        store.create_key("carol", "missing")
    store.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [(["test"], ("test",)), ([" prod ", "test", "prod"], ("prod", "test")), (["a-b_1"], ("a-b_1",))],
)
def test_stages_are_checked_trimmed_and_kept_once_in_order(
    given: list[str], expected: tuple[str, ...]
) -> None:
    assert check_stages(given) == expected


@pytest.mark.parametrize("given", [[], [""], ["_"], ["prod/v2"], ["x" * 129]])
def test_bad_stage_lists_are_refused(given: list[str]) -> None:
    with pytest.raises(LambdaserveError):
        check_stages(given)


def test_the_state_directory_and_database_are_private_to_their_owner(tmp_path: Path) -> None:
    # GIVEN a state directory made now, and one an older lambdaserve left open to everyone
    fresh = Store(tmp_path / "fresh")
    fresh.create_plan("written")  # the WAL and shared-memory files exist from the first write
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    sqlite3.connect(old / "state.db").close()
    (old / "state.db").chmod(0o644)
    # WHEN a lambdaserve opens them
    reopened = Store(old)
    # THEN only their owner may enter the directory or read the database and its files
    for root in (tmp_path / "fresh", old):
        assert root.stat().st_mode & 0o777 == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            if (root / name).exists():
                assert (root / name).stat().st_mode & 0o777 == 0o600, name
    assert (tmp_path / "fresh" / "state.db-wal").exists()
    fresh.close()
    reopened.close()
