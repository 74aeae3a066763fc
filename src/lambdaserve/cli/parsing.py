"""Flag values shared by the AWS commands: counts and rates that can also be removed with ``none``."""

from __future__ import annotations

from lambdaserve.defaults import OFF
from lambdaserve.errors import LambdaserveError


def parse_count(value: str | None, flag: str) -> int | None:
    """A count, or ``none`` (also ``off``) to remove the setting: OFF."""
    if value is None:
        return None
    if value.lower() in ("none", "off"):
        return OFF
    if not value.isdigit():
        raise LambdaserveError(
            f"{flag} {value!r} is not a count.", f"Give a number (e.g. {flag} 2) or 'none'."
        )
    return int(value)


def parse_rate(value: str | None) -> float | None:
    if value is None:
        return None
    if value.lower() in ("none", "off"):
        return OFF
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if rate < 0:
        raise LambdaserveError(
            f"--rate {value!r} is not a number of requests per second.",
            "Give e.g. --rate 10 --burst 20, or --rate none to lift the throttle.",
        )
    return rate
