"""Equity snapshots (one per account per minute, written by beat) and their history, downsampled
in the database: one snapshot per bucket (the last of it), by minute, hour or day."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Max, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from accounts.models import Account
from execution.models import EquitySnapshot, Position, PositionStatus

ZERO = Decimal("0")
INTERVALS = {"1m": "minute", "1h": "hour", "1d": "day"}


def take_equity_snapshots(*, now: datetime | None = None) -> int:
    """One snapshot per account at this minute (a second call in the same minute writes nothing).
    Paper: wallet = paper wallet; live: the exchange wallet when known, else the last snapshot's
    wallet (an account with neither is skipped). A constant number of queries. Returns rows written."""
    taken_at = (now or timezone.now()).replace(second=0, microsecond=0)
    accounts = list(
        Account.objects.only("id", "is_paper_trading", "paper_balance", "paper_realized_pnl", "live_wallet_balance")
    )
    totals = {
        row["account_id"]: row
        for row in Position.objects.filter(status=PositionStatus.OPEN)
        .order_by()
        .values("account_id")
        .annotate(upnl=Sum("unrealized_pnl"), margin=Sum("margin"))
    }
    unknown = [a.pk for a in accounts if not a.is_paper_trading and a.live_wallet_balance is None]
    last_wallet: dict[int, Decimal] = {}
    if unknown:  # live accounts without an exchange wallet yet: the last one known
        latest = (
            EquitySnapshot.objects.filter(account_id__in=unknown)
            .order_by()
            .values("account_id")
            .annotate(last=Max("taken_at"))
        )
        wanted = {(row["account_id"], row["last"]) for row in latest}
        for account_id, at, known in EquitySnapshot.objects.filter(
            account_id__in=[a for a, _ in wanted], taken_at__in=[t for _, t in wanted]
        ).values_list("account_id", "taken_at", "wallet"):
            if (account_id, at) in wanted:
                last_wallet[account_id] = known
    done = set(EquitySnapshot.objects.filter(taken_at=taken_at).values_list("account_id", flat=True))
    rows = []
    wallet: Decimal | None
    for account in accounts:
        if account.pk in done:
            continue
        if account.is_paper_trading:
            wallet = account.paper_wallet
        else:
            wallet = (
                account.live_wallet_balance if account.live_wallet_balance is not None else last_wallet.get(account.pk)
            )
        if wallet is None:
            continue
        total = totals.get(account.pk, {})
        upnl = total.get("upnl") or ZERO
        rows.append(
            EquitySnapshot(
                account_id=account.pk,
                taken_at=taken_at,
                wallet=wallet,
                unrealized_pnl=upnl,
                equity=wallet + upnl,
                margin_in_use=total.get("margin") or ZERO,
            )
        )
    EquitySnapshot.objects.bulk_create(rows, ignore_conflicts=True)  # a concurrent run's rows win
    return len(rows)


def equity_history(
    *, account: Account, start: datetime | None, end: datetime | None, interval: str
) -> QuerySet[EquitySnapshot]:
    """The account's snapshots in [start, end), the last one of each `interval` bucket (UTC), oldest
    first: grouped and picked in the database (one query, whatever the span)."""
    snapshots = EquitySnapshot.objects.filter(account=account)
    if start is not None:
        snapshots = snapshots.filter(taken_at__gte=start)
    if end is not None:
        snapshots = snapshots.filter(taken_at__lt=end)
    last_of_bucket = (
        snapshots.order_by()
        .annotate(bucket=Trunc("taken_at", INTERVALS[interval], tzinfo=UTC))
        .values("bucket")
        .annotate(last=Max("taken_at"))
        .values("last")
    )
    return EquitySnapshot.objects.filter(account=account, taken_at__in=last_of_bucket).order_by("taken_at")
