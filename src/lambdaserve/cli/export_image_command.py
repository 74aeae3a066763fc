"""``lambdaserve export image``: the build context of a model's function image, for users' own pipelines.

The directory holds exactly what ``lambdaserve deploy`` builds: the Dockerfile (FROM the
pinned base), ``requirements.txt`` (the full lock, ``==`` pins with ``--hash`` lines),
``packages/`` (the locked wheels installed for the image's platform), ``python/`` (the
CPython build, for Python 3.10 and 3.11) and ``lambdaserve/`` (the runtime). Any builder
builds it as it is (``docker build --platform linux/arm64 DIR``); its tag is the one
``deploy`` and ``export cloudformation`` name. The base's pin is recorded in the store, so
a later deploy or template export uses the same one.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from lambdaserve.cli.options import JSON_OPTION, PROJECT_OPTION, STATE_OPTION
from lambdaserve.cli.output import handle_errors, out, print_json, progress, warn
from lambdaserve.cli.state import open_store, require_model, state_root
from lambdaserve.errors import LambdaserveError


@handle_errors
def export_image(
    model: str = typer.Argument(..., help="The model's name, as pushed with `lambdaserve models push`."),
    output: Path = typer.Option(..., "--output", "-o", help="A new (or empty) directory for the context."),
    version: int | None = typer.Option(None, "--version", help="The model version [default: the latest]."),
    arch: str = typer.Option("x86_64", "--arch", help="x86_64 or arm64 (Graviton)."),
    python: str | None = typer.Option(
        None, "--python", help="Run on a newer Python than the model's, e.g. 3.12 (no code pickled by value)."
    ),
    refresh_base: bool = typer.Option(
        False,
        "--refresh-base",
        help="Pin the current base image (and CPython patch release), not the recorded one.",
    ),
    builder: str | None = typer.Option(
        None, "--builder", help="docker, podman or buildah, to pull the base and pin its digest."
    ),
    project: str | None = PROJECT_OPTION,
    state_dir: Path | None = STATE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the build context of a model's Lambda image: Dockerfile, full lock, wheels, runtime.

    The same image `lambdaserve deploy` builds, for a pipeline of your own: build it with
    any builder (only COPY steps: an arm64 image builds on x86_64), push it, and deploy it
    with `lambdaserve deploy --image-uri` or the exported template's ImageUri parameter.
    requirements.txt installs with `pip install --require-hashes --only-binary=:all:`.

    Example:

        lambdaserve export image news -o news-image

        lambdaserve export image news -o news-arm --arch arm64 && docker build --platform linux/arm64 news-arm
    """
    from lambdaserve.deploy.image import write_context
    from lambdaserve.deploy.lock import pip_install_command
    from lambdaserve.deploy.names import Names, project_name
    from lambdaserve.deploy.release_image import Builders, built_image
    from lambdaserve.deploy.spec import Release
    from lambdaserve.store.records import Deployment

    # The image's registry is not known here: the tag is what matters (deploy pushes it to ECR).
    names = Names(project_name(project, state_root(state_dir)), "ACCOUNT", "REGION")
    notes: list[str] = []
    with open_store(state_dir) as store, progress() as reporter:
        require_model(store, model)
        records = store.versions(model)
        record = records[-1] if version is None else store.version(model, version)
        release = Release.from_version(record, store.model_path(record), store.root / "references")
        image = built_image(
            store,
            names,
            release,
            arch=arch,
            python=python,
            function_tags={},
            refresh_base=refresh_base,
            builders=Builders(builder),
            notes=notes,
            progress=reporter,
        )
        if output.exists() and not output.is_dir():
            raise LambdaserveError(f"{output} is a file.", "Give a directory for the build context (-o).")
        write_context(image.context, output, reporter)
        if image.base.digest:
            store.record_deployment(
                Deployment(
                    project=names.project,
                    region="",
                    account="",
                    model=model,
                    stage="*",
                    version=release.version,
                    image=image.uri,
                    base=json.dumps(image.base.tags(), sort_keys=True),
                    status="exported",
                )
            )
    tag = image.uri.rsplit(":", 1)[-1]
    size = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    for note in notes:
        warn(note)
    if as_json:
        print_json(
            {
                "model": model,
                "version": release.version,
                "directory": str(output),
                "tag": tag,
                "base": image.base.tags(),
                "platform": image.base.platform,
                "python": image.base.python,
                "packages": image.context.lock.packages,
                "bytes": size,
            }
        )
        return
    what = f"the build context of {model} version {release.version}"
    out.print(f"[green]✓[/] Wrote {what} to {output} ({size / 1e6:.0f} MB)")
    out.print(f"  base:  {image.base.describe()}")
    out.print(f"  lock:  {len(image.context.lock.packages)} distributions with hashes (requirements.txt)")
    out.print(f"  tag:   {tag}  (the tag lambdaserve deploy gives this image)")
    out.print(f"  pip:   {pip_install_command(image.base)}  (what packages/ holds)")
    local_name = f"lambdaserve-{names.project}:{tag}"
    out.print(
        f"  build: docker build --platform {image.base.platform} -t {local_name} {shlex.quote(str(output))}"
    )
