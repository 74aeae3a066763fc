"""The options several commands share, defined once."""

from __future__ import annotations

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object instead of text.")
TRUST_OPTION = typer.Option(
    False, "--trust", help="Load a file even though the scan flags it. Only for files you made yourself."
)
ENV_OPTION = typer.Option(
    "auto",
    "--env",
    help="Python to run the model in: auto (match the pins), local (this one), isolated.",
)
REQUIREMENT_OPTION = typer.Option(
    None,
    "--requirement",
    "-r",
    help="Pin a distribution yourself, e.g. -r scikit-learn==1.9.1 (repeatable).",
)
STATE_OPTION = typer.Option(
    None, "--state-dir", help="State directory [default: ./.lambdaserve or $LAMBDASERVE_HOME]."
)
STAGE_OPTION = typer.Option(..., "--stage", help="The stage: the first segment of /STAGE/MODEL/predict.")
REMOTE_OPTION = typer.Option(False, "--remote", help="Act on the stage deployed to AWS, not the local one.")
PROJECT_OPTION = typer.Option(
    None,
    "--project",
    help="Project name [default: $LAMBDASERVE_PROJECT, else the state folder's parent's name].",
)
REGION_OPTION = typer.Option(
    None, "--region", help="AWS region [default: where the project is deployed, else $AWS_REGION]."
)
PROFILE_OPTION = typer.Option(None, "--profile", help="AWS profile from ~/.aws/config.")
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Print the plan; make no call that writes.")
REFERENCE_OPTION = typer.Option(
    None,
    "--reference",
    help="A sample of the training data (.csv with a header, or .jsonl; for text models .jsonl of "
    "strings or a CSV with a text column): its statistics go into the bundle for lambdaserve drift, and "
    "for /explain on tabular models. The rows themselves are not kept.",
)
# The monitoring commands (drift, feedback, capture pull): which captured requests.
CAPTURED_STAGE_OPTION = typer.Option(None, "--stage", help="Only requests to this stage [default: all].")
WINDOW_OPTION = typer.Option("day", "--window", help="Per day or per hour.")
CAPTURES_REMOTE_OPTION = typer.Option(
    False, "--remote", help="The deployed function's captures, from CloudWatch Logs on AWS."
)
