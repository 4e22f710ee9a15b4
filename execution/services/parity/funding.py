"""Funding parity: what a live account paid at a funding settlement (ACCOUNT_UPDATE with reason
FUNDING_FEE: the USDT balance change) against what paper's funding rule
(position_math.funding_payment: quantity x mark x rate, longs pay a positive rate) would have
charged the same open positions.

The exchange names the position for an isolated one and none for cross margin: the positions
compared are the event's, else every open position of the account here. Whether a cross
settlement comes as one event per symbol or one for all is not documented (ASTER_WS.md: "only
`B`"); per symbol is the likelier (funding is booked per position), so a cross event is matched
to the one symbol, or all (`*`), whose paper charge is nearest to what live paid. The mark and the rate
are the price cache's at the event (the stream's markPrice `r` is the rate being settled until
the next frame after the settlement): an approximation of paper's rule, which uses the settled
rate from fundingRate history and the mark at its sweep. One record per settlement event
(`funding:<symbol>:<event time>`, `*` for all). `fee_diff` = live paid - paper's charge."""

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
    charges: dict[str, Decimal] = {}
    quantities: dict[str, Decimal] = {}
    missing = []
    for symbol, side, quantity in held:
        quantities[symbol] = quantities.get(symbol, ZERO) + quantity
        price = cached.get(symbol)
        if price is None or price.mark_price is None or price.funding_rate is None:
            missing.append(symbol)
            continue
        charges[symbol] = charges.get(symbol, ZERO) + funding_payment(
            side, quantity, price.mark_price, price.funding_rate
        )
    note = f"no cached mark or rate for {', '.join(missing)}" if missing else ""
    if not held:
        note = "no open position here at the settlement"
    symbol, shadow = _settled(live_paid, charges, quantities) if not missing and held else ("*", None)
    if len(quantities) == 1:
        symbol = next(iter(quantities))
    return {
        "account_id": account_id,
        "source_key": f"funding:{symbol}:{event.event_time_ms}",
        "symbol": symbol,
        "kind": ParityKind.FUNDING,
        "quantity": quantities.get(symbol, sum(quantities.values(), ZERO)),
        "live_funding": q(live_paid),
        # A settlement paper's rule could not price whole has no shadow: no half-priced difference.
        "shadow_funding": q(shadow) if shadow is not None else None,
        "fee_diff": q(live_paid - shadow) if shadow is not None else ZERO,
        "live_at": datetime.fromtimestamp(event.event_time_ms / 1000, tz=UTC),
        "note": note,
    }


def _settled(live_paid: Decimal, charges: dict[str, Decimal], quantities: dict[str, Decimal]) -> tuple[str, Decimal]:
    """Which settlement this event is: a cross event names no position, and whether the venue
    sends one event per symbol or one for all is not documented (docs: "only the balance B").
    The candidate (one symbol's charge, or all of them: `*`) nearest to what live paid; with a
    single position, that one."""
    candidates = {**charges, "*": sum(charges.values(), ZERO)} if len(charges) > 1 else dict(charges)
    return min(candidates.items(), key=lambda item: (abs(live_paid - item[1]), item[0] != "*"))
