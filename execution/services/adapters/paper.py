"""Paper trading: fills simulated against real market data; nothing is sent to a trading endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from execution.models import Position, PositionStatus
from execution.services.adapters.base import (
    ExecutionAdapter,
    Fill,
    MarketOrder,
    ProtectiveOrderAck,
    ProtectiveOrderRequest,
    RemotePosition,
)


class PaperExecutionAdapter(ExecutionAdapter):
    mode = "paper"

    def execute_market_order(self, order: MarketOrder) -> Fill:
        raise NotImplementedError("Paper market orders arrive with the paper engine.")

    def place_protective_orders(self, requests: Sequence[ProtectiveOrderRequest]) -> list[ProtectiveOrderAck]:
        # Paper TP/SL live only in the database (PendingOrder rows); nothing to send.
        return [ProtectiveOrderAck(client_order_id=request.client_order_id) for request in requests]

    def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        # A paper order is cancelled by its PendingOrder's status; there is no venue.
        return None

    def fetch_positions(self) -> list[RemotePosition]:
        rows = Position.objects.filter(account=self.account, status=PositionStatus.OPEN)
        return [
            RemotePosition(
                symbol=row.symbol,
                side=row.side,
                quantity=row.quantity,
                entry_price=row.entry_price,
                leverage=row.leverage,
                mark_price=row.mark_price,
                unrealized_pnl=row.unrealized_pnl,
                liquidation_price=row.liquidation_price,
            )
            for row in rows
        ]
