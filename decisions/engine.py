"""The decision engine's entry point (CONTRACT.md: `DecisionEngine` calls the execution service)."""

from __future__ import annotations

from decimal import Decimal

from accounts.models import Account
from decisions.models import Decision
from decisions.services import submit_decision


class DecisionEngine:
    """Turns a trading decision into an ExecutionService call, in the account's mode."""

    def submit(
        self,
        account: Account,
        *,
        symbol: str,
        action: str,
        quantity: Decimal | None = None,
        leverage: int | None = None,
        take_profit: Decimal | None = None,
        stop_loss: Decimal | None = None,
        idempotency_key: str = "",
    ) -> Decision:
        return submit_decision(
            account=account,
            symbol=symbol,
            action=action,
            quantity=quantity,
            leverage=leverage,
            take_profit=take_profit,
            stop_loss=stop_loss,
            idempotency_key=idempotency_key,
        ).decision
