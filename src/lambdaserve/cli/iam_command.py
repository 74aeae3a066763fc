"""``lambdaserve iam-policy``: the least-privilege IAM policy the identity that deploys needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from lambdaserve.cli.options import JSON_OPTION, PROJECT_OPTION, STATE_OPTION
from lambdaserve.cli.output import handle_errors
from lambdaserve.cli.state import state_root
from lambdaserve.errors import LambdaserveError


@handle_errors
def iam_policy(
    project: str | None = PROJECT_OPTION,
    region: str = typer.Option("*", "--region", help="Limit it to one region [default: any]."),
    account: str = typer.Option("*", "--account", help="Limit it to one 12-digit account [default: any]."),
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the IAM policy (JSON) that deploy, promote/rollback --remote, status, logs and destroy need.

    Every action lambdaserve calls, scoped to the project's resource names (its bucket,
    repository, functions, roles, log groups and rules). Attach it to the user or role
    that runs lambdaserve, e.g. a CI pipeline's. The output is JSON, with or without --json.

    Example:

        lambdaserve iam-policy --region eu-west-1 > lambdaserve-policy.json

        aws iam create-policy --policy-name lambdaserve-shop --policy-document file://lambdaserve-policy.json
    """
    from lambdaserve.deploy.names import project_name
    from lambdaserve.deploy.permissions import deployer_policy

    if region != "*" and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", region):
        raise LambdaserveError(f"{region!r} is not an AWS region.", "e.g. --region eu-west-1")
    if account != "*" and not re.fullmatch(r"\d{12}", account):
        raise LambdaserveError(f"{account!r} is not an AWS account ID.", "Give its 12 digits.")
    name = project_name(project, state_root(state_dir))
    typer.echo(json.dumps(deployer_policy(name, region, account), indent=2))
