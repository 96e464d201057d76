"""Headless Chromium (Debian's `chromium`) driven by Playwright, for tests that look at the report as a person would.

Skipped when the browser or Playwright is missing, unless REDLAT_REQUIRE_BROWSER=1 (set by `.ci/run`), in which case
a missing browser fails the tests instead of hiding them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENV = "REDLAT_REQUIRE_BROWSER"
# Chromium switches for a sandbox-less container with no network: nothing phones home, nothing needs a GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 asks for the browser tests to run")
    pytest.skip(reason)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium; bash scripts/setup.sh does it)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
