"""A plan is a list of steps; the executor runs them in order, with progress.

Steps are plain values (as chalice's planner makes them), so a dry run prints the plan
and runs nothing. A step's parameters may hold ``Ref`` (a value from an earlier step's
answer, such as the id of a REST API created two steps before) or ``Fmt`` (a string
built from refs), as values and as dictionary keys alike. A plan with no step that
writes is a deploy with nothing to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lambdaserve.errors import LambdaserveError


@dataclass(frozen=True)
class Ref:
    """``outputs[step][path...]``: part of an earlier step's answer."""

    step: str
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "<" + ".".join((self.step, *self.path)) + ">"


@dataclass(frozen=True)
class Fmt:
    """A string with ``{name}`` fields filled from refs at run time."""

    template: str
    refs: tuple[tuple[str, Ref], ...]

    def __str__(self) -> str:
        return self.template.format(**{name: str(ref) for name, ref in self.refs})


def fmt(template: str, **refs: Ref) -> Fmt:
    return Fmt(template, tuple(sorted(refs.items())))


@dataclass(frozen=True)
class Call:
    """One AWS API call; ``output`` names its answer for later steps' refs."""

    service: str
    operation: str
    params: dict[str, Any]
    label: str
    output: str | None = None


@dataclass(frozen=True)
class Wait:
    """A boto3 waiter: e.g. until a function's update has finished."""

    service: str
    waiter: str
    params: dict[str, Any]
    label: str


@dataclass(frozen=True)
class PushImage:
    """Build the image (unless the builder has it) and push it to ECR as ``uri``."""

    uri: str
    label: str
    output: str | None = None


Step = Call | Wait | PushImage


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the plan chose not to do, and why

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    @property
    def writes(self) -> bool:
        return any(not isinstance(step, Wait) for step in self.steps)

    def describe(self) -> list[str]:
        return [describe_step(step) for step in self.steps]


def describe_step(step: Step) -> str:
    if isinstance(step, Call):
        return f"{step.label}  [{step.service} {step.operation}]"
    if isinstance(step, Wait):
        return f"{step.label}  [wait {step.service} {step.waiter}]"
    return f"{step.label}  [build and push]"


class Runner(Protocol):
    """What the executor needs from AWS (deploy/awsclient.py's AWS, or a fake)."""

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]: ...

    def wait(self, service: str, waiter: str, **params: Any) -> None: ...


class Reporter(Protocol):
    def step(self, message: str) -> None: ...

    def detail(self, line: str) -> None: ...


ImagePusher = Callable[[str], dict[str, Any]]


def resolve(value: Any, outputs: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        found: Any = outputs.get(value.step)
        for key in value.path:
            if not isinstance(found, dict) or key not in found:
                raise LambdaserveError(f"The deploy plan needs {value}, which no earlier step produced.")
            found = found[key]
        return found
    if isinstance(value, Fmt):
        return value.template.format(**{name: resolve(ref, outputs) for name, ref in value.refs})
    if isinstance(value, dict):
        # Keys too: a canary's weight is keyed by a Lambda version that this plan may publish.
        return {resolve(k, outputs): resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outputs) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, outputs) for v in value)
    return value


def execute(
    plan: Plan, aws: Runner, progress: Reporter, push_image: ImagePusher | None = None
) -> dict[str, Any]:
    """Run every step in order; return each named step's answer.

    A failing step stops the run and raises; every step before it has happened, and since
    the planner reads what AWS has each time, running the same deploy again goes on from
    there.
    """
    outputs: dict[str, Any] = {}
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, start=1):
        progress.step(f"[{number}/{total}] {step.label}")
        if isinstance(step, Call):
            params = resolve(step.params, outputs)
            answer = aws.call(step.service, step.operation, **params)
            answer.pop("ResponseMetadata", None)
            if step.output:
                outputs[step.output] = answer
        elif isinstance(step, Wait):
            aws.wait(step.service, step.waiter, **resolve(step.params, outputs))
        else:
            if push_image is None:
                raise LambdaserveError("The plan needs an image built and pushed, and no builder was given.")
            answer = push_image(step.uri)
            if step.output:
                outputs[step.output] = answer
    return outputs
