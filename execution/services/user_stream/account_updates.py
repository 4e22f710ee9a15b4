"""ACCOUNT_UPDATE: the live wallet balance, and the exchange's positions compared with ours.

The balance is stored on the account (`live_wallet_balance`, `live_balance_at`) with a
conditional UPDATE that never lets an older event overwrite a newer one (events are not
guaranteed in order). Positions are only compared here, never written: a difference is
returned, and the caller has the account reconciled (positions are repaired in one place).
A position absent from the event is unchanged (ASTER_WS.md §2.4); `pa` "0" means it closed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Q

from accounts.models import Account
from execution.aster.streams.user_events import AccountUpdate, PositionRow
from execution.models import Position, PositionStatus
from execution.services.user_stream.outcome import Applied

ZERO = Decimal("0")
ENTRY_TOLERANCE = Decimal("0.000001")  # relative: the exchange's entry and ours may round differently
WALLET_ASSET = "USDT"


def event_time(event_time_ms: int) -> datetime:
    return datetime.fromtimestamp(event_time_ms / 1000, tz=UTC)


def apply_account_update(*, account_id: int, event: AccountUpdate) -> Applied:
    stored = _store_balance(account_id, event)
    mismatches = position_mismatches(account_id=account_id, rows=event.positions)
    detail = "balance stored" if stored else "no newer balance"
    return Applied("compared", reconcile=bool(mismatches), detail=detail, mismatches=mismatches)


def _store_balance(account_id: int, event: AccountUpdate) -> bool:
    row = event.balance(WALLET_ASSET)
    if row is None:
        return False
    at = event_time(event.event_time_ms)
    # One conditional UPDATE (the row lock is its own): an older event never overwrites a newer one.
    return (
        Account.objects.filter(pk=account_id, is_paper_trading=False)
        .filter(Q(live_balance_at__isnull=True) | Q(live_balance_at__lte=at))
        .update(live_wallet_balance=row.wallet_balance, live_balance_at=at)
        == 1
    )


def position_mismatches(*, account_id: int, rows: tuple[PositionRow, ...] | list[PositionRow]) -> list[str]:
    """The symbols (with what differs) where the exchange's rows disagree with our open positions."""
    if not rows:
        return []
    local = {
        p.symbol: p
        for p in Position.objects.filter(
            account_id=account_id, status=PositionStatus.OPEN, symbol__in={r.symbol for r in rows}
        )
    }
    mismatches = []
    for row in rows:
        position = local.get(row.symbol)
        ours = position.quantity * position.direction if position is not None else ZERO
        if row.position_side != "BOTH":  # hedge mode: never compared as one position (reconciliation fails closed)
            mismatches.append(f"{row.symbol}: a {row.position_side} row there (hedge mode), one-way here")
        elif row.amount != ours:
            mismatches.append(f"{row.symbol}: amount {row.amount} there, {ours} here")
        elif position is not None and not _same_entry(row.entry_price, position.entry_price):
            mismatches.append(f"{row.symbol}: entry {row.entry_price} there, {position.entry_price} here")
    return mismatches


def _same_entry(theirs: Decimal, ours: Decimal) -> bool:
    return abs(theirs - ours) <= ours * ENTRY_TOLERANCE
