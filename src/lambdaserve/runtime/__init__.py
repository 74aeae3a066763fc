"""The Lambda handler and what it needs, identical in the Lambda image and locally.

Constraints: this package imports only the standard library, the model's own libraries
(lazily, when a model of that format is loaded) and boto3 (only for a model in S3).
It imports nothing else from lambdaserve: the image copies it on its own, and a cold
start pays for every import.
"""

from __future__ import annotations

from pathlib import Path


def runtime_files() -> dict[str, bytes]:
    """The files that make ``lambdaserve.runtime`` importable on its own, by relative path:
    what a built environment (``functions/pythons.py``) and the Lambda image (``deploy/image.py``)
    put beside the model's libraries."""
    package = Path(__file__).resolve().parent.parent
    files = {"lambdaserve/__init__.py": (package / "__init__.py").read_bytes()}
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        files[f"lambdaserve/runtime/{path.name}"] = path.read_bytes()
    return files
