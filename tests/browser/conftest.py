"""Browser fixtures: Debian's Chromium driven by Playwright, never Playwright's own download.

``.ci/run`` installs the ``chromium`` package; Playwright is told where it is
(``executable_path``), so ``playwright install`` is never needed. Screenshots go to
``test-output/console/`` (ignored by git); copy the current ones to ``docs/images/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-output" / "console"

# The real-server helpers live beside the gateway's integration tests.
sys.path.insert(0, str(ROOT / "tests" / "integration"))


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One browser per module, closed with it: Playwright's sync API runs an event loop in
    this thread while it is open, and the other suites' ``asyncio.run`` must not meet it."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        hint = "Debian's chromium is missing: apt-get install chromium (as .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(hint)  # CI installs it: a browser test that cannot run there is a failure
        pytest.skip(hint)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


AXE_VERSION = "4.14.1"
AXE_DIR = ROOT / "test-output" / "axe"


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core, Deque's accessibility rules, from the npm registry (installed once under
    test-output/, which git ignores); skipped without npm outside CI, as Chromium is."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            hint = "npm is missing: apt-get install npm (as .ci/run does)"
            if os.environ.get("CI") == "true":
                pytest.fail(hint)
            pytest.skip(hint)
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(AXE_DIR), "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"],
            check=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return script


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
