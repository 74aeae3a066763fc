"""Pin the distributions a model needs, at the versions it was made with.

The modules a model file imports map to distributions (``sklearn`` -> ``scikit-learn``).
Each version comes, in this order, from:

1. the user (``--requirement name==version``);
2. the file itself, where a library records it (scikit-learn's ``_sklearn_version``);
3. the distribution installed here (``importlib.metadata``).

A module that is not installed here and records no version cannot be pinned; it is
kept by name, with a warning that says how to pin it. The pins are what the Lambda
image installs and what a local execution environment must match.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

# Top-level modules whose distribution name differs, for modules not installed here.
KNOWN_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "PyYAML",
    "onnxruntime": "onnxruntime",
}
# Modules that ship with Python or that pickles name without needing a package.
_NOT_PACKAGES = {"__main__", "__builtin__", "copy_reg", "builtins"}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str | None
    source: str  # "user" | "file" | "installed" | "unknown"
    modules: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "modules": list(self.modules),
        }


def current_python_version() -> str:
    """The Python a bundle made here pins: major.minor, as Lambda's runtimes are named."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> tuple[str, str]:
    """``name==version`` -> (name, version); anything else is a usage error."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!*-]+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not of the form name==version (e.g. scikit-learn==1.9.1)")
    return match.group(1), match.group(2)


@cache
def _module_index() -> dict[str, list[str]]:
    return {k: list(v) for k, v in metadata.packages_distributions().items()}


def distribution_of(module: str) -> str | None:
    """The distribution that provides a top-level module, or None for the standard library."""
    if module in _NOT_PACKAGES or module in sys.stdlib_module_names:
        return None
    providers = _module_index().get(module)
    if providers:
        return providers[0]
    return KNOWN_DISTRIBUTIONS.get(module, module)


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def pin_requirements(
    modules: Iterable[str],
    recorded: dict[str, str] | None = None,
    user: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> list[Pin]:
    """Pins for the top-level ``modules`` plus ``extra`` distributions the format needs."""
    recorded = {canonical(k): v for k, v in (recorded or {}).items()}
    chosen = {canonical(n): (n, v) for n, v in (parse_requirement(r) for r in user)}
    by_distribution: dict[str, list[str]] = {}
    for module in modules:
        distribution = distribution_of(module)
        if distribution:
            by_distribution.setdefault(distribution, []).append(module)
    for distribution in extra:
        by_distribution.setdefault(distribution, [])
    for name, _version in chosen.values():
        by_distribution.setdefault(name, [])

    pins: dict[str, Pin] = {}
    for distribution, provided in by_distribution.items():
        key = canonical(distribution)
        if key in pins:
            continue
        if key in chosen:
            pins[key] = Pin(*chosen[key], "user", tuple(provided))
            continue
        name = _display_name(distribution)
        installed = installed_version(distribution)
        if key in recorded:
            pins[key] = Pin(name, recorded[key], "file", tuple(provided))
        elif installed is not None:
            pins[key] = Pin(name, installed, "installed", tuple(provided))
        else:
            pins[key] = Pin(name, None, "unknown", tuple(provided))
    return sorted(pins.values(), key=lambda p: canonical(p.name))


def _display_name(distribution: str) -> str:
    try:
        return str(metadata.metadata(distribution)["Name"])
    except (metadata.PackageNotFoundError, KeyError):
        return distribution
