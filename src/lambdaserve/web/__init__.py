"""The web console's templates and static files (no Python logic lives here).

``templates/`` holds the jinja2 pages the gateway renders (``gateway/console.py``);
``static/`` the stylesheet, the pages' scripts and the vendored charting library
(``static/vendor/uplot``, see its README). Everything ships inside the package, so the
console needs no network and no build step.
"""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
