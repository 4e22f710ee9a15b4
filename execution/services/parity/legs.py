"""The shadow of a TP/SL fill: when and at what price paper's trigger rule would have fired.

Paper fires a leg when the stream process stores a price that crosses its trigger
(paper.triggers.is_crossed, on the leg's working type: the mark, or the last price for
CONTRACT_PRICE). So the paper side of a live leg fill is the first cached price that crosses the
leg's trigger: its exchange event time is when paper would have fired, its value the price.

Two orders of arrival, both handled:
- the crossing price is already cached when the fill arrives on the user-data stream: the record
  is complete at once (`record_leg_fill`, called by the user-stream applier after the commit);
- the fill arrives first (the exchange fills at once, the mark stream publishes every second):
  the record waits (`shadow_at` null) and the market stream completes it when it stores the
  crossing price (`complete_trigger_shadows`, called where the stream reacts to moved prices).
A record still waiting after AWAIT_LIMIT is left as it is (the report counts it without delay).

`trigger_delay_ms` = paper's trigger time - the exchange's fill time (positive: paper later);
`trigger_price_diff` = live fill price - paper's trigger price.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from execution.aster.streams.user_events import OrderTradeUpdate
from execution.models import (
    ParityKind,
    ParityRecord,
    PendingOrder,
    PendingOrderKind,
    Trade,
    TradeReason,
    WorkingType,
)
from execution.services import price_cache
from execution.services.paper.triggers import is_crossed
from execution.services.parity.arithmetic import paper_fee, slippage_bps
from execution.services.parity.recording import failed, save_record
from execution.services.position_math import q
from execution.services.price_cache import PriceReading

logger = logging.getLogger(__name__)
LEG_REASONS = frozenset({TradeReason.TAKE_PROFIT, TradeReason.STOP_LOSS})
AWAIT_LIMIT = timedelta(hours=1)
FEE_ASSETS = ("", "USDT")


def record_leg_fill(*, account_id: int, event: OrderTradeUpdate, trade: Trade | None) -> ParityRecord | None:
    """After a leg's execution was booked (`trade`: its closing trade), record its shadow. Never
    raises; does nothing for any other execution."""
    if trade is None or trade.reason not in LEG_REASONS:
        return None
    try:
        leg = PendingOrder.objects.filter(account_id=account_id, client_order_id=event.client_order_id).first()
        if leg is None:
            return None
        live_ms = event.trade_time_ms or event.event_time_ms
        live_fee = event.commission if event.commission_asset in FEE_ASSETS else Decimal("0")
        fields: dict[str, object] = {
            "account_id": account_id,
            "trade_id": trade.pk,
            "pending_order_id": leg.pk,
            "source_key": f"{leg.client_order_id}:{event.trade_id or event.cumulative_quantity}",
            "symbol": leg.symbol,
            "kind": ParityKind.TAKE_PROFIT if leg.kind == PendingOrderKind.TAKE_PROFIT else ParityKind.STOP_LOSS,
            "side": leg.side,
            "quantity": event.last_quantity,
            "live_price": event.last_price,
            "live_fee": live_fee,
            "fee_diff": Decimal("0"),  # until paper's side is known (the report leaves it out meanwhile)
            "live_at": datetime.fromtimestamp(live_ms / 1000, tz=UTC),
        }
        reading = _reading(leg)
        if reading is not None and is_crossed(leg, reading.value):
            fields.update(shadow_fields(fields, reading))
    except Exception:
        failed("leg", "tp/sl")
        return None
    return save_record(**fields)


def shadow_fields(live: dict[str, object], reading: PriceReading) -> dict[str, object]:
    """Paper's side of a leg fill, from the price that crossed its trigger."""
    quantity, price, live_at = live["quantity"], live["live_price"], live["live_at"]
    assert isinstance(quantity, Decimal) and isinstance(price, Decimal) and isinstance(live_at, datetime)
    live_fee = live["live_fee"]
    assert isinstance(live_fee, Decimal)
    shadow_fee = paper_fee(quantity, reading.value)
    shadow_at = datetime.fromtimestamp(reading.event_time_ms / 1000, tz=UTC)
    return {
        "shadow_price": reading.value,
        "shadow_fee": shadow_fee,
        "fee_diff": q(live_fee - shadow_fee),
        "slippage_bps": slippage_bps(str(live["side"]), price, reading.value),
        "shadow_at": shadow_at,
        "trigger_delay_ms": round((shadow_at - live_at).total_seconds() * 1000),
        "trigger_price_diff": q(price - reading.value),
    }


def complete_trigger_shadows(symbols: Iterable[str]) -> int:
    """Complete the leg records still waiting for paper's trigger in these symbols, from the
    prices just stored. Never raises; returns how many were completed."""
    try:
        return _complete(set(symbols))
    except Exception:
        failed("trigger", "tp/sl")
        return 0


def _complete(symbols: set[str]) -> int:
    if not symbols:
        return 0
    # The waiting records are few (and on the partial index `parity_awaiting_trigger`); the moved
    # symbols may be the whole market: filtered here rather than in a long IN list every second.
    waiting = ParityRecord.objects.filter(
        kind__in=(ParityKind.TAKE_PROFIT, ParityKind.STOP_LOSS),
        shadow_at__isnull=True,
        created_at__gte=timezone.now() - AWAIT_LIMIT,
    ).select_related("pending_order")
    completed = 0
    for record in waiting:
        leg = record.pending_order
        if leg is None or record.symbol not in symbols:
            continue
        reading = _reading(leg)
        if reading is None or not is_crossed(leg, reading.value):
            continue
        live: dict[str, object] = {
            "quantity": record.quantity,
            "live_price": record.live_price,
            "live_at": record.live_at,
            "live_fee": record.live_fee,
            "side": record.side,
        }
        completed += ParityRecord.objects.filter(pk=record.pk, shadow_at__isnull=True).update(
            **shadow_fields(live, reading)
        )
    return completed


def _reading(leg: PendingOrder) -> PriceReading | None:
    """The cached price of the leg's working type (what paper's rule judges it on)."""
    if leg.working_type == WorkingType.CONTRACT_PRICE:
        return price_cache.last_readings([leg.symbol]).get(leg.symbol)
    return price_cache.mark_price(leg.symbol)
