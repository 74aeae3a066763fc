"""What ``lambdaserve loadtest`` sends load to: a model served here, its stage deployed to
AWS (``--remote``), or any URL; with the body to send when none is given (the sample of the
version the stage serves) and the key of a deployed stage.

A deployed stage's URL comes from the deploys recorded in the store (``status`` lists
them). Its API key's value is not in the store (local keys are kept as hashes; AWS keys
never were): unless ``--api-key`` gives it, it is read from API Gateway as
``lambdaserve keys show STAGE --remote`` reads it, and never printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdaserve.cli.state import open_store, state_root
from lambdaserve.defaults import DEFAULT_STAGE
from lambdaserve.errors import LambdaserveError


@dataclass(frozen=True)
class Target:
    url: str
    model: str | None = None  # a model of this store (served here, or deployed from here)
    stage: str | None = None
    version: int | None = None  # the version its stage serves (here, or as last deployed)
    sample: Any = None  # that version's packaged sample
    model_file: Path | None = None  # and its file (what --compare flask loads); None on AWS
    remote: bool = False  # the stage deployed to AWS
    region: str | None = None
    api_key: str | None = None  # the key found for a deployed stage (never printed)
    key_source: str | None = None  # where that key came from, said in the output


def split_target(target: str, stage: str | None) -> tuple[str, str]:
    """``MODEL@STAGE`` or ``MODEL`` with ``--stage`` -> (model, stage)."""
    model, at, named = target.partition("@")
    if at and stage and named != stage:
        raise LambdaserveError(
            f"{target!r} names the stage {named!r}, and --stage says {stage!r}.", "Give the stage once."
        )
    if not model or (at and not named):
        raise LambdaserveError(f"{target!r} is not MODEL or MODEL@STAGE.", "e.g. news, or news@prod")
    return model, named or stage or DEFAULT_STAGE


def resolve_local(target: str, stage: str | None, base: str, state_dir: Path | None) -> Target:
    from lambdaserve.store import Store

    if target.startswith(("http://", "https://")):
        if stage:
            raise LambdaserveError("--stage goes with a MODEL, not a URL.", "Put the stage in the URL.")
        return Target(target)
    model, stage = split_target(target, stage)
    url = f"{base.rstrip('/')}/{stage}/{model}/predict"
    root = state_root(state_dir)
    if not (root / "state.db").is_file():
        return Target(url, model, stage)
    store = Store(root)
    try:
        alias = store.alias(model, stage)
        if alias is None:
            served = ", ".join(f"{a.model}@{a.stage}" for a in store.aliases()) or "none"
            raise LambdaserveError(
                f"No stage {stage!r} of {model!r} in {root}.", f"Served here: {served}; or give a URL."
            )
        version = store.version(model, alias.version)
        sample = version.manifest.get("sample_input")
        return Target(url, model, stage, version.version, sample, store.model_path(version))
    finally:
        store.close()


def resolve_remote(
    target: str,
    stage: str | None,
    api_key: str | None,
    *,
    region: str | None,
    project: str | None,
    profile: str | None,
    state_dir: Path | None,
) -> Target:
    """The stage deployed to AWS: its recorded URL, its sample, and its key unless given."""
    from lambdaserve.deploy.remote import deployed_endpoint, remote_api_key

    if target.startswith(("http://", "https://")):
        raise LambdaserveError(
            "--remote takes a MODEL (or MODEL@STAGE) deployed from here; a URL is loaded as it is.",
            "Leave out --remote to send load to the URL.",
        )
    model, stage = split_target(target, stage)
    with open_store(state_dir) as store:
        record = deployed_endpoint(store, project, model, stage)
        sample = None
        if any(v.version == record.version for v in store.versions(model)):
            sample = store.version(model, record.version).manifest.get("sample_input")
        key = api_key
        if not key:
            try:
                key = remote_api_key(store, project, region, profile, stage).get("value")
            except LambdaserveError as exc:
                raise _no_key(stage, exc.message) from None
            if not key:
                raise _no_key(stage, "API Gateway gave no value for it.")
    source = "--api-key or LAMBDASERVE_API_KEY" if api_key else "the stage's key in API Gateway"
    return Target(
        str(record.url), model, stage, record.version, sample, None, True, record.region, key, source
    )


def _no_key(stage: str, why: str) -> LambdaserveError:
    return LambdaserveError(
        f"No API key is known for the stage {stage!r} on AWS: {why}",
        "Pass the key the stage's callers use: --api-key KEY (or LAMBDASERVE_API_KEY=KEY); "
        f"lambdaserve keys show {stage} --remote prints the stage's key where AWS can be reached.",
    )
