"""The live adapter's set-up memory: the position and asset modes and the short balance are
held in the process (no cache round trip per order); the margin type and leverage per symbol
are the venue's values as the last process that set them wrote them (shared: one round trip),
and everything is forgotten when it may no longer be true."""

import pytest
import responses

from execution.exceptions import ExchangeRejected
from execution.services import ExecutionService
from execution.services.exchange import reset_exchange_clients
from execution.services.setup_cache import SETUP, ProcessCache
from tests.factories import LiveV1AccountFactory
from tests.market import BASE
from tests.test_live_execution import FakeLiveVenue, no_sleep

pytestmark = pytest.mark.django_db
SETUP_CALLS = {
    ("GET", "/fapi/v1/positionSide/dual"),
    ("GET", "/fapi/v1/multiAssetsMargin"),
    ("POST", "/fapi/v1/marginType"),
    ("POST", "/fapi/v1/leverage"),
}


@pytest.fixture
def venue():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeLiveVenue(rsps)


def order(account, *, leverage=5, side="BUY"):
    return ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side=side, quantity="0.01", leverage=leverage
    )


def setup_calls(venue):
    return [call for call in venue.calls() if call in SETUP_CALLS]


def test_the_set_up_is_checked_once_then_remembered(venue):
    account = LiveV1AccountFactory(margin_type="ISOLATED")
    order(account)
    first = setup_calls(venue)
    assert sorted(set(first)) == sorted(SETUP_CALLS)
    order(account, side="SELL")
    order(account)
    assert setup_calls(venue) == first  # nothing more: the flags are remembered
    assert venue.calls().count(("GET", "/fapi/v2/balance")) == 1  # reused for LIVE_BALANCE_CACHE_SECONDS


def test_a_changed_margin_type_or_leverage_is_set_again(venue):
    account = LiveV1AccountFactory(margin_type="ISOLATED")
    order(account)
    before = len(setup_calls(venue))
    order(account, leverage=7)
    assert setup_calls(venue)[before:] == [("POST", "/fapi/v1/leverage")]
    account.margin_type = "CROSSED"
    account.save()
    before = len(setup_calls(venue))
    order(account, leverage=7)
    # The modes are checked again for the new margin type (a cross account skips Multi-Assets).
    assert setup_calls(venue)[before:] == [("GET", "/fapi/v1/positionSide/dual"), ("POST", "/fapi/v1/marginType")]


def test_no_need_to_change_counts_as_set_and_is_remembered(venue):
    venue.rsps.replace(
        responses.POST,
        f"{BASE}/fapi/v1/marginType",
        status=400,
        json={"code": -4046, "msg": "No need to change margin type."},
    )
    account = LiveV1AccountFactory(margin_type="ISOLATED")
    order(account)
    order(account, side="SELL")
    assert venue.calls().count(("POST", "/fapi/v1/marginType")) == 1


def test_a_refusal_that_says_the_set_up_drifted_forgets_it(venue):
    account = LiveV1AccountFactory()
    order(account)
    assert venue.calls().count(("GET", "/fapi/v1/positionSide/dual")) == 1
    # Switched to hedge mode behind the service's back: the venue refuses the one-way order.
    venue.order_replies.append((400, {"code": -4061, "msg": "Order's position side does not match user's setting."}))
    with pytest.raises(ExchangeRejected):
        order(account, side="SELL")
    order(account, side="SELL")
    assert venue.calls().count(("GET", "/fapi/v1/positionSide/dual")) == 2  # checked again
    assert venue.calls().count(("POST", "/fapi/v1/leverage")) == 2


def test_reset_exchange_clients_forgets_every_remembered_value(venue):
    account = LiveV1AccountFactory()
    order(account)
    reset_exchange_clients()
    order(account, side="SELL")
    assert venue.calls().count(("GET", "/fapi/v1/positionSide/dual")) == 2


def test_the_process_cache_expires_and_deletes_by_prefix():
    now = [100.0]
    store = ProcessCache(clock=lambda: now[0])
    store.set("live:setup:1:a", "x", ttl=10)
    store.set("live:setup:12:a", "y", ttl=10)
    store.set("live:setup:2:a", "z", ttl=1)
    now[0] += 2
    assert store.get("live:setup:2:a") is None and store.get("live:setup:1:a") == "x"
    store.delete_prefix("live:setup:1:")
    assert store.get("live:setup:1:a") is None and store.get("live:setup:12:a") == "y"
    assert SETUP is not store


def test_the_symbol_set_up_is_a_lease_shared_by_orders_at_the_held_value_and_exclusive_for_a_change():
    """Runs on Redis when REDIS_URL is set, in the process otherwise."""
    from execution.services.setup_cache import BUSY, CHANGE, IN_FLIGHT_TTL, OK, SymbolSetup

    now = [1_000_000.0]
    store = SymbolSetup(clock=lambda: now[0])
    key = "live:setup:test:BTCUSDT"
    first = store.claim(key, "ISOLATED:5")
    assert (first.status, first.held) == (CHANGE, "")
    assert store.claim(key, "ISOLATED:5").status == BUSY  # being set
    store.settle(key, first, "ISOLATED:5")
    second = store.claim(key, "ISOLATED:5")
    assert (second.status, second.held) == (OK, "ISOLATED:5")  # shared
    assert store.claim(key, "ISOLATED:10").status == BUSY  # two orders in flight on 5
    store.release(key, first)
    assert store.claim(key, "ISOLATED:10").status == BUSY  # still one
    store.release(key, second)
    change = store.claim(key, "ISOLATED:10")
    assert (change.status, change.held) == (CHANGE, "ISOLATED:5")
    store.abandon(key)  # the venue refused: unknown, anyone may set it
    again = store.claim(key, "ISOLATED:5")
    assert (again.status, again.held) == (CHANGE, "")
    store.settle(key, again, "ISOLATED:5")
    assert store.claim(key, "ISOLATED:10").status == BUSY
    now[0] += IN_FLIGHT_TTL + 1  # the worker holding it died: its claim lapses
    assert store.claim(key, "ISOLATED:10").status == CHANGE
    store.forget(key)
    assert store.claim(key, "ISOLATED:10").held == ""


@pytest.mark.redis
def test_an_unreachable_set_up_store_before_the_send_refuses_the_order_unsent(venue, monkeypatch):
    """The shared set-up store (Redis) unreachable before the wire: a clear refusal, the intent
    rejected (not left `submitting` for reconciliation), and no order at the venue."""
    import redis

    from execution.exceptions import ExecutionError
    from execution.models import Trade
    from execution.services import setup_cache

    # Redis in use (the weight budget works), but the set-up store's connection is refused.
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0")
    monkeypatch.setattr(setup_cache, "_redis_client", lambda: dead)
    account = LiveV1AccountFactory()
    with pytest.raises(ExecutionError) as refused:
        order(account)
    assert refused.value.code == "SETUP_UNAVAILABLE"
    assert "not sent" in refused.value.message
    assert ("POST", "/fapi/v1/order") not in venue.calls()
    assert Trade.objects.get().status == "rejected"


def test_an_unreachable_set_up_store_after_the_answer_still_books_the_fill(venue, monkeypatch):
    """The store down when the order's claim is released (the order is filled at the venue): the
    fill is booked as usual; the claim lapses after IN_FLIGHT_TTL."""
    import redis

    from execution.models import Trade
    from execution.services.setup_cache import SYMBOL_SETUP

    def down(*args, **kwargs):
        raise redis.ConnectionError("Connection refused.")

    monkeypatch.setattr(SYMBOL_SETUP, "release", down)
    account = LiveV1AccountFactory()
    result = order(account)
    assert result.trade.status == "filled"
    assert Trade.objects.get().status == "filled"
