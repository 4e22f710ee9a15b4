"""Helpers for the user-data stream tests: frames built from the simulator's own orders and trades."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from execution.aster.simulator.exchange import SimAccount, SimOrder, fmt

_clock = itertools.count(1_800_000_000_000, 10)


def event_time() -> int:
    return next(_clock)


def order_frame(
    order: SimOrder,
    *,
    x: str,
    X: str | None = None,
    last_quantity: str = "0",
    last_price: str = "0",
    cumulative: str | None = None,
    trade_id: int = 0,
    commission: str | None = None,
    realized: str = "0",
    E: int | None = None,
    **overrides: Any,
) -> str:
    fired = x == "TRADE" and order.type != "MARKET"
    inner = {
        "s": order.symbol, "c": order.client_order_id, "S": order.side,
        "o": "MARKET" if fired else order.type, "f": order.time_in_force or "GTC", "q": fmt(order.orig_qty),
        "p": "0", "ap": fmt(order.avg_price) if order.executed_qty else "0", "sp": fmt(order.stop_price),
        "x": x, "X": X or order.status, "i": order.order_id, "l": last_quantity,
        "z": cumulative if cumulative is not None else fmt(order.executed_qty), "L": last_price,
        "T": order.update_time_ms or order.time_ms, "t": trade_id, "b": "0", "a": "0", "m": False,
        "R": order.reduce_only, "wt": order.working_type, "ot": order.type, "ps": "BOTH",
        "cp": order.close_position, "rp": realized,
    }  # fmt: skip
    if commission is not None:
        inner["N"], inner["n"] = "USDT", commission
    inner.update(overrides)
    return json.dumps({"e": "ORDER_TRADE_UPDATE", "E": E or event_time(), "T": E or 0, "o": inner})


def fill_frames(remote: SimAccount, order: SimOrder) -> list[str]:
    """The TRADE events of every execution of `order` on the simulator (the last one FILLED)."""
    trades = [t for t in remote.trades if t["orderId"] == order.order_id]
    frames = []
    cumulative = Decimal("0")
    for index, trade in enumerate(trades):
        cumulative += Decimal(trade["qty"])
        last = index == len(trades) - 1
        frames.append(
            order_frame(
                order,
                x="TRADE",
                X=order.status if last else "PARTIALLY_FILLED",
                last_quantity=trade["qty"],
                last_price=trade["price"],
                cumulative=fmt(cumulative),
                trade_id=trade["id"],
                commission=trade["commission"],
                realized=trade["realizedPnl"],
            )
        )
    return frames


def account_update_frame(
    *,
    wallet: str,
    positions: list[tuple[str, str, str]] = (),
    E: int | None = None,  # type: ignore[assignment]
) -> str:
    return json.dumps(
        {
            "e": "ACCOUNT_UPDATE",
            "E": E or event_time(),
            "T": 0,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": wallet, "cw": wallet, "bc": "0"}],
                "P": [
                    {"s": s, "pa": pa, "ep": ep, "cr": "0", "up": "0", "mt": "isolated", "iw": "0", "ps": "BOTH"}
                    for s, pa, ep in positions
                ],
            },
        }
    )


def sim_order(remote: SimAccount, client_order_id: str) -> SimOrder:
    return next(o for o in reversed(list(remote.orders.values())) if o.client_order_id == client_order_id)
