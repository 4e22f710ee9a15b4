"""The browser tests' one Chromium per module (the system's: Debian's package, which .ci/run
installs; a vendor download is not reachable here). Tests here are marked `browser`: skipped with a
reason where no Chromium is installed, a failure in CI (REQUIRE_SERVICES), like the service tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module. Playwright's sync API keeps an event loop in this thread, so
    Django's ORM calls in the tests would be refused as "async"; they are plain sync calls here."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
