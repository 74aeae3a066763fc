"""``lambdaserve plans`` and ``lambdaserve keys``: usage plans and the API keys in them.

As in API Gateway, a key is used through a usage plan (throttle and quota), so a key made
without ``--plan`` joins the plan named ``default``, an unlimited one made on first use.
A key works only on its plan's stages (403 elsewhere, as API Gateway). A key's value is
shown once, when it is made: the store keeps only its sha256. Usage is
what the server has written to the store: every request it has answered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from lambdaserve.cli.options import JSON_OPTION, PROJECT_OPTION, REGION_OPTION, STATE_OPTION
from lambdaserve.cli.output import handle_errors, out, print_json
from lambdaserve.cli.render import create_table
from lambdaserve.cli.state import open_store
from lambdaserve.defaults import DEFAULT_PLAN, DEFAULT_STAGE
from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.store import ApiKey, Store, UsagePlan

_PERIOD_NAMES = {"DAY": "today", "WEEK": "this week", "MONTH": "this month"}


# -- plans -----------------------------------------------------------------------------
STAGES_HELP = (
    "The stages its keys work on, comma-separated, e.g. test,prod; elsewhere they get 403 "
    "Forbidden, as on API Gateway"
)


def _stages(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


@handle_errors
def create_plan(
    name: str = typer.Argument(..., help="The plan's name, e.g. basic or partners."),
    rate: float | None = typer.Option(None, "--rate", help="Throttle: requests per second, sustained."),
    burst: int | None = typer.Option(
        None,
        "--burst",
        help="Throttle: requests at once (bucket size) [default with --rate: the rate, >= 1].",
    ),
    quota: str | None = typer.Option(
        None, "--quota", help="Requests per key per DAY, WEEK or MONTH (UTC), e.g. 1000/DAY."
    ),
    stage: str = typer.Option(DEFAULT_STAGE, "--stage", help=STAGES_HELP + "."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a usage plan: a throttle per key (rate and burst) and a quota per key, on stages.

    Over the limits, callers get 429 "Too Many Requests" (throttle) or "Limit Exceeded"
    (quota), as from API Gateway. Leave out both for an unlimited plan. Its keys work on
    the plan's stages only (default: test).

    Example:

        lambdaserve plans create basic --rate 5 --burst 10 --quota 1000/DAY --stage test,prod

        lambdaserve keys create --name alice --plan basic
    """
    from lambdaserve.store.records import parse_quota

    if not name.strip():
        raise LambdaserveError("A plan needs a name.", "e.g. lambdaserve plans create basic --rate 5")
    limit, period = parse_quota(quota)
    if rate is not None and burst is None:
        burst = max(1, int(rate))  # as `serve --rate` does
    with open_store(state_dir, create=True) as store:
        plan = store.create_plan(name, rate, burst, limit, period, _stages(stage))
    if as_json:
        print_json(plan.to_dict())
        return
    out.print(f"[green]✓[/] Plan [bold]{escape(plan.name)}[/] (id {plan.id}): {plan.describe()}.")
    out.print(f"  Give it a key: lambdaserve keys create --name NAME --plan {plan.name}")


@handle_errors
def update_plan(
    name: str = typer.Argument(..., help="The plan's name or id."),
    stage: str | None = typer.Option(None, "--stage", help=STAGES_HELP + " [default: unchanged]."),
    rate: float | None = typer.Option(None, "--rate", help="Throttle: requests per second."),
    burst: int | None = typer.Option(None, "--burst", help="Throttle: requests at once."),
    quota: str | None = typer.Option(None, "--quota", help="e.g. 1000/DAY."),
    no_throttle: bool = typer.Option(False, "--no-throttle", help="Remove the throttle."),
    no_quota: bool = typer.Option(False, "--no-quota", help="Remove the quota."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a usage plan's stages or limits; what is not given stays as it is.

    Its keys keep their values, and their quota counts carry on. --stage replaces the list.

    Example:

        lambdaserve plans update basic --stage test,prod

        lambdaserve plans update basic --rate 20 --burst 40 --no-quota
    """
    from lambdaserve.store.records import parse_quota

    with open_store(state_dir) as store:
        current = store.plan(name)
        new_rate, new_burst = current.rate, current.burst
        if no_throttle:
            new_rate, new_burst = None, None
        if rate is not None:
            new_rate, new_burst = rate, burst if burst is not None else max(1, int(rate))
        elif burst is not None:
            new_burst = burst
        limit, period = (None, None) if no_quota else (current.quota_limit, current.quota_period)
        if quota is not None:
            limit, period = parse_quota(quota)
        plan = store.update_plan(
            current.name, new_rate, new_burst, limit, period, None if stage is None else _stages(stage)
        )
    if as_json:
        print_json(plan.to_dict())
        return
    out.print(f"[green]✓[/] Plan [bold]{escape(plan.name)}[/] (id {plan.id}): {plan.describe()}.")


@handle_errors
def list_plans(state_dir: Path | None = STATE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the usage plans with their stages, throttle, quota and number of active keys.

    Example:

        lambdaserve plans list
    """
    with open_store(state_dir) as store:
        plans = store.plans()
        keys = store.api_keys()
    counts = {p.id: sum(k.enabled and k.plan_id == p.id for k in keys) for p in plans}
    if as_json:
        print_json({"plans": [{**p.to_dict(), "keys": counts[p.id]} for p in plans]})
        return
    if not plans:
        out.print("No usage plans yet. Make one: lambdaserve plans create NAME --rate 10 --burst 10")
        return
    table = create_table("plan", "id", "stages", "throttle", "quota", "keys")
    for p in plans:
        throttle = f"{p.rate:g}/s, burst {p.burst}" if p.rate is not None else "—"
        quota = f"{p.quota_limit}/{p.quota_period}" if p.quota_limit is not None else "—"
        table.add_row(escape(p.name), p.id, ", ".join(p.stages), throttle, quota, str(counts[p.id]))
    out.print(table)


# -- keys ------------------------------------------------------------------------------
@handle_errors
def create_key(
    name: str = typer.Option(..., "--name", "-n", help="Who or what the key is for, e.g. alice."),
    plan: str | None = typer.Option(
        None,
        "--plan",
        help=f"Usage plan, by name or id [default: {DEFAULT_PLAN!r}, unlimited, made if missing].",
    ),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an API key in a usage plan and print it, once: it is not stored, only its hash.

    Callers send it in the x-api-key header.

    Example:

        lambdaserve keys create --name alice --plan basic
    """
    if not name.strip():
        raise LambdaserveError("A key needs a name.", "e.g. lambdaserve keys create --name alice")
    with open_store(state_dir, create=True) as store:
        chosen = store.plan(plan) if plan is not None else _default_plan(store)
        key, value = store.create_key(name, chosen.id)
    if as_json:
        print_json({"id": key.id, "name": key.name, "plan": chosen.name, "value": value})
        return
    out.print(
        f"[green]✓[/] Key [bold]{escape(key.name)}[/] (id {key.id}) "
        f"in plan {escape(chosen.name)} ({chosen.describe()}):"
    )
    out.print(f"  [bold]{value}[/]")
    out.print("  It will not be shown again: copy it now. Callers send it as the x-api-key header.")


@handle_errors
def list_keys(state_dir: Path | None = STATE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the API keys: id, name, first characters, plan, state and usage of the quota.

    Example:

        lambdaserve keys list
    """
    from lambdaserve.store.records import period_start

    with open_store(state_dir) as store:
        plans = {p.id: p for p in store.plans()}
        keys = store.api_keys()
        wall = time.time()
        used = {
            k.id: store.usage(k.id, period_start(plan.quota_period, wall))
            for k in keys
            if (plan := plans.get(k.plan_id or "")) and plan.quota_period
        }
    if as_json:
        listed = []
        for k in keys:
            plan = plans.get(k.plan_id or "")
            listed.append(
                {
                    **k.to_dict(),
                    "plan": plan.name if plan else None,
                    "used": used.get(k.id),
                    "quota": plan.quota_limit if plan else None,
                    "quota_period": plan.quota_period if plan else None,
                }
            )
        print_json({"keys": listed})
        return
    if not keys:
        out.print("No API keys yet. Make one: lambdaserve keys create --name NAME")
        return
    table = create_table("id", "name", "key", "plan", "state", "usage")
    for k in keys:
        plan = plans.get(k.plan_id or "")
        state = "[green]enabled[/]" if k.enabled else f"[red]revoked[/] {(k.revoked or '')[:10]}"
        usage = (
            f"{used[k.id]} / {plan.quota_limit} {_PERIOD_NAMES.get(plan.quota_period or '')}"
            if plan and k.id in used
            else "—"
        )
        plan_name = escape(plan.name) if plan else "—"
        table.add_row(k.id, escape(k.name), f"{k.prefix}…", plan_name, state, usage)
    out.print(table)


@handle_errors
def revoke_key(
    key: str = typer.Argument(..., help="The key's id, or its name if no other active key has it."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke an API key: from then on, requests with it get 403 Forbidden.

    Example:

        lambdaserve keys revoke alice
    """
    with open_store(state_dir) as store:
        revoked = store.revoke_key(_find_key(store, key).id)
    if as_json:
        print_json(revoked.to_dict())
        return
    out.print(
        f"[green]✓[/] Revoked key [bold]{escape(revoked.name)}[/] (id {revoked.id}, {revoked.prefix}…): "
        "requests with it now get 403 Forbidden."
    )


@handle_errors
def show_key(
    stage: str = typer.Argument(..., help="The stage on AWS whose API key to show."),
    remote: bool = typer.Option(False, "--remote", help="The key of the stage deployed to AWS (required)."),
    region: str | None = REGION_OPTION,
    project: str | None = PROJECT_OPTION,
    profile: str | None = typer.Option(None, "--profile", help="AWS profile from ~/.aws/config."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the value of a stage's API key on AWS (deploy shows it once, when it makes it).

    Local keys are kept as hashes only, so their values cannot be shown again: make a new
    one with `lambdaserve keys create`.

    Example:

        lambdaserve keys show prod --remote
    """
    if not remote:
        raise LambdaserveError(
            "Local API keys are stored as hashes: their values are shown once, when they are made.",
            "Make a new key (lambdaserve keys create --name NAME) and revoke the lost one; for a stage "
            "on AWS, add --remote: lambdaserve keys show STAGE --remote",
        )
    from lambdaserve.deploy.remote import remote_api_key

    with open_store(state_dir) as store:
        key = remote_api_key(store, project, region, profile, stage)
    if as_json:
        print_json(key)
        return
    out.print(f"{key['value']}")


def _find_key(store: Store, ref: str) -> ApiKey:
    # The store matches names too, and would revoke every active key of that name at once.
    keys = store.api_keys()
    by_id = next((k for k in keys if k.id == ref), None) or store.find_key(ref)
    if by_id is not None:
        if not by_id.enabled:
            raise LambdaserveError(f"Key {by_id.id} ({by_id.name}) was revoked already, at {by_id.revoked}.")
        return by_id
    named = [k for k in keys if k.name == ref and k.enabled]
    if len(named) > 1:
        raise LambdaserveError(
            f"{len(named)} active keys are named {ref!r}.",
            f"Revoke one by its id: {', '.join(k.id for k in named)} (see lambdaserve keys list).",
        )
    if not named:
        revoked = "every key of that name is revoked" if any(k.name == ref for k in keys) else "no such key"
        raise LambdaserveError(
            f"No active API key {ref!r}: {revoked}.", "See the keys and their ids: lambdaserve keys list"
        )
    return named[0]


def _default_plan(store: Store) -> UsagePlan:
    # API Gateway only accepts a key through a usage plan; ours makes an unlimited one.
    try:
        return store.plan(DEFAULT_PLAN)
    except LambdaserveError:
        return store.create_plan(DEFAULT_PLAN, stages=[DEFAULT_STAGE])  # the served stage adds itself
