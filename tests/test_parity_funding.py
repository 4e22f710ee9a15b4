"""Funding parity: a live FUNDING_FEE settlement against paper's funding rule."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from execution.aster.streams.frames import MarkPriceUpdate
from execution.aster.streams.user_events import AccountUpdate, BalanceRow, PositionRow
from execution.models import ParityRecord, Position
from execution.services import price_cache
from execution.services.parity.report import parity_report
from execution.services.user_stream.applier import apply_user_event
from tests.factories import LiveV1AccountFactory

pytestmark = pytest.mark.django_db


def now_ms() -> int:
    return int(time.time() * 1000)


def cache_mark(symbol: str, mark: str, rate: str) -> None:
    update = MarkPriceUpdate(symbol, Decimal(mark), None, Decimal(rate), now_ms() + 3_600_000, now_ms())
    price_cache.store_marks([update], received_at=datetime.now(tz=UTC))


def open_position(account, symbol: str, side: str, quantity: str) -> Position:
    return Position.objects.create(
        account=account, symbol=symbol, side=side, quantity=Decimal(quantity), entry_price=Decimal("100"), leverage=5
    )


def funding_event(
    change: str, *, positions: tuple[PositionRow, ...] = (), reason: str = "FUNDING_FEE"
) -> AccountUpdate:
    return AccountUpdate(
        event_time_ms=now_ms(),
        transaction_time_ms=now_ms(),
        reason=reason,
        balances=(BalanceRow("USDT", Decimal("1000"), Decimal("1000"), Decimal(change)),),
        positions=positions,
    )


def test_a_settlement_on_an_isolated_position_is_compared_with_papers_rule():
    account = LiveV1AccountFactory()
    open_position(account, "BTCUSDT", "LONG", "0.5")
    open_position(account, "ETHUSDT", "SHORT", "2")
    cache_mark("BTCUSDT", "65000", "0.0001")
    row = PositionRow("BTCUSDT", Decimal("0.5"), Decimal("100"), None, None, "isolated", None, "BOTH")
    apply_user_event(account_id=account.pk, event=funding_event("-3.30", positions=(row,)))
    record = ParityRecord.objects.get(kind="funding")
    # paper: 0.5 x 65000 x 0.0001 = 3.25 paid by the long; live paid 3.30
    assert (record.symbol, record.live_funding, record.shadow_funding) == ("BTCUSDT", Decimal("3.3"), Decimal("3.25"))
    assert record.fee_diff == Decimal("0.05")
    (group,) = parity_report(account_id=account.pk).groups
    assert (group.kind, group.count, group.fee_diff, group.mean_bps) == ("funding", 1, Decimal("0.05"), None)


def test_a_cross_settlement_covers_every_open_position():
    account = LiveV1AccountFactory()
    open_position(account, "BTCUSDT", "LONG", "0.5")
    open_position(account, "ETHUSDT", "SHORT", "2")
    cache_mark("BTCUSDT", "65000", "0.0001")  # the long pays 3.25
    cache_mark("ETHUSDT", "3500", "0.0002")  # the short receives 1.4
    apply_user_event(account_id=account.pk, event=funding_event("-1.85"))
    record = ParityRecord.objects.get(kind="funding")
    assert (record.symbol, record.live_funding, record.shadow_funding, record.fee_diff) == (
        "*",
        Decimal("1.85"),
        Decimal("1.85"),
        Decimal("0"),
    )


def test_other_account_updates_record_nothing_and_a_duplicate_is_recorded_once():
    account = LiveV1AccountFactory()
    open_position(account, "BTCUSDT", "LONG", "0.5")
    cache_mark("BTCUSDT", "65000", "0.0001")
    apply_user_event(account_id=account.pk, event=funding_event("5", reason="DEPOSIT"))
    assert not ParityRecord.objects.exists()
    event = funding_event("-3.25")
    apply_user_event(account_id=account.pk, event=event)
    apply_user_event(account_id=account.pk, event=event)
    assert ParityRecord.objects.filter(kind="funding").count() == 1


def test_a_missing_cached_rate_is_noted():
    account = LiveV1AccountFactory()
    open_position(account, "SOLUSDT", "LONG", "1")
    apply_user_event(account_id=account.pk, event=funding_event("-0.01"))
    record = ParityRecord.objects.get(kind="funding")
    assert record.shadow_funding is None and "no cached mark or rate for SOLUSDT" in record.note
    assert record.fee_diff == 0  # no shadow: not the live payment whole


def test_cross_settlements_sent_per_symbol_are_compared_per_symbol():
    """Two cross positions, one event per symbol at the same time (no P rows): each is matched to
    its symbol (the paper charge nearest to what live paid), and neither is lost to the other's key."""
    account = LiveV1AccountFactory()
    open_position(account, "BTCUSDT", "LONG", "0.5")
    open_position(account, "ETHUSDT", "SHORT", "2")
    cache_mark("BTCUSDT", "65000", "0.0001")  # the long pays 3.25
    cache_mark("ETHUSDT", "3500", "0.0002")  # the short receives 1.4
    btc, eth = funding_event("-3.26"), funding_event("1.4")
    eth = AccountUpdate(btc.event_time_ms, btc.transaction_time_ms, eth.reason, eth.balances, eth.positions)
    apply_user_event(account_id=account.pk, event=btc)
    apply_user_event(account_id=account.pk, event=eth)
    records = {r.symbol: r for r in ParityRecord.objects.filter(kind="funding")}
    assert set(records) == {"BTCUSDT", "ETHUSDT"}
    assert (records["BTCUSDT"].shadow_funding, records["BTCUSDT"].fee_diff) == (Decimal("3.25"), Decimal("0.01"))
    assert (records["ETHUSDT"].shadow_funding, records["ETHUSDT"].quantity) == (Decimal("-1.4"), Decimal("2"))
