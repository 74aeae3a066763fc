"""From an uploaded file to a live endpoint: what ``POST /_/api/models/{model}/versions`` does.

The same steps as ``lambdaserve models push`` followed by ``promote``, run by the server:

1. inspect the file as data (format, imports, flagged globals, pins); a file whose scan
   flags it is refused (422, ``needs_trust``) unless the request says ``trust``;
2. load it in a fresh execution environment and try the sample (``check_model``);
3. publish it as the model's next version (content equal to the latest publishes nothing);
4. point the stage at it when the model has no such stage yet, or when asked (``promote``);
5. make an API key when asked.

When the new version will be served (step 4), the gateway starts its INIT right after
step 1, beside step 2 (``_start_init_early``): on two cores the two model loads overlap,
and the first request after publishing finds the version initialised (issue 5's target:
from the end of the upload to the first prediction in under 5 s for a 10 MB model).

Steps 1-3 block (a child process, file copies, SQLite), so they run in worker threads
with their own store connection: the event loop keeps serving predictions meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from lambdaserve.apigateway.gateway import Gateway
from lambdaserve.bundle.inspection import ModelReport, inspect_model
from lambdaserve.console.uploads import Upload, UploadRefused
from lambdaserve.defaults import DEFAULT_PLAN
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.function import Function
from lambdaserve.functions.package import NO_SAMPLE, check_model
from lambdaserve.functions.target import check_name
from lambdaserve.store import ApiKey, ModelVersion, Store, UsagePlan
from lambdaserve.store.records import check_stage


async def publish_upload(
    gateway: Gateway, upload: Upload, model: str, options: dict[str, Any], base_url: str
) -> dict[str, Any]:
    """Check, publish and serve ``upload`` as a version of ``model``; the report for the client."""
    check_name(model)
    stage = check_stage(str(options.get("stage") or "test"))
    trust = options.get("trust") is True
    sample = options.get("sample", NO_SAMPLE)
    if sample is None:  # JSON null: no sample given
        sample = NO_SAMPLE
    key_options = options.get("key")
    if key_options is not None and not isinstance(key_options, dict):
        raise UploadRefused(400, '\'key\' must be an object such as {"name": "alice", "plan": "default"}.')
    key_plan = _key_plan(gateway.store, key_options, stage) if key_options is not None else None
    started = time.perf_counter()

    try:
        report = await asyncio.to_thread(inspect_model, upload.path)
    except LambdaserveError as exc:  # not a model file of the format its name says
        raise UploadRefused(422, exc.message, exc.hint) from None
    if report.needs_trust and not trust:
        raise UploadRefused(
            422,
            f"{upload.path.name} was not loaded: its scan flags what a model's file should not do.",
            "If you made this file yourself and know why it does this, publish it again with "
            "trust. Otherwise do not load it; ask for the model as skops or ONNX instead.",
            {"needs_trust": True, "report": report_view(report.to_dict())},
        )
    store = gateway.store
    alias = store.alias(model, stage)
    will_serve = alias is None or options.get("promote") is True
    early = await _start_init_early(gateway, model, report, upload.path, trust) if will_serve else None
    try:
        manifest = await asyncio.to_thread(
            check_model,
            upload.path,
            name=model,
            sample=sample,
            trust=trust,
            env_mode=gateway.settings.env_mode,
            report=report,
        )
        checked_ms = (time.perf_counter() - started) * 1000
        record, created = await asyncio.to_thread(
            _add_version, store.root, model, manifest.to_dict(), upload.path
        )
    except BaseException as exc:
        if early is not None:
            await early.stop()
        if isinstance(exc, LambdaserveError):
            details = {"report": report_view(report.to_dict())}
            raise UploadRefused(422, exc.message, exc.hint, details) from None
        raise
    if early is not None:
        if early.version == str(record.version) and record.sha256 == report.sha256:
            gateway.lambdas.adopt(early)
        else:  # someone else published meanwhile: this number is another file's
            await early.stop()

    alias = store.alias(model, stage)
    moved = alias is None or (options.get("promote") is True and alias.version != record.version)
    if moved:
        alias = store.set_alias(model, stage, record.version)
    gateway.refresh(force=True)
    if alias is not None and record.version in (alias.version, alias.canary_version):
        # INIT now, while the client reads the report: the first request finds the version warm.
        gateway.lambdas.warm_later(model, str(record.version))

    key: dict[str, Any] | None = None
    if key_options is not None:
        plan = key_plan or store.default_plan(stage)
        name = str(key_options.get("name") or model)[:64]
        existing = _active_key(store, name, plan.id)
        if not created and existing is not None:
            # Nothing was published: the key made with this file before still works here. Its
            # value was shown once, when it was made; it is never shown again.
            key = {**existing.to_dict(), "value": None, "reused": True}
        else:
            made, value = store.create_key(name, plan.id)
            gateway.refresh(force=True)
            key = {**made.to_dict(), "value": value, "reused": False}
    endpoint = f"{base_url}/{stage}/{model}/predict"
    return {
        "model": model,
        "version": record.to_dict(),
        "created": created,
        "stage": alias.to_dict() if alias else None,
        "stage_moved": moved,
        "serving": alias is not None and alias.version == record.version,
        "report": report_view(manifest.to_dict()),
        "endpoint": {
            "url": endpoint,
            "predict_proba_url": endpoint + "_proba" if manifest.has_proba else None,
        },
        "key": key,
        "check_ms": round(checked_ms, 1),
    }


def _key_plan(store: Store, key_options: dict[str, Any], stage: str) -> UsagePlan | None:
    """The named plan for the key to make, checked before anything is published: it must
    exist and be attached to the stage (None: the default plan, attached on the way)."""
    name = key_options.get("plan")
    if name in (None, "", DEFAULT_PLAN):
        return None
    try:
        plan = store.plan(str(name))
    except LambdaserveError as exc:
        raise UploadRefused(400, exc.message, exc.hint) from None
    if stage not in plan.stages:
        raise UploadRefused(
            400,
            f"Plan {plan.name!r} is not attached to stage {stage!r}: a key in it would get 403 there.",
            "Attach it first: lambdaserve plans update "
            f"{plan.name} --stage {','.join([*plan.stages, stage])}",
        )
    return plan


async def _start_init_early(
    gateway: Gateway, model: str, report: ModelReport, path: Path, trust: bool
) -> Function | None:
    """INIT of the version this upload will become, started while the upload is checked.

    The file passed the scan (it is no more dangerous to load than ``check_model`` finds
    it), and its content-addressed copy is what the version will point at, so only the
    version number is a guess: the latest plus one. ``publish_upload`` adopts the function
    if the guess was right and stops it otherwise. Nothing is started when the content
    equals the latest version's: then nothing new is published.
    """
    versions = gateway.store.versions(model)
    latest = versions[-1] if versions else None
    if latest is not None and latest.sha256 == report.sha256:
        return None
    blob = await asyncio.to_thread(_put_model_file, gateway.store.root, path, report.sha256)
    record = ModelVersion(
        model=model,
        version=(latest.version if latest else 0) + 1,
        sha256=report.sha256,
        format=report.format,
        file=f"models/{blob.name}",
        manifest={
            "requirements": report.requirements,
            "python": report.python,
            "trusted_types": report.trusted_on_trust if trust else [],
        },
        created="",
    )
    return await gateway.lambdas.start_init(record)


def _active_key(store: Store, name: str, plan_id: str) -> ApiKey | None:
    """The newest active key of this name in this plan, if there is one."""
    same = [k for k in store.api_keys() if k.enabled and k.name == name and k.plan_id == plan_id]
    return same[-1] if same else None


def _put_model_file(root: Path, path: Path, sha256: str) -> Path:
    store = Store(root)  # this thread's own connection, as in _add_version
    try:
        return store.put_model_file(path, sha256, path.suffix)
    finally:
        store.close()


def _add_version(root: Path, model: str, manifest: dict[str, Any], path: Path) -> tuple[ModelVersion, bool]:
    store = Store(root)  # this thread's own connection: SQLite connections stay in their thread
    try:
        return store.add_version(model, manifest, path)
    finally:
        store.close()


def report_view(data: dict[str, Any]) -> dict[str, Any]:
    """The validation report in one shape, from a manifest or from an inspection report."""
    scan = data.get("scan") or data
    by_value = scan.get("by_value") or {}
    return {
        "format": data.get("format"),
        "size": data.get("size"),
        "sha256": data.get("sha256"),
        "python": data.get("python"),
        "imports": scan.get("imports") or [],
        "flagged": scan.get("dangerous") or [],
        "by_value": [*by_value.get("classes", []), *by_value.get("functions", [])],
        "requirements": [
            {"name": p.get("name"), "version": p.get("version"), "source": p.get("source")}
            for p in data.get("pins") or []
        ],
        "warnings": data.get("warnings") or [],
        "trusted": bool(data.get("trusted")),
        "classes": (data.get("classes") or [])[:100],
        "has_proba": bool(data.get("has_proba")),
        "n_features": data.get("n_features"),
        "feature_names": data.get("feature_names"),
        "sample": {
            "input": data.get("sample_input"),
            "predict": data.get("sample_output"),
            "predict_proba": data.get("sample_proba"),
        }
        if "sample_input" in data
        else None,
    }
