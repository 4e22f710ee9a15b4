"""Place one market order (with optional TP/SL) for an account, through ExecutionService."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.display import plain_decimal
from accounts.models import Account
from execution.exceptions import ExecutionError, RiskCheckFailed
from execution.services import ExecutionService
from execution.services.orders import ExecutionResult


class Command(BaseCommand):
    help = "Execute a market order for an account (paper or live), with optional take-profit and stop-loss."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, required=True, help="account id")
        parser.add_argument("--symbol", required=True, help="e.g. BTCUSDT")
        parser.add_argument("--side", required=True, choices=["BUY", "SELL"])
        parser.add_argument("--quantity", required=True, help="base-asset quantity, e.g. 0.01")
        parser.add_argument("--leverage", type=int, required=True)
        parser.add_argument("--take-profit", dest="take_profit", default=None)
        parser.add_argument("--stop-loss", dest="stop_loss", default=None)
        parser.add_argument(
            "--idempotency-key",
            dest="idempotency_key",
            default=None,
            help="the same key again returns the first result instead of a second order",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(pk=options["account"]).first()
        if account is None:
            raise CommandError(f"no account with id {options['account']}")
        try:
            result = ExecutionService(account).execute_market_order(
                symbol=options["symbol"],
                side=options["side"],
                quantity=options["quantity"],
                leverage=options["leverage"],
                take_profit=options["take_profit"],
                stop_loss=options["stop_loss"],
                idempotency_key=options["idempotency_key"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        except RiskCheckFailed as exc:
            raise CommandError(f"denied {exc.code}: {exc.message}") from exc
        except ExecutionError as exc:
            raise CommandError(f"failed {exc.code}: {exc.message}") from exc
        self._print(describe(result), replayed=result.replayed)

    def _print(self, summary: dict[str, Any], *, replayed: bool) -> None:
        prefix = "already executed (same idempotency key): " if replayed else ""
        n = plain_decimal  # figures as people write them: 65204.6, not 65204.6000000000
        self.stdout.write(
            f"{prefix}{summary['side']} {n(summary['quantity'])} @ {n(summary['price'])} fee {n(summary['fee'])} "
            f"realized {n(summary['realized_pnl'])} [{summary['status']}] {summary['trade']}"
        )
        position = summary["position"]
        if position:
            self.stdout.write(
                f"position: {position['side']} {n(position['quantity'])} @ {n(position['entry_price'])} "
                f"[{position['status']}] liquidation {n(position['liquidation_price'])}"
            )
        for kind, price, status in summary["pending_orders"]:
            self.stdout.write(f"{kind}: trigger {n(price)} [{status}]")


def describe(result: ExecutionResult) -> dict[str, Any]:
    """A plain summary for commands and logs."""
    trade = result.trade
    return {
        "trade": trade.client_order_id,
        "status": trade.status,
        "side": trade.side,
        "quantity": trade.quantity,
        "price": trade.price,
        "fee": trade.fee,
        "realized_pnl": trade.realized_pnl,
        "position": None
        if result.position is None
        else {
            "side": result.position.side,
            "quantity": result.position.quantity,
            "entry_price": result.position.entry_price,
            "status": result.position.status,
            "liquidation_price": result.position.liquidation_price,
        },
        "pending_orders": [(p.kind, p.trigger_price, p.status) for p in result.pending_orders],
    }
