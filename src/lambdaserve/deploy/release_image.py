"""Which image a release runs: the user's own, or the one lambdaserve builds for it.

lambdaserve's image is determined by three things, each found before anything is written:

- the Python: the model's own, or a newer one asked for (``--python``) when the model
  carries no pickled code; a Python the function was deployed with is kept;
- the base: chosen by that Python and the architecture (deploy/base.py), and pinned by
  digest: the pin the deployed function records, else the one last recorded here (a deploy
  or an ``export image``), else the current one, pulled by the builder
  (``--refresh-base`` always takes the current one);
- the lock: the release's pins resolved for that Python and platform (deploy/lock.py).

``deploy``, ``export image`` and ``export cloudformation`` share this, so each names the
same image for the same release.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from lambdaserve.deploy.base import (
    Base,
    choose_base,
    deployed_python,
    newest_python_build,
    pinned_from_tags,
    target_python,
)
from lambdaserve.deploy.image import Builder, ImageContext, detect_builder, image_context, image_tag
from lambdaserve.deploy.lock import lock_requirements
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.spec import Release
from lambdaserve.errors import LambdaserveError
from lambdaserve.functions.pythons import Progress
from lambdaserve.store.store import Store

BuilderFactory = Callable[[str | None], Builder]


class Builders:
    """The builder, found once and only when needed; why it cannot be used, when it cannot."""

    def __init__(self, preferred: str | None = None, factory: BuilderFactory = detect_builder) -> None:
        self.preferred, self.factory = preferred, factory
        self.found: Builder | None = None
        self.problem: LambdaserveError | None = None

    def get(self) -> Builder | None:
        if self.found is None and self.problem is None:
            try:
                self.found = self.factory(self.preferred)
            except LambdaserveError as exc:
                self.problem = exc
        return self.found


class NoBuilders(Builders):
    """For what must not pull anything (export cloudformation): a base is pinned only from records."""

    def get(self) -> Builder | None:
        return None


@dataclass(frozen=True)
class BuiltImage:
    base: Base
    context: ImageContext
    uri: str


def built_image(
    store: Store,
    names: Names,
    release: Release,
    *,
    arch: str,
    python: str | None,
    function_tags: dict[str, str],
    refresh_base: bool,
    builders: Builders,
    notes: list[str],
    progress: Progress,
) -> BuiltImage:
    """lambdaserve's image for ``release``: its pinned base, its lock, its tag in the project's repository."""
    if not release.requirements:
        raise LambdaserveError(
            f"Version {release.version} of {release.model} records no requirements to build an image from.",
            "Push the model again with this lambdaserve (it pins them), or use an image of your own "
            "(deploy --image-uri; the exported template's ImageUri parameter).",
        )
    asked = python or keep_python(deployed_python(function_tags), release)
    wanted = choose_base(target_python(release.python, release.carries_code, asked), arch)
    base = pinned_base(store, names, wanted, function_tags, refresh_base, builders, notes, progress)
    lock = lock_requirements(list(release.requirements), base, release.created, progress)
    context = image_context(base, lock)
    return BuiltImage(base, context, names.image_uri(image_tag(context)))


def keep_python(deployed: str | None, release: Release) -> str | None:
    """A newer Python the function was deployed with (--python), kept while the model allows it."""
    if deployed is None or deployed == release.python or release.carries_code:
        return None
    return deployed if int(deployed.split(".")[1]) > int(release.python.split(".")[1]) else None


def pinned_base(
    store: Store,
    names: Names,
    wanted: Base,
    function_tags: dict[str, str],
    refresh: bool,
    builders: Builders,
    notes: list[str],
    progress: Progress,
) -> Base:
    """The base pinned by the deployed function, else by the last record here, else pinned now."""
    if not refresh:
        pinned = pinned_from_tags(function_tags, wanted) or recorded_base(store, names, wanted)
        if pinned is not None:
            return pinned
    if wanted.own_runtime:
        wanted = replace(wanted, python_build=newest_python_build(wanted.python, wanted.arch))
    builder = builders.get()
    if builder is None:
        why = "nothing is pulled here" if isinstance(builders, NoBuilders) else "no builder here"
        notes.append(
            f"The base image {wanted.image} is pinned by digest when it is pulled to build; "
            f"{why}, so the image's tag is provisional."
        )
        return wanted
    return builder.pin(wanted, progress)


def recorded_base(store: Store, names: Names, wanted: Base) -> Base | None:
    """The newest pin of this base recorded by a deploy or an ``export image`` of the project."""
    for deployment in reversed(store.deployments(names.project)):
        if deployment.status in ("deployed", "exported") and deployment.base:
            pinned = pinned_from_tags(json.loads(deployment.base), wanted)
            if pinned is not None:
                return pinned
    return None
