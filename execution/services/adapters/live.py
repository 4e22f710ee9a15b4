"""Live trading: signed AsterDEX orders."""

from __future__ import annotations

from collections.abc import Sequence

from execution.services.adapters.base import (
    ExecutionAdapter,
    Fill,
    MarketOrder,
    ProtectiveOrderAck,
    ProtectiveOrderRequest,
    RemotePosition,
)


class LiveExecutionAdapter(ExecutionAdapter):
    mode = "live"

    def execute_market_order(self, order: MarketOrder) -> Fill:
        raise NotImplementedError("Live market orders arrive with the live execution issue.")

    def place_protective_orders(self, requests: Sequence[ProtectiveOrderRequest]) -> list[ProtectiveOrderAck]:
        raise NotImplementedError("Live TP/SL arrive with the live execution issue.")

    def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        raise NotImplementedError("Live cancel arrives with the live execution issue.")

    def fetch_positions(self) -> list[RemotePosition]:
        raise NotImplementedError("Live positions arrive with the reconciliation issue.")
