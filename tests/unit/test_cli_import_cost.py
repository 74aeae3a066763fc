"""Importing the CLI stays cheap: every command pays for it, and ``serve`` pays before INIT.

typer needs every command's signature, so ``lambdaserve <anything>`` imports every command
module. Those import the library inside the commands that use it (see ``cli/__init__.py``);
these tests catch a top-level import that would bring it back. Times are not asserted
(they vary with the machine); which modules get imported does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lambdaserve

SRC = Path(lambdaserve.__file__).resolve().parent.parent

# What the CLI may import at its top: itself, and the light modules it shares with the library.
ALLOWED = ("lambdaserve.cli", "lambdaserve.errors", "lambdaserve.defaults")
# Third-party modules only some commands need, each tens of milliseconds to import.
HEAVY = [
    "httpx",
    "prometheus_client",
    "boto3",
    "botocore",
    "uvicorn",
    "starlette",
    "jinja2",
    "numpy",
    "sklearn",
]

PROBE = """
import json, sys
import typer.main
import lambdaserve.cli.app
imported = sorted(sys.modules)
typer.main.get_command(lambdaserve.cli.app.app)  # what --help does: every signature, resolved
print(json.dumps({"imported": imported, "built": sorted(sys.modules)}))
"""


def _fresh_import() -> dict[str, list[str]]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}  # the lambdaserve under test, not another install
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    modules: dict[str, list[str]] = json.loads(done.stdout)
    return modules


def _too_heavy(modules: list[str]) -> list[str]:
    ours = [
        m
        for m in modules
        if m.startswith("lambdaserve.") and not any(m == a or m.startswith(a + ".") for a in ALLOWED)
    ]
    theirs = [m for m in HEAVY if m in modules]
    return ours + theirs


def test_importing_the_cli_imports_none_of_the_library() -> None:
    modules = _fresh_import()
    heavy = _too_heavy(modules["imported"])
    assert not heavy, f"import these inside the commands that use them: {heavy}"
    # Building the commands (as --help does) reads every signature: none may need the library.
    heavy = _too_heavy(modules["built"])
    assert not heavy, f"a command's signature or option default needs these: {heavy}"
