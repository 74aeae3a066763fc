"""The ``lambdaserve`` application: global options and command registration."""

from __future__ import annotations

import typer

from lambdaserve import __version__
from lambdaserve.cli import bundle_commands, invoke_command, serve_command

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


def main() -> None:
    app()
