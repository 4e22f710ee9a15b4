"""ORDER_TRADE_UPDATE executions, booked through the ledger like every other fill.

Each execution is keyed by (exchange order id, trade id) in `ExchangeFill`, inserted in the
same transaction as its booking, under the account lock: a second delivery finds the key and
changes nothing. Whose order it was decides what is booked:

- one of our protective legs: the closing trade (the exchange's price, commission and realized
  PnL), the position reduced or closed, the leg `filled` once the order is, its sibling
  cancelled here and (after commit, by the caller) on the exchange; partial fills accumulate;
- a liquidation (`autoclose-…`, type LIQUIDATION) or ADL: a `liquidation` trade, the position
  reduced or closed, its resting legs settled;
- an order-path intent (entry, close): the order path books its own fill, so nothing;
- anyone else's: recorded, and left to reconciliation.

A leg that is already `filled` here (reconciliation booked it, or an earlier delivery did)
changes nothing; nor does an execution of a leg still resting that reconciliation booked first
(its cumulative quantity `z` within what reconciliation booked for the leg): it is recorded as
seen, so each execution is booked once, by whichever side saw it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.audit import batched_events, record_event
from accounts.models import Account
from execution.aster.streams.user_events import OrderTradeUpdate
from execution.models import (
    ARMED_PROTECTIVE,
    ExchangeFill,
    PendingOrder,
    PendingOrderStatus,
    Position,
    Trade,
    TradeReason,
    TradeStatus,
)
from execution.services.alerts import alert_liquidation
from execution.services.ledger import (
    book_fill,
    booked_leg_fills,
    cancel_sibling,
    leg_fill_client_id,
    leg_quantity_booked_by_reconciliation,
    lock_account,
    mark_leg_filled,
    open_position,
    protective_fill_reason,
    reduce_only_trade,
)
from execution.services.position_math import q
from execution.services.user_stream.outcome import Applied, UserEventRejected

ZERO = Decimal("0")
FEE_ASSETS = ("", "USDT")  # a commission paid in another asset is not a USDT fee


@dataclass
class BookedExecution:
    applied: Applied
    trade: Trade | None = None
    legs_made_final: bool = False  # legs that may rest on the exchange were made final here


def fill_key(event: OrderTradeUpdate) -> str:
    """The trade id; an execution without one (t=0) is keyed by the order's cumulative quantity."""
    return str(event.trade_id) if event.trade_id else f"z{event.cumulative_quantity}"


def apply_execution(*, account_id: int, event: OrderTradeUpdate) -> BookedExecution:
    """Book one execution (one transaction, account locked). The caller cancels on the exchange
    the legs it made final, after the commit."""
    now = timezone.now()
    with transaction.atomic(), batched_events():
        account = lock_account(account_id)
        key = fill_key(event)
        if ExchangeFill.objects.filter(
            account=account, exchange_order_id=event.order_id, exchange_trade_id=key
        ).exists():
            return BookedExecution(Applied("duplicate", detail=f"order {event.order_id} trade {key} already seen"))
        leg = (
            PendingOrder.objects.select_for_update()
            .filter(account=account, client_order_id=event.client_order_id)
            .first()
        )
        if leg is not None:
            booked = _leg_execution(account, leg, event, now)
        elif event.is_liquidation or event.is_adl:
            booked = _liquidation(account, event, now)
        elif (
            intent := Trade.objects.filter(account=account, client_order_id=event.client_order_id).first()
        ) is not None:
            booked = BookedExecution(Applied("already_booked", detail=f"order-path intent {intent.status}"), intent)
        else:
            record_foreign(account, event)
            booked = BookedExecution(Applied("recorded_foreign"))
        ExchangeFill.objects.create(
            account=account,
            symbol=event.symbol,
            exchange_order_id=event.order_id,
            exchange_trade_id=key,
            client_order_id=event.client_order_id,
            side=event.side,
            quantity=event.last_quantity,
            price=event.last_price,
            commission=event.commission,
            realized_pnl=event.realized_pnl or ZERO,
            trade=booked.trade,
            event_time_ms=event.event_time_ms,
        )
    return booked


def _fee(event: OrderTradeUpdate) -> Decimal:
    return event.commission if event.commission_asset in FEE_ASSETS else ZERO


def _leg_execution(account: Account, leg: PendingOrder, event: OrderTradeUpdate, now: datetime) -> BookedExecution:
    if leg.symbol != event.symbol or leg.side != event.side:
        raise UserEventRejected(
            f"{event.client_order_id}: the event says {event.side} {event.symbol}, our leg is {leg.side} {leg.symbol}"
        )
    if leg.status == PendingOrderStatus.FILLED:
        return BookedExecution(Applied("already_booked", detail=f"{leg.kind} {leg.client_order_id} already filled"))
    if leg.status not in ARMED_PROTECTIVE:
        # Final here (cancelled or failed) yet it executed there: the books disagree with the
        # exchange, and only a full comparison can tell what to do.
        record_event(
            account=account,
            kind="userstream.fill_of_final_leg",
            subject=leg,
            message=f"{leg.kind} {leg.client_order_id} is {leg.status} here but executed on the exchange",
            data=execution_view(event),
        )
        return BookedExecution(Applied("recorded", reconcile=True, detail="fill of a leg final here"))
    position = open_position(account, leg.symbol)
    trade = None
    closed = False
    # Reconciliation books the executions it reads on the exchange before the stream delivers
    # them (a partial fill of a resting leg, or the leg's whole fill): one it already booked is
    # recorded as seen, not booked again.
    reconciled = event.cumulative_quantity <= leg_quantity_booked_by_reconciliation(leg)
    if position is not None and not reconciled:
        count, _quantity = booked_leg_fills(leg)
        trade = reduce_only_trade(
            account=account,
            symbol=leg.symbol,
            side=leg.side,
            quantity=event.last_quantity,
            leverage=position.leverage,
            client_order_id=leg_fill_client_id(leg, count + 1),
            reason=protective_fill_reason(leg.kind),
        )
        booked = book_fill(
            account=account,
            position=position,
            trade=trade,
            quantity=event.last_quantity,
            price=event.last_price,
            fee=_fee(event),
            leverage=position.leverage,
            now=now,
            exchange_order_id=event.order_id,
            keep_pending=leg,
        )
        adopt_exchange_realized_pnl(trade, booked.closed_position or booked.position, event)
        closed = booked.closed_position is not None
    # Executions of this order not seen yet (out of order, or missed): the leg is not given up as
    # filled on this event, which would make them look booked; reconciliation books the rest.
    seen = (
        ExchangeFill.objects.filter(account=account, exchange_order_id=event.order_id).aggregate(total=Sum("quantity"))[
            "total"
        ]
        or ZERO
    )
    gap = (
        event.status == "FILLED"
        and seen + event.last_quantity < event.cumulative_quantity
        and booked_leg_fills(leg)[1] < event.cumulative_quantity  # reconciliation booked them
    )
    if event.status == "FILLED" and not gap:
        price = event.average_price or event.last_price
        mark_leg_filled(leg, trade=trade, account=account, now=now, price=price, quantity=event.cumulative_quantity)
        cancel_sibling(leg, account=account, now=now)
    else:
        record_event(
            account=account,
            kind="pendingorder.partially_filled",
            subject=leg,
            data={"filled": event.cumulative_quantity, "of": event.quantity, "price": event.last_price},
        )
    action = "booked" if trade is not None else "already_booked" if reconciled else "recorded"
    detail = f"{leg.kind} {event.last_quantity} @ {event.last_price}" + ("" if position else " (no local position)")
    if reconciled:
        detail += " (booked by reconciliation)"
    if gap:
        detail += f"; {event.cumulative_quantity - seen - event.last_quantity} of its fills not seen yet"
    filled = event.status == "FILLED" and not gap
    return BookedExecution(Applied(action, reconcile=gap, detail=detail), trade, legs_made_final=closed or filled)


def _liquidation(account: Account, event: OrderTradeUpdate, now: datetime) -> BookedExecution:
    position = open_position(account, event.symbol)
    if position is None:
        # Reconciliation closed it already (or never knew it): recorded; positions are compared
        # on the next ACCOUNT_UPDATE and by reconciliation.
        record_event(
            account=account,
            kind="userstream.liquidation_without_position",
            message=f"{event.symbol} liquidation with no local open position",
            data=execution_view(event),
        )
        return BookedExecution(Applied("recorded", detail="liquidation without a local position"))
    trade = reduce_only_trade(
        account=account,
        symbol=event.symbol,
        side=event.side,
        quantity=event.last_quantity,
        leverage=position.leverage,
        client_order_id=f"liq-{position.pk}-{fill_key(event)}",
        reason=TradeReason.LIQUIDATION,
    )
    booked = book_fill(
        account=account,
        position=position,
        trade=trade,
        quantity=event.last_quantity,
        price=event.last_price,
        fee=_fee(event),
        leverage=position.leverage,
        now=now,
        exchange_order_id=event.order_id,
    )
    adopt_exchange_realized_pnl(trade, booked.closed_position or booked.position, event)
    price = event.last_price
    transaction.on_commit(lambda: alert_liquidation(account=account, position=position, price=price))
    record_event(
        account=account,
        kind="position.liquidated" if booked.closed_position is not None else "position.partially_liquidated",
        subject=position,
        message="ADL" if event.is_adl else "liquidation",
        data=execution_view(event),
    )
    return BookedExecution(
        Applied("booked", detail=f"liquidation {event.last_quantity} @ {event.last_price}"),
        trade,
        legs_made_final=booked.closed_position is not None,
    )


def adopt_exchange_realized_pnl(trade: Trade, position: Position | None, event: OrderTradeUpdate) -> None:
    """The exchange's realized PnL (`rp`, before commission) replaces the one computed here;
    the difference (a local entry that drifted from the exchange's) moves the position's too."""
    if event.realized_pnl is None or trade.status != TradeStatus.FILLED or trade.quantity != event.last_quantity:
        return  # not reported, or booked for less than the execution (nothing left to reduce)
    exchange_net = q(event.realized_pnl - trade.fee)
    delta = exchange_net - trade.realized_pnl
    if not delta:
        return
    trade.realized_pnl = exchange_net
    trade.save(update_fields=["realized_pnl", "updated_at"])
    if position is not None and trade.position_id == position.pk:
        position.realized_pnl = q(position.realized_pnl + delta)
        position.save(update_fields=["realized_pnl", "updated_at"])


def record_foreign(account: Account, event: OrderTradeUpdate) -> None:
    record_event(
        account=account,
        kind="userstream.foreign_order",
        message=f"{event.execution_type} {event.status} of an order not placed by this service: left to reconciliation",
        data=execution_view(event),
    )


def execution_view(event: OrderTradeUpdate) -> dict[str, object]:
    return {
        "symbol": event.symbol,
        "client_order_id": event.client_order_id,
        "order_id": event.order_id,
        "trade_id": event.trade_id,
        "side": event.side,
        "type": event.order_type,
        "original_type": event.original_type,
        "execution_type": event.execution_type,
        "status": event.status,
        "last_quantity": event.last_quantity,
        "last_price": event.last_price,
        "cumulative_quantity": event.cumulative_quantity,
        "commission": event.commission,
        "realized_pnl": event.realized_pnl,
        "event_time_ms": event.event_time_ms,
    }
