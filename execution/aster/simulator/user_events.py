"""User-data event payloads the simulated exchange pushes (ASTER_WS.md §2.3-2.4), exact field names.

Pure builders: the exchange calls them under its lock with the state as it is right after the
change, and hands the finished dicts to its event listeners (the WebSocket server).
Decimals are strings, times and ids are integers, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from execution.aster.simulator.exchange import SimAccount, SimOrder, SimPosition

CONDITIONAL_TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
AVG_PRICE_QUANTUM = Decimal("0.00001")  # as the REST avgPrice


@dataclass(frozen=True)
class FillFacts:
    """One trade of an order: what the TRADE event's `l`, `L`, `t`, `n`, `rp` report."""

    trade_id: int
    quantity: Decimal
    price: Decimal
    commission: Decimal
    realized: Decimal


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def order_trade_update(
    order: SimOrder, execution: str, *, event_ms: int, fill: FillFacts | None = None
) -> dict[str, Any]:
    """`ORDER_TRADE_UPDATE` for `order` as it stands; `execution` is the event's `x`.

    A triggered STOP_MARKET / TAKE_PROFIT_MARKET reports `o`="MARKET" and keeps its type in `ot`
    (the Binance design Aster inherits, ASTER_WS.md §2.3)."""
    current_type = "MARKET" if order.triggered else order.type
    avg = order.avg_price.quantize(AVG_PRICE_QUANTUM) if order.executed_qty else Decimal(0)
    body: dict[str, Any] = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": current_type,
        "f": order.time_in_force,
        "q": _fmt(order.orig_qty),
        "p": _fmt(order.price),
        "ap": _fmt(avg),
        "sp": _fmt(order.stop_price),
        "x": execution,
        "X": order.status,
        "i": order.order_id,
        "l": _fmt(fill.quantity) if fill else "0",
        "z": _fmt(order.executed_qty),
        "L": _fmt(fill.price) if fill else "0",
        "T": event_ms,
        "t": fill.trade_id if fill else 0,
        "b": "0",
        "a": "0",
        "m": False,
        "R": order.reduce_only,
        "wt": order.working_type,
        "ot": order.type,
        "ps": "BOTH",
        "rp": _fmt(fill.realized) if fill else "0",
    }
    if fill is not None and fill.commission:  # omitted when there is no commission (§2.3)
        body["N"] = "USDT"
        body["n"] = _fmt(fill.commission)
    if order.type in CONDITIONAL_TYPES:  # `cp` is pushed for conditional orders only
        body["cp"] = order.close_position
    return {"e": "ORDER_TRADE_UPDATE", "E": event_ms, "T": event_ms, "o": body}


def account_update(
    account: SimAccount,
    *,
    reason: str,
    event_ms: int,
    positions: dict[str, tuple[SimPosition, Decimal]],
    balance_change: Decimal = Decimal(0),
) -> dict[str, Any]:
    """`ACCOUNT_UPDATE`: the USDT balance and the rows of the symbols that changed.

    `positions` maps symbol -> (position, mark price). A position that just closed is reported
    once with `pa` "0" (ASTER_WS.md §2.4)."""
    rows = []
    for symbol, (pos, mark) in positions.items():
        isolated = account.margin_type.get(symbol, "CROSSED") == "ISOLATED"
        leverage = account.leverage_for(symbol)
        rows.append(
            {
                "s": symbol,
                "pa": _fmt(pos.amount),
                "ep": _fmt(pos.entry),
                "cr": _fmt(pos.realized),
                "up": _fmt(pos.amount * (mark - pos.entry)) if pos.amount else "0",
                "mt": "isolated" if isolated else "cross",
                "iw": _fmt(abs(pos.amount) * pos.entry / leverage) if isolated and pos.amount else "0",
                "ps": "BOTH",
            }
        )
    balance = _fmt(account.balance)
    return {
        "e": "ACCOUNT_UPDATE",
        "E": event_ms,
        "T": event_ms,
        "a": {
            "m": reason,
            "B": [{"a": "USDT", "wb": balance, "cw": balance, "bc": _fmt(balance_change)}],
            "P": rows,
        },
    }
