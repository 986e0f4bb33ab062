"""Fixtures shared by the browser tests: Debian's Chromium through Playwright (one browser per
module), and the demo login printed by the ``served`` fixture each module starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS
from tests.live import Served, demo_credentials


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def demo(served: Served) -> tuple[str, str]:
    return demo_credentials(served)
