"""A live protection amend against the simulator: the new legs rest before the old ones are
cancelled, so a stop rests at all times (checked after every order change at the venue, and by
a thread polling its open orders throughout)."""

import threading
from decimal import Decimal

import pytest

from execution.exceptions import ProtectionFailed
from execution.models import PendingOrder
from execution.services import ExecutionService
from execution.services.controls import KEEP, amend_protection
from tests.factories import LiveV1AccountFactory


def no_sleep(seconds):
    return None


def resting_stops(remote):
    with remote.lock:
        return {
            o.client_order_id: o.stop_price for o in remote.orders.values() if o.is_open and o.type == "STOP_MARKET"
        }


@pytest.fixture
def live(sim, db):
    account = LiveV1AccountFactory()
    remote = sim.exchange.accounts["demo-v1"]
    remote.lock = sim.exchange.lock  # the simulator's own lock, for reading its state from the test
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000", stop_loss="60000"
    )
    return account, remote, result.position


def test_a_stop_rests_at_all_times_during_a_live_amend(sim, live):
    account, remote, position = live
    old_ids = set(resting_stops(remote))
    assert len(old_ids) == 1
    seen_without_stop = []
    changes = []

    # After every placement and cancel at the venue: a stop must rest.
    place, cancel = sim.exchange.place_order, sim.exchange.cancel_order

    def checked_place(*args, **kwargs):
        order = place(*args, **kwargs)
        changes.append(("place", order.client_order_id, sorted(resting_stops(remote))))
        return order

    def checked_cancel(*args, **kwargs):
        order = cancel(*args, **kwargs)
        changes.append(("cancel", order.client_order_id, sorted(resting_stops(remote))))
        return order

    sim.exchange.place_order, sim.exchange.cancel_order = checked_place, checked_cancel
    stop = threading.Event()
    polls = [0]

    def poll():
        while not stop.is_set():
            if not resting_stops(remote):
                seen_without_stop.append(True)
            polls[0] += 1

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        legs = amend_protection(account=account, position=position, stop_loss=Decimal("61000"), take_profit=KEEP)
    finally:
        stop.set()
        poller.join()
        sim.exchange.place_order, sim.exchange.cancel_order = place, cancel
    assert polls[0] > 0 and not seen_without_stop
    assert all(stops for _, _, stops in changes), changes
    kinds = [kind for kind, _, _ in changes]
    assert kinds.index("cancel") > max(i for i, kind in enumerate(kinds) if kind == "place")  # new first, old after
    stops = resting_stops(remote)
    assert list(stops.values()) == [Decimal("61000")] and not set(stops) & old_ids
    assert {leg.kind for leg in legs} == {"stop_loss", "take_profit"}
    assert not PendingOrder.objects.filter(venue_cancel_pending=True).exists()
    assert PendingOrder.objects.filter(position=position, status="pending").count() == 2
    resting = {o.client_order_id for o in remote.orders.values() if o.is_open}
    assert resting == set(
        PendingOrder.objects.filter(position=position, status="pending").values_list("client_order_id", flat=True)
    )


def test_a_refused_new_leg_keeps_the_old_ones(sim, live):
    account, remote, position = live
    before = resting_stops(remote)
    place = sim.exchange.place_order

    def refuse(account_, params):
        if params.get("type") == "STOP_MARKET":
            from execution.aster.simulator.exchange import SimError

            raise SimError(-2021, "Order would immediately trigger.")
        return place(account_, params)

    sim.exchange.place_order = refuse
    try:
        with pytest.raises(ProtectionFailed):
            amend_protection(account=account, position=position, stop_loss=Decimal("61000"))
    finally:
        sim.exchange.place_order = place
    assert resting_stops(remote) == before
    from execution.models import Alert

    alert = Alert.objects.get(kind="protection_failed")
    assert alert.account == account and "the previous legs stay" in alert.message
    pending = PendingOrder.objects.filter(position=position, status="pending")
    assert {leg.trigger_price for leg in pending} == {Decimal("60000"), Decimal("70000")}
    assert {o.client_order_id for o in remote.orders.values() if o.is_open} == set(
        pending.values_list("client_order_id", flat=True)
    )
