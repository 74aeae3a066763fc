"""The store: one SQLite database (WAL) and a directory of content-addressed model files.

Every write is one short transaction, so a ``kill -9`` at any moment leaves the database
as of the last commit: no key, plan, model or alias is ever half-written. Usage counts
are written by the server as absolute values before the answers that used them are sent
(see ``gateway/usage.py``), so a crash loses no answered request's count.

API keys are random 40-character strings; only their sha256 is stored, and a key is
shown once, when it is created. The admin token lives in ``admin-token`` (mode 0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdaserve.defaults import DEFAULT_PLAN, DEFAULT_STAGE
from lambdaserve.errors import LambdaserveError
from lambdaserve.store import schema
from lambdaserve.store.records import (
    ID_ALPHABET,
    KEY_ALPHABET,
    Alias,
    ApiKey,
    Deployment,
    ModelVersion,
    UsagePlan,
    check_limits,
    check_stage,
    check_stages,
    now,
    parse_quota,
    random_string,
)


def default_state_dir() -> Path:
    return Path(os.environ.get("LAMBDASERVE_HOME") or ".lambdaserve")


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Store:
    """The state directory. Safe to use from several processes at once (SQLite WAL)."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.root = (state_dir or default_state_dir()).resolve()
        self.db = schema.connect(self.root)
        (self.root / "models").mkdir(exist_ok=True)

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return schema.transaction(self.db)

    def data_version(self) -> int:
        """Changes whenever another connection commits: how a server notices CLI writes."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    # -- models and versions ---------------------------------------------------------
    def add_version(self, name: str, manifest: dict[str, Any], model_file: Path) -> tuple[ModelVersion, bool]:
        """Publish ``model_file`` as the next version of ``name``; (version, created).

        As Lambda's PublishVersion: when the latest version has the same content (the same
        file, and the same reference statistics), it is returned and no new version is made.
        """
        sha = manifest["sha256"]
        suffix = Path(manifest.get("model_file") or model_file.name).suffix
        blob = self.put_model_file(model_file, sha, suffix)
        with self.transaction() as db:
            latest = db.execute(
                "SELECT * FROM versions WHERE model = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
            same_reference = latest is not None and (
                json.loads(latest["manifest"]).get("reference") == manifest.get("reference")
            )
            if latest is not None and latest["sha256"] == sha and same_reference:
                return _version(latest), False
            number = (latest["version"] if latest else 0) + 1
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    number,
                    sha,
                    manifest["format"],
                    f"models/{blob.name}",
                    json.dumps({**manifest, "name": name}),
                    now(),
                ),
            )
        return self.version(name, number), True

    def put_model_file(self, model_file: Path, sha256: str, suffix: str) -> Path:
        """Copy a file into the content-addressed ``models/`` directory (once); its path there."""
        blob = self.root / "models" / f"{sha256}{suffix}"
        if not blob.exists():
            staging = blob.with_name(f".{blob.name}.{os.getpid()}.{threading.get_ident()}")
            shutil.copyfile(model_file, staging)
            staging.rename(blob)
        return blob

    def models(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT model FROM versions ORDER BY model")]

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        query = "SELECT * FROM versions" + (" WHERE model = ?" if name else "") + " ORDER BY model, version"
        return [_version(r) for r in self.db.execute(query, (name,) if name else ())]

    def version(self, name: str, number: int) -> ModelVersion:
        row = self.db.execute(
            "SELECT * FROM versions WHERE model = ? AND version = ?", (name, number)
        ).fetchone()
        if row is None:
            known = [v.version for v in self.versions(name)]
            raise LambdaserveError(
                f"Model {name!r} has no version {number}.",
                f"Its versions: {', '.join(map(str, known))}."
                if known
                else f"Push one first: lambdaserve models push MODEL_FILE --name {name}",
            )
        return _version(row)

    def model_path(self, version: ModelVersion) -> Path:
        return self.root / version.file

    # -- aliases (stages) --------------------------------------------------------------
    def aliases(self, model: str | None = None) -> list[Alias]:
        # A change rewrites the row (INSERT OR REPLACE): its rowid becomes the largest there is.
        query = (
            "SELECT *, rowid AS sequence FROM aliases"
            + (" WHERE model = ?" if model else "")
            + " ORDER BY model, stage"
        )
        return [_alias(r) for r in self.db.execute(query, (model,) if model else ())]

    def alias(self, model: str, stage: str) -> Alias | None:
        row = self.db.execute(
            "SELECT *, rowid AS sequence FROM aliases WHERE model = ? AND stage = ?", (model, stage)
        ).fetchone()
        return _alias(row) if row else None

    def set_alias(
        self,
        model: str,
        stage: str,
        version: int,
        canary_version: int | None = None,
        canary_weight: float = 0.0,
    ) -> Alias:
        """Point ``stage`` at ``version`` (with an optional canary), in one transaction."""
        check_stage(stage)
        self.version(model, version)
        if canary_version is not None:
            self.version(model, canary_version)
            if canary_version == version:
                raise LambdaserveError(
                    f"Version {version} cannot be the canary of itself.",
                    "Promote it fully instead (without --canary), or give another version.",
                )
            if not 0 < canary_weight < 100:
                raise LambdaserveError("A canary weight is a percentage between 0 and 100, exclusive.")
        else:
            canary_weight = 0.0
        with self.transaction() as db:
            self._remember(db, model, stage)
            db.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?, ?, ?, ?)",
                (model, stage, version, canary_version, canary_weight, now()),
            )
        alias = self.alias(model, stage)
        if alias is None:  # just written in this transaction
            raise LambdaserveError(f"Stage {stage!r} of {model!r} vanished while being written.")
        return alias

    def rollback(self, model: str, stage: str) -> Alias | None:
        """Undo the stage's last change; None when that change created the stage."""
        with self.transaction() as db:
            row = _last_change(db, model, stage)
            if row is None:
                raise LambdaserveError(
                    f"Stage {stage!r} of model {model!r} has no earlier state to roll back to.",
                    f"See its state with: lambdaserve models show {model}",
                )
            db.execute("DELETE FROM alias_history WHERE id = ?", (row["id"],))
            if row["version"] is None:
                db.execute("DELETE FROM aliases WHERE model = ? AND stage = ?", (model, stage))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?, ?, ?, ?)",
                    (model, stage, row["version"], row["canary_version"], row["canary_weight"], now()),
                )
        return self.alias(model, stage)

    def rollback_target(self, model: str, stage: str) -> dict[str, Any] | None:
        """What ``rollback`` would bring back: ``{"version", "canary_version", "canary_weight"}``,
        ``{"removes": True}`` when the last change created the stage, None when there is none."""
        row = _last_change(self.db, model, stage)
        if row is None:
            return None
        if row["version"] is None:
            return {"removes": True}
        return {k: row[k] for k in ("version", "canary_version", "canary_weight")}

    def _remember(self, db: sqlite3.Connection, model: str, stage: str) -> None:
        current = db.execute("SELECT * FROM aliases WHERE model = ? AND stage = ?", (model, stage)).fetchone()
        db.execute(
            "INSERT INTO alias_history (model, stage, version, canary_version, canary_weight, changed) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                model,
                stage,
                current["version"] if current else None,
                current["canary_version"] if current else None,
                current["canary_weight"] if current else 0.0,
                now(),
            ),
        )

    # -- usage plans -------------------------------------------------------------------
    def create_plan(
        self,
        name: str,
        rate: float | None = None,
        burst: int | None = None,
        quota_limit: int | None = None,
        quota_period: str | None = None,
        stages: Sequence[str] = (DEFAULT_STAGE,),
    ) -> UsagePlan:
        """A usage plan, attached to ``stages``: its keys are accepted there and nowhere else."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name or ""):
            raise LambdaserveError(
                f"{name!r} is not a valid plan name.", "Use letters, digits, '.', '-', '_'."
            )
        check_limits(rate, burst, quota_limit, quota_period)
        attached = check_stages(stages)
        plan = UsagePlan(
            random_string(ID_ALPHABET, 6), name, rate, burst, quota_limit, quota_period, now(), attached
        )
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO plans VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (plan.id, name, rate, burst, quota_limit, quota_period, plan.created, ",".join(attached)),
                )
        except sqlite3.IntegrityError:
            raise LambdaserveError(f"A plan named {name!r} exists already.", "Choose another name.") from None
        return plan

    def update_plan(
        self,
        name: str,
        rate: float | None,
        burst: int | None,
        quota_limit: int | None,
        quota_period: str | None,
        stages: Sequence[str] | None = None,
    ) -> UsagePlan:
        """Change a plan's limits, and its stages when given (as API Gateway's UpdateUsagePlan);
        keys keep their plan."""
        check_limits(rate, burst, quota_limit, quota_period)
        current = self.plan(name)
        attached = current.stages if stages is None else check_stages(stages)
        with self.transaction() as db:
            db.execute(
                "UPDATE plans SET rate = ?, burst = ?, quota_limit = ?, quota_period = ?, stages = ? "
                "WHERE id = ?",
                (rate, burst, quota_limit, quota_period, ",".join(attached), current.id),
            )
        return UsagePlan(
            current.id, current.name, rate, burst, quota_limit, quota_period, current.created, attached
        )

    def attach_stage(self, name: str, stage: str) -> UsagePlan:
        """Attach ``stage`` to a plan that lacks it (what ``serve --stage`` does to its default plan)."""
        plan = self.plan(name)
        if stage in plan.stages:
            return plan
        return self.update_plan(
            name, plan.rate, plan.burst, plan.quota_limit, plan.quota_period, [*plan.stages, stage]
        )

    def default_plan(
        self,
        stage: str,
        rate: float | None = None,
        burst: int | None = None,
        quota: str | None = None,
    ) -> UsagePlan:
        """The plan named ``default``, made if missing, attached to ``stage``: where a key made
        without a plan goes, so that it works on the stage it was made for. Without limits it
        keeps those it has (a new one is unlimited); with a throttle or a quota (``serve
        --rate --burst --quota``), the plan is given them. A rate alone bursts to itself."""
        limit, period = parse_quota(quota)
        if rate is not None and burst is None:
            burst = max(1, int(rate))
        try:
            plan = self.attach_stage(DEFAULT_PLAN, stage)
        except LambdaserveError:
            return self.create_plan(DEFAULT_PLAN, rate, burst, limit, period, [stage])
        wanted = (rate, burst, limit, period)
        if wanted != (None, None, None, None) and wanted != (
            plan.rate,
            plan.burst,
            plan.quota_limit,
            plan.quota_period,
        ):
            return self.update_plan(DEFAULT_PLAN, rate, burst, limit, period)
        return plan

    def default_key(self, plan: UsagePlan) -> str | None:
        """A key named ``default`` in ``plan`` when it has no enabled key: its value, shown
        once (only its hash is kept); None when the plan has a key already."""
        if any(k.enabled and k.plan_id == plan.id for k in self.api_keys()):
            return None
        _, value = self.create_key(DEFAULT_PLAN, plan.id)
        return value

    def plans(self) -> list[UsagePlan]:
        return [_plan(r) for r in self.db.execute("SELECT * FROM plans ORDER BY created, name")]

    def plan(self, name_or_id: str) -> UsagePlan:
        row = self.db.execute("SELECT * FROM plans WHERE id = ?", (name_or_id,)).fetchone()
        row = row or self.db.execute("SELECT * FROM plans WHERE name = ?", (name_or_id,)).fetchone()
        if row is None:
            raise LambdaserveError(
                f"No usage plan {name_or_id!r}.",
                "Create one: lambdaserve plans create NAME --rate 10 --burst 10",
            )
        return _plan(row)

    # -- API keys ----------------------------------------------------------------------
    def create_key(self, name: str, plan: str) -> tuple[ApiKey, str]:
        """Make a key in ``plan`` (name or id; as on API Gateway, a key is used only through a
        plan); return its record and its value, which is never stored or shown again."""
        plan_id = self.plan(plan).id
        value = random_string(KEY_ALPHABET, 40)
        key = ApiKey(random_string(ID_ALPHABET, 10), name, value[:6], hash_key(value), plan_id, True, now())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, 1, ?, NULL)",
                (key.id, key.name, key.prefix, key.hash, key.plan_id, key.created),
            )
        return key, value

    def api_keys(self) -> list[ApiKey]:
        return [_key(r) for r in self.db.execute("SELECT * FROM keys ORDER BY created, name")]

    def revoke_key(self, id_or_name: str) -> ApiKey:
        """Revoke one key: by its id, or by its name when exactly one active key has it."""
        key = self.resolve_key(id_or_name)
        with self.transaction() as db:
            db.execute("UPDATE keys SET enabled = 0, revoked = ? WHERE id = ?", (now(), key.id))
        return _key(self.db.execute("SELECT * FROM keys WHERE id = ?", (key.id,)).fetchone())

    def resolve_key(self, id_or_name: str) -> ApiKey:
        row = self.db.execute("SELECT * FROM keys WHERE id = ? AND enabled = 1", (id_or_name,)).fetchone()
        if row is not None:
            return _key(row)
        rows = self.db.execute("SELECT * FROM keys WHERE name = ? AND enabled = 1", (id_or_name,)).fetchall()
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows)
            raise LambdaserveError(
                f"{len(rows)} active keys are named {id_or_name!r} ({ids}).", "Name the key by its id."
            )
        if not rows:
            raise LambdaserveError(
                f"No active key {id_or_name!r}.", "See the keys with: lambdaserve keys list"
            )
        return _key(rows[0])

    def find_key(self, value: str) -> ApiKey | None:
        row = self.db.execute("SELECT * FROM keys WHERE hash = ?", (hash_key(value),)).fetchone()
        if row is None or not hmac.compare_digest(row["hash"], hash_key(value)):
            return None
        return _key(row)

    # -- usage -------------------------------------------------------------------------
    def save_usage(self, counts: dict[tuple[str, str], int]) -> None:
        """Write absolute counts per (key id, period start): idempotent, crash-safe."""
        if not counts:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO usage VALUES (?, ?, ?) ON CONFLICT (key_id, period_start) "
                "DO UPDATE SET count = max(count, excluded.count)",
                [(key, start, count) for (key, start), count in counts.items()],
            )

    def usage(self, key_id: str, period_start: str) -> int:
        row = self.db.execute(
            "SELECT count FROM usage WHERE key_id = ? AND period_start = ?", (key_id, period_start)
        ).fetchone()
        return int(row[0]) if row else 0

    # -- deployments to AWS -------------------------------------------------------------
    def record_deployment(self, deployment: Deployment) -> Deployment:
        """Remember a deploy (or its failure): `status`, and `rollback --remote`, read these."""
        data = deployment.to_dict()
        data.pop("id")
        data["at"] = data["at"] or now()
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO deployments ({', '.join(data)}) VALUES ({', '.join('?' * len(data))})",
                list(data.values()),
            )
        return Deployment(**{**data, "id": cursor.lastrowid})

    def deployments(self, project: str | None = None, model: str | None = None) -> list[Deployment]:
        """Every recorded deploy, oldest first."""
        rows = self.db.execute(
            "SELECT * FROM deployments WHERE (? IS NULL OR project = ?) AND (? IS NULL OR model = ?) "
            "ORDER BY id",
            (project, project, model, model),
        )
        return [Deployment(**dict(row)) for row in rows]

    # -- admin token -------------------------------------------------------------------
    def admin_token(self) -> tuple[str, bool]:
        """The admin token, and whether it was created just now (then it is shown once)."""
        path = self.root / "admin-token"
        if path.exists():
            return path.read_text().strip(), False
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token, True


def _last_change(db: sqlite3.Connection, model: str, stage: str) -> sqlite3.Row | None:
    """The stage as it was before its last change (what a rollback brings back)."""
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM alias_history WHERE model = ? AND stage = ? ORDER BY id DESC LIMIT 1",
        (model, stage),
    ).fetchone()
    return row


def _plan(row: sqlite3.Row) -> UsagePlan:
    data = dict(row)
    data["stages"] = tuple(s for s in (data.get("stages") or "").split(",") if s)
    return UsagePlan(**data)


def _version(row: sqlite3.Row) -> ModelVersion:
    data = dict(row)
    data["manifest"] = json.loads(data["manifest"])
    return ModelVersion(**data)


def _alias(row: sqlite3.Row) -> Alias:
    return Alias(**dict(row))


def _key(row: sqlite3.Row) -> ApiKey:
    data = dict(row)
    data["enabled"] = bool(data["enabled"])
    return ApiKey(**data)
