"""What the end-to-end suites share: a headless Chromium for the module (Debian's chromium, driven
by Playwright; its own browser downloads are never used)."""

from __future__ import annotations

import pytest

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
