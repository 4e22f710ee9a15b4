"""Shared fixtures, and the rule for tests that need real services.

A test marked `postgres`, `redis` or `browser` skips with a visible reason when the service is not
configured, except when REQUIRE_SERVICES is set (CI), where that skip is a failure.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile("default", deadline=None, max_examples=100)
hypothesis_settings.load_profile("default")


def _postgres_configured() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def chromium_path() -> str | None:
    """The system's Chromium (Debian's package; .ci/run installs it), for the browser tests."""
    import shutil

    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


def _browser_available() -> bool:
    return chromium_path() is not None


SERVICE_CHECKS = {
    "postgres": (_postgres_configured, "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"),
    "redis": (_redis_configured, "needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0"),
    "browser": (_browser_available, "needs Chromium: apt-get install chromium (or set CHROMIUM_PATH)"),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (available, reason) in SERVICE_CHECKS.items():
        if item.get_closest_marker(marker) and not available():
            if os.environ.get("REQUIRE_SERVICES"):
                pytest.fail(f"REQUIRE_SERVICES is set but this test {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture
def user(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def paper_account(db):
    from tests.factories import PaperAccountFactory

    return PaperAccountFactory()


@pytest.fixture(autouse=True)
def fresh_exchange_clients():
    """Each test gets new process-wide clients and an empty cache (no exchangeInfo, rate-limit,
    account set-up or sweep state carried over)."""
    from django.core.cache import cache

    from execution.services.exchange import reset_exchange_clients

    reset_exchange_clients()
    cache.clear()
    yield
    reset_exchange_clients()
    cache.clear()


@pytest.fixture
def market():
    """Public AsterDEX market data served from a SimExchange through `responses` (no trading endpoint)."""
    import responses

    from tests.market import FakeMarket

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeMarket(rsps)


@pytest.fixture
def sim(settings):
    """The local simulator over HTTP, with the docs' demo accounts; ASTER_BASE_URL points at it."""
    from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3
    from execution.aster.simulator.server import AsterSimulator
    from execution.services.exchange import reset_exchange_clients

    with AsterSimulator(seed=5) as simulator:
        simulator.exchange.add_account(**DEMO_V1)
        simulator.exchange.add_account(**DEMO_V3)
        settings.ASTER_BASE_URL = simulator.url
        reset_exchange_clients()
        yield simulator
        reset_exchange_clients()
