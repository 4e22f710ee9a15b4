"""A rate limit on a TP/SL leg (issue #10, defect 6).

A short limit is waited out and the same leg sent again; a long ban leaves no leg marked
`failed` that the exchange may still hold, and reconciliation ends with exactly the legs it
tracks (no duplicate take-profit).
"""

import time
from decimal import Decimal

import pytest

from execution.aster.client import AsterClient
from execution.aster.errors import AsterRateLimited
from execution.exceptions import ProtectionFailed
from execution.models import PendingOrder, Position
from execution.services import ExecutionService
from execution.services.reconciliation import reconcile_account
from tests.factories import LiveV1AccountFactory


def no_sleep(seconds):
    return None


class Limits:
    """Rate-limit replies aimed at the client: the first take-profit (the second leg: the stop goes
    first), then (for a ban) everything."""

    def __init__(self, monkeypatch, *, retry_in: float, ban: bool) -> None:
        self.retry_in, self.ban, self.banned, self.stop_refusals = retry_in, ban, False, 0
        new_order, cancel_order = AsterClient.new_order, AsterClient.cancel_order

        def limited_new_order(client, *args, **kwargs):
            if self.banned:
                raise self.refusal()
            if kwargs.get("type") == "TAKE_PROFIT_MARKET" and self.stop_refusals == 0:
                self.stop_refusals += 1
                self.banned = self.ban
                raise self.refusal()
            return new_order(client, *args, **kwargs)

        def limited_cancel(client, *args, **kwargs):
            if self.banned:
                raise self.refusal()
            return cancel_order(client, *args, **kwargs)

        monkeypatch.setattr(AsterClient, "new_order", limited_new_order)
        monkeypatch.setattr(AsterClient, "cancel_order", limited_cancel)

    def refusal(self) -> AsterRateLimited:
        return AsterRateLimited("Too many requests", retry_at=time.time() + self.retry_in, code=-1003, http_status=429)


def protective_resting(remote):
    return sorted(o.client_order_id for o in remote.orders.values() if o.is_open and o.close_position)


@pytest.fixture
def live(sim, db):
    return LiveV1AccountFactory(), sim.exchange.accounts["demo-v1"]


def test_a_short_rate_limit_on_a_leg_is_waited_out(live, monkeypatch):
    account, remote = live
    limits = Limits(monkeypatch, retry_in=1.0, ban=False)
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="90000", stop_loss="60000"
    )
    assert limits.stop_refusals == 1
    assert protective_resting(remote) == sorted(p.client_order_id for p in result.pending_orders)
    assert set(PendingOrder.objects.values_list("status", flat=True)) == {"pending"}


def test_a_long_ban_leaves_no_failed_leg_the_exchange_holds_and_no_duplicate(live, monkeypatch, settings):
    account, remote = live
    limits = Limits(monkeypatch, retry_in=300.0, ban=True)
    with pytest.raises(ProtectionFailed):
        ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="90000", stop_loss="60000"
        )
    take = PendingOrder.objects.get(kind="take_profit")
    stop = PendingOrder.objects.get(kind="stop_loss")
    assert stop.client_order_id in protective_resting(remote)  # placed before the ban, could not be cancelled
    assert stop.status == "cancelled" and stop.venue_cancel_pending  # never `failed` while it may rest
    assert take.status == "failed"  # refused: the exchange does not hold it
    position = Position.objects.get(status="open")  # the safety close was refused by the ban too
    assert position.needs_protection

    limits.banned = False  # the ban ends; the next reconciliation repairs
    run = reconcile_account(account, sleep=no_sleep)
    assert run.status == "repaired", list(run.items.values_list("kind", "outcome", "message"))
    armed = sorted(PendingOrder.objects.filter(status="pending").values_list("client_order_id", flat=True))
    assert protective_resting(remote) == armed and len(armed) == 2  # one TP and one SL, no duplicate
    assert remote.positions["BTCUSDT"].amount == Decimal("0.01")


def test_a_leg_whose_outcome_the_venue_cannot_tell_is_never_failed(live, monkeypatch):
    """An ambiguous leg (503 after the venue took it) and a venue that cannot answer the lookup
    either: the leg is cancelled here with its cancel pending there, never `failed` or left armed;
    the next reconciliation cancels it there and places the stop again."""
    from execution.aster.errors import AsterOutcomeUnknown
    from execution.exceptions import ExchangeRejected
    from execution.services.adapters.live import LiveExecutionAdapter

    account, remote = live
    account.keep_unprotected_positions = True
    account.save(update_fields=["keep_unprotected_positions"])
    new_order = AsterClient.new_order

    def accepted_then_503(client, *args, **kwargs):
        result = new_order(client, *args, **kwargs)
        if kwargs.get("type") == "STOP_MARKET" and not PendingOrder.objects.filter(venue_cancel_pending=True).exists():
            raise AsterOutcomeUnknown("HTTP 503", client_order_id=kwargs["client_order_id"], http_status=503)
        return result

    def lookup_fails(self, *, symbol, client_order_id):
        raise ExchangeRejected("the venue is unreachable", code="EXCHANGE_ERROR")

    monkeypatch.setattr(AsterClient, "new_order", accepted_then_503)
    with monkeypatch.context() as during:
        during.setattr(LiveExecutionAdapter, "lookup_order", lookup_fails)
        with pytest.raises(ProtectionFailed):
            ExecutionService(account, sleep=no_sleep).execute_market_order(
                symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
            )
    stop = PendingOrder.objects.get(kind="stop_loss")
    assert (stop.status, stop.venue_cancel_pending) == ("cancelled", True)
    assert Position.objects.get(status="open").needs_protection
    monkeypatch.setattr(AsterClient, "new_order", new_order)
    run = reconcile_account(account, sleep=no_sleep)
    assert run.status == "repaired", list(run.items.values_list("kind", "outcome", "message"))
    armed = sorted(PendingOrder.objects.filter(status="pending").values_list("client_order_id", flat=True))
    assert protective_resting(remote) == armed and len(armed) == 1
