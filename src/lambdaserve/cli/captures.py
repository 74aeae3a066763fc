"""Captured requests, here or on AWS: what ``drift``, ``feedback`` and ``capture pull`` read."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.store import Store


def captured_records(
    store: Store,
    model: str,
    stage: str | None,
    cutoff: datetime,
    *,
    remote: bool = False,
    region: str | None = None,
    profile: str | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """The model's capture records since ``cutoff``, oldest first: from the state directory, or
    (``remote``) from the deployed function's log group in CloudWatch Logs."""
    if not remote:
        from lambdaserve.monitoring.capture import read_records

        return list(read_records(store.root, model, since=cutoff, stage=stage))
    from lambdaserve.deploy.awsclient import AWS
    from lambdaserve.deploy.deployer import connect
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.monitoring.capture import remote_records

    name = project_name(project, store.root)
    aws = connect(store, name, region, profile, AWS)
    group = Names(name, aws.account(), aws.region).log_group(model)
    return list(remote_records(aws.client("logs"), group, since=cutoff, stage=stage))


def check_window(window: str) -> None:
    if window not in ("day", "hour"):
        raise LambdaserveError(f"--window {window} is not day or hour.", "e.g. --window hour")


def nothing_captured(model: str, stage: str | None, since: str, remote: bool, needs: str) -> LambdaserveError:
    """No record to work with: how to get some. ``needs``: why the command needs them."""
    where = "on AWS" if remote else "here"
    stage_text = f" on stage {stage}" if stage else ""
    return LambdaserveError(
        f"No captured request for {model}{stage_text} in the last {since} {where}: {needs}.",
        f"Turn capture on: lambdaserve capture set {model} --stage {stage or 'STAGE'} 10% "
        "(or lambdaserve serve --capture 10%), send requests, then run this again"
        + ("." if remote else " (or --remote for the deployed function)."),
    )
