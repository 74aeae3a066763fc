"""The ``lambdaserve`` application: global options and command registration."""

from __future__ import annotations

import typer

from lambdaserve import __version__
from lambdaserve.cli import (
    admin_commands,
    bundle_commands,
    cost_command,
    deploy_commands,
    drift_command,
    explain_command,
    export_image_command,
    feedback_command,
    iam_command,
    invoke_command,
    key_commands,
    loadtest_command,
    log_command,
    serve_command,
)
from lambdaserve.cli.capture_command import capture_app
from lambdaserve.cli.export_command import export_app

app = typer.Typer(
    name="lambdaserve",
    help=(
        "Turn a trained model file into a real-time prediction endpoint, behaving like "
        "AWS API Gateway + Lambda.\n\n"
        "Example:\n\n"
        "    lambdaserve package model.pickle --sample '[\"some text\"]'\n\n"
        "    lambdaserve invoke bundles/model --data '[\"some text\"]'"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lambdaserve {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Global options."""


app.command("package")(bundle_commands.package)
app.command("inspect")(bundle_commands.inspect)
app.command("invoke")(invoke_command.invoke)
app.command("serve")(serve_command.serve)
app.command("promote")(admin_commands.promote)
app.command("rollback")(admin_commands.rollback)
app.command("logs")(log_command.logs)
app.command("deploy")(deploy_commands.deploy_command)
app.command("destroy")(deploy_commands.destroy_command)
app.command("status")(deploy_commands.status_command)
app.command("iam-policy")(iam_command.iam_policy)
app.command("cost")(cost_command.cost)
app.command("explain")(explain_command.explain)
app.command("feedback")(feedback_command.feedback)
app.command("loadtest")(loadtest_command.loadtest)
app.command("drift")(drift_command.drift)


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )


models_app = _group(
    "Publish model versions and see what each stage serves.\n\n"
    "Example:\n\n    lambdaserve models push iris.pickle --name iris\n\n    lambdaserve models show iris"
)
models_app.command("push")(admin_commands.push)
models_app.command("list")(admin_commands.list_models)
models_app.command("show")(admin_commands.show_model)
plans_app = _group(
    "Usage plans: a throttle and a quota for the API keys in them, on the stages they name.\n\n"
    "Example:\n\n    lambdaserve plans create basic --rate 5 --burst 10 --quota 1000/DAY --stage test,prod"
)
plans_app.command("create")(key_commands.create_plan)
plans_app.command("update")(key_commands.update_plan)
plans_app.command("list")(key_commands.list_plans)
keys_app = _group(
    "API keys: callers send one as x-api-key.\n\n"
    "Example:\n\n    lambdaserve keys create --name alice --plan basic"
)
keys_app.command("create")(key_commands.create_key)
keys_app.command("list")(key_commands.list_keys)
keys_app.command("revoke")(key_commands.revoke_key)
keys_app.command("show")(key_commands.show_key)
export_app.command("image")(export_image_command.export_image)
app.add_typer(models_app, name="models")
app.add_typer(plans_app, name="plans")
app.add_typer(keys_app, name="keys")
app.add_typer(export_app, name="export")
app.add_typer(capture_app, name="capture")


def main() -> None:
    app()
