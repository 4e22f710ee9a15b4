"""Give the demo's paper account a history: a day of per-minute equity snapshots from a short
simulated run (the simulator's own BTCUSDT random walk, a small long held for two hours of every
three), so the dashboard's equity chart is not empty on first start.

The rows are demo data, not the account's trades. There is no column for that on EquitySnapshot,
so the seeding is recorded as an audit event (`demo.equity_seeded`, with the seeded time range),
which the dashboard reads through GET /api/events/?kind=demo.equity_seeded to label the chart.
Run once per account: a second run finds the event and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.audit import record_event
from accounts.models import Account, ExecutionEvent
from execution.aster.simulator.exchange import SimExchange
from execution.models import EquitySnapshot

DEMO_EVENT = "demo.equity_seeded"
SYMBOL = "BTCUSDT"
QUANTITY = Decimal("0.05")
LEVERAGE = 5
FEE_RATE = Decimal("0.0005")  # taker, each side
CYCLE_MINUTES = 180  # flat for an hour, then long for two
PLACES = Decimal("0.0000000001")


@dataclass(frozen=True)
class Minute:
    taken_at: datetime
    realized: Decimal  # realized PnL net of fees so far in the run
    unrealized: Decimal
    margin: Decimal


def simulated_run(*, end: datetime, minutes: int, seed: int) -> list[Minute]:
    """One SimExchange step a minute, `minutes` long, ending at `end`; flat at the last minute."""
    exchange = SimExchange(seed=seed, clock=lambda: end.timestamp())
    realized = Decimal(0)
    entry: Decimal | None = None
    run: list[Minute] = []
    for index in range(minutes):
        exchange.step()
        price = exchange.symbols[SYMBOL].price
        position_minute = index % CYCLE_MINUTES
        last = index == minutes - 1
        if entry is None and position_minute == CYCLE_MINUTES // 3 and not last:
            entry = price
            realized -= QUANTITY * price * FEE_RATE
        elif entry is not None and (position_minute == 0 or last):
            realized += QUANTITY * (price - entry) - QUANTITY * price * FEE_RATE
            entry = None
        unrealized = Decimal(0) if entry is None else QUANTITY * (price - entry)
        margin = Decimal(0) if entry is None else QUANTITY * entry / LEVERAGE
        run.append(Minute(end - timedelta(minutes=minutes - 1 - index), realized, unrealized, margin))
    return run


def snapshots(*, account: Account, run: list[Minute]) -> list[EquitySnapshot]:
    """The run's minutes as snapshots whose wallet ends at the account's wallet now, so the curve
    joins the snapshots beat writes from here on."""
    base = account.paper_wallet - run[-1].realized
    rows = []
    for minute in run:
        wallet = (base + minute.realized).quantize(PLACES)
        unrealized = minute.unrealized.quantize(PLACES)
        rows.append(
            EquitySnapshot(
                account=account,
                taken_at=minute.taken_at,
                wallet=wallet,
                unrealized_pnl=unrealized,
                equity=wallet + unrealized,
                margin_in_use=minute.margin.quantize(PLACES),
            )
        )
    return rows


class Command(BaseCommand):
    help = "Seed a paper account with a day of demo equity snapshots from a short simulated run (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, required=True, help="A paper account's id.")
        parser.add_argument("--hours", type=int, default=24, help="How much history, 1 to 168 hours (default 24).")
        parser.add_argument("--seed", type=int, default=7, help="The random walk's seed.")

    def handle(self, *args: Any, account: int, hours: int, seed: int, **options: Any) -> None:
        if not 1 <= hours <= 168:
            raise CommandError("--hours must be from 1 to 168.")
        found = Account.objects.filter(pk=account).first()
        if found is None:
            raise CommandError(f"No account {account}.")
        if not found.is_paper_trading:
            raise CommandError(f"Account {account} is live: demo data goes to paper accounts only.")
        if ExecutionEvent.objects.filter(account=found, kind=DEMO_EVENT).exists():
            self.stdout.write(f"account {account} already has its demo equity history; nothing written")
            return
        # Up to the minute before this one: beat's snapshot of this minute is the account's own.
        end = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
        run = simulated_run(end=end, minutes=hours * 60, seed=seed)
        rows = snapshots(account=found, run=run)
        with transaction.atomic():
            written = EquitySnapshot.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
            record_event(
                account=found,
                kind=DEMO_EVENT,
                message=f"seed_demo_equity: {hours} h of a simulated {SYMBOL} run, seed {seed}",
                data={"from": run[0].taken_at, "to": run[-1].taken_at, "snapshots": len(rows), "seed": seed},
            )
        self.stdout.write(
            f"account {account}: {len(written)} demo equity snapshots, {run[0].taken_at:%Y-%m-%d %H:%M} "
            f"to {run[-1].taken_at:%Y-%m-%d %H:%M} UTC"
        )
