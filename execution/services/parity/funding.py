"""Funding parity: what a live account paid at a funding settlement (ACCOUNT_UPDATE with reason
FUNDING_FEE: the USDT balance change) against what paper's funding rule
(position_math.funding_payment: quantity x mark x rate, longs pay a positive rate) would have
charged the same open positions.

The exchange names the position for an isolated one and none for cross margin: the positions
compared are the event's, else every open position of the account here. The mark and the rate
are the price cache's at the event (the stream's markPrice `r` is the rate being settled until
the next frame after the settlement): an approximation of paper's rule, which uses the settled
rate from fundingRate history and the mark at its sweep. One record per settlement event
(`funding:<event time>`); symbol `*` when it covers several positions. `fee_diff` = live paid -
paper's charge."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from execution.aster.streams.user_events import AccountUpdate
from execution.models import ParityKind, ParityRecord, Position, PositionStatus
from execution.services import price_cache
from execution.services.parity.recording import failed, save_record
from execution.services.position_math import funding_payment, q

FUNDING_FEE = "FUNDING_FEE"
ZERO = Decimal("0")


def record_funding(*, account_id: int, event: AccountUpdate) -> ParityRecord | None:
    """After an ACCOUNT_UPDATE was applied: a FUNDING_FEE settlement's record. Never raises."""
    if event.reason != FUNDING_FEE:
        return None
    try:
        fields = funding_fields(account_id=account_id, event=event)
    except Exception:
        failed("funding", ParityKind.FUNDING)
        return None
    return save_record(**fields) if fields else None


def funding_fields(*, account_id: int, event: AccountUpdate) -> dict[str, object] | None:
    usdt = event.balance("USDT")
    if usdt is None or usdt.balance_change is None:
        return None
    live_paid = -usdt.balance_change
    named = {row.symbol for row in event.positions}
    positions = Position.objects.filter(account_id=account_id, status=PositionStatus.OPEN)
    if named:
        positions = positions.filter(symbol__in=named)
    held = list(positions.values_list("symbol", "side", "quantity"))
    cached = price_cache.cached_prices({symbol for symbol, _side, _quantity in held})
    shadow = ZERO
    missing = []
    for symbol, side, quantity in held:
        price = cached.get(symbol)
        if price is None or price.mark_price is None or price.funding_rate is None:
            missing.append(symbol)
            continue
        shadow += funding_payment(side, quantity, price.mark_price, price.funding_rate)
    symbols = sorted({symbol for symbol, _side, _quantity in held})
    note = f"no cached mark or rate for {', '.join(missing)}" if missing else ""
    if not held:
        note = "no open position here at the settlement"
    # A settlement paper's rule could not price whole has no shadow: no half-priced difference.
    shadow_funding = None if missing or not held else q(shadow)
    return {
        "account_id": account_id,
        "source_key": f"funding:{event.event_time_ms}",
        "symbol": symbols[0] if len(symbols) == 1 else "*",
        "kind": ParityKind.FUNDING,
        "quantity": sum((quantity for _symbol, _side, quantity in held), ZERO),
        "live_funding": q(live_paid),
        "shadow_funding": shadow_funding,
        "fee_diff": q(live_paid - shadow) if shadow_funding is not None else ZERO,
        "live_at": datetime.fromtimestamp(event.event_time_ms / 1000, tz=UTC),
        "note": note,
    }
