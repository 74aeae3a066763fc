"""The state database itself: its tables, the columns added since a state directory was
first made (added in place, nothing lost), and who may read it (its owner only).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lambdaserve.defaults import DEFAULT_STAGE
from lambdaserve.store.records import ID_ALPHABET, now, random_string

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, format TEXT NOT NULL,
    file TEXT NOT NULL, manifest TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT NOT NULL, stage TEXT NOT NULL, version INTEGER NOT NULL,
    canary_version INTEGER, canary_weight REAL NOT NULL DEFAULT 0, updated TEXT NOT NULL,
    PRIMARY KEY (model, stage));
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, stage TEXT NOT NULL,
    version INTEGER, canary_version INTEGER, canary_weight REAL NOT NULL DEFAULT 0,
    changed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, rate REAL, burst INTEGER,
    quota_limit INTEGER, quota_period TEXT, created TEXT NOT NULL, stages TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    plan_id TEXT, enabled INTEGER NOT NULL DEFAULT 1, created TEXT NOT NULL, revoked TEXT);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, region TEXT NOT NULL,
    account TEXT NOT NULL, model TEXT NOT NULL, stage TEXT NOT NULL, version INTEGER NOT NULL,
    canary_version INTEGER, canary_weight REAL NOT NULL DEFAULT 0, lambda_version TEXT,
    url TEXT, image TEXT, base TEXT, status TEXT NOT NULL, message TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL, period_start TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (key_id, period_start));
CREATE TABLE IF NOT EXISTS captures (
    model TEXT NOT NULL, stage TEXT NOT NULL, rate REAL NOT NULL, updated TEXT NOT NULL,
    PRIMARY KEY (model, stage));
CREATE TABLE IF NOT EXISTS loadtests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, at TEXT NOT NULL,
    summary TEXT NOT NULL, timeline TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    model TEXT NOT NULL, request_id TEXT NOT NULL, label TEXT NOT NULL, received TEXT NOT NULL,
    PRIMARY KEY (model, request_id));
"""


def connect(root: Path) -> sqlite3.Connection:
    """``root/state.db`` (WAL, autocommit: each write is one ``transaction``), private to its
    owner, with every table and column this version uses."""
    _private(root)
    db = sqlite3.connect(root / "state.db", timeout=10.0, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    _add_columns(db)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write: ``BEGIN IMMEDIATE`` to ``COMMIT``, rolled back if anything raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _add_columns(db: sqlite3.Connection) -> None:
    """Columns added since a state directory was made: added in place, nothing is lost.
    (Tables added since, ``loadtests`` and ``captures``, are made by the schema's
    ``CREATE TABLE IF NOT EXISTS``.)"""
    have = {row["name"] for row in db.execute("PRAGMA table_info(deployments)")}
    if "base" not in have:
        db.execute("ALTER TABLE deployments ADD COLUMN base TEXT")
    if "stages" not in {row["name"] for row in db.execute("PRAGMA table_info(plans)")}:
        _scope_plans_to_stages(db)


def _scope_plans_to_stages(db: sqlite3.Connection) -> None:
    """Plans made before they had stages worked on every stage: attach each to every stage
    the store knows (and ``test``), so their keys keep working where they did; a key made
    without a plan joins ``default``, as keys made since do."""
    with transaction(db):
        if "stages" in {row["name"] for row in db.execute("PRAGMA table_info(plans)")}:
            return  # another process did it first
        db.execute("ALTER TABLE plans ADD COLUMN stages TEXT NOT NULL DEFAULT ''")
        known = {row[0] for row in db.execute("SELECT DISTINCT stage FROM aliases")} | {DEFAULT_STAGE}
        db.execute("UPDATE plans SET stages = ?", (",".join(sorted(known)),))
        if db.execute("SELECT 1 FROM keys WHERE plan_id IS NULL").fetchone():
            row = db.execute("SELECT id FROM plans WHERE name = 'default'").fetchone()
            plan_id = row[0] if row else random_string(ID_ALPHABET, 6)
            if row is None:
                db.execute(
                    "INSERT INTO plans (id, name, created, stages) VALUES (?, 'default', ?, ?)",
                    (plan_id, now(), ",".join(sorted(known))),
                )
            db.execute("UPDATE keys SET plan_id = ? WHERE plan_id IS NULL", (plan_id,))


def _private(root: Path) -> None:
    """The state directory only its owner may enter (0700), and ``state.db`` only its owner
    may read (0600): it holds the keys' hashes and the usage. SQLite gives its -wal and -shm
    files the database's mode. A directory or file someone else owns is left as it is."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = root / "state.db"
    if not database.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for path, mode in ((root, 0o700), (database, 0o600)):
        with contextlib.suppress(PermissionError):
            if path.stat().st_uid == os.geteuid() and path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
