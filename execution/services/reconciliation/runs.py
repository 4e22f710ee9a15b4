"""Reconciliation runs: one live account against the exchange, under a lease, fail-closed.

One run per account holds a lease on the account row (claimed with a conditional UPDATE, so
two workers never reconcile one account at once) and reads the positions and open orders once
each through the account's adapter; only a difference costs more requests (order queries,
trades, cancels, placements). Repairs run in this order, because earlier ones explain later
differences:

1. `unknown` intents: resolved by client order id;
2. protective orders no longer open on the exchange: queried; a fill is booked (its sibling
   cancelled, on the exchange too), a cancel or expiry recorded; and the reverse: legs final
   here that still rest on the exchange (a failed cancel, or any other) are cancelled there;
3. positions: adopted, closed, corrected, or replaced;
4. orphan protective orders (resting for a symbol without a position): cancelled;
5. the protective-order invariant: an open position that asked for protection gets it again.

A difference that cannot be repaired puts the account in `reducing` (fail-closed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import transition
from accounts.models import Account, TradingState
from accounts.services import set_trading_state
from execution.exceptions import ExecutionError, InvalidTransition
from execution.metrics import RECONCILIATION_DIFFERENCES, RECONCILIATION_RUNS
from execution.models import (
    ReconciliationItem,
    ReconciliationRun,
    ReconciliationStatus,
    StreamKind,
    StreamLease,
    StreamStatus,
)
from execution.services.adapters.base import ExecutionAdapter
from execution.services.adapters.factory import get_execution_adapter
from execution.services.alerts import alert_reconciliation
from execution.services.reconciliation.context import Difference, RunContext
from execution.services.reconciliation.orders_repair import (
    cancel_orphans,
    check_gone_legs,
    check_left_resting,
    legs_to_check,
    resolve_unknown_intents,
)
from execution.services.reconciliation.positions_repair import check_positions
from execution.services.reconciliation.protection_repair import enforce_protection

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)


# --------------------------------------------------------------------------- leases


def claim_lease(account: Account, now: datetime) -> bool:
    """Conditional UPDATE: exactly one worker gets the account; a dead worker's lease expires."""
    claimed = (
        Account.objects.filter(pk=account.pk)
        .filter(Q(reconcile_lease_until__isnull=True) | Q(reconcile_lease_until__lt=now))
        .update(reconcile_lease_until=now + LEASE)
    )
    return claimed == 1


def release_lease(account: Account, now: datetime) -> None:
    """Release the lease claimed at `now`, and only that one: a run that overran its lease must
    not free the lease of the run that has taken the account over since."""
    Account.objects.filter(pk=account.pk, reconcile_lease_until=now + LEASE).update(reconcile_lease_until=None)


# --------------------------------------------------------------------------- entry points


def reconcile_account(
    account: Account,
    *,
    dry_run: bool = False,
    adapter: ExecutionAdapter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> ReconciliationRun:
    """Compare one live account with the exchange and repair (unless dry_run) every difference."""
    if account.is_paper_trading:
        raise ExecutionError(
            f"account {account.pk} is a paper account: only live accounts are reconciled", code="NOT_LIVE"
        )
    now = timezone.now()
    run = ReconciliationRun.objects.create(account=account, dry_run=dry_run)
    if not dry_run and not claim_lease(account, now):
        return _finish(run, ReconciliationStatus.SKIPPED, [], "another reconciliation holds the account")
    try:
        adapter = adapter or get_execution_adapter(account)
        before = adapter.requests_sent
        context = RunContext(account=account, adapter=adapter, run=run, dry_run=dry_run, sleep=sleep, clock=clock)
        differences = _run(context)
        run.http_calls = adapter.requests_sent - before
    except (ExecutionError, InvalidTransition) as exc:
        logger.error("reconciliation of account %s failed: %s", account.pk, exc)
        return _finish(run, ReconciliationStatus.FAILED, [], str(exc))
    finally:
        if not dry_run:
            release_lease(account, now)
    return _conclude(account, run, differences, dry_run=dry_run)


def _run(ctx: RunContext) -> list[Difference]:
    # Before the reads: a local row changed after this moment may be newer than the snapshot (an
    # order booked between the two reads, or since), and is left to the next run.
    ctx.read_at = timezone.now()
    snapshot = ctx.read_exchange()
    resolve_unknown_intents(ctx)
    legs = legs_to_check(ctx, snapshot)
    check_gone_legs(ctx, snapshot, legs)
    check_left_resting(ctx, snapshot, legs)
    check_positions(ctx, snapshot)
    cancel_orphans(ctx, snapshot)
    enforce_protection(ctx, snapshot)
    return ctx.differences


def live_account_ids() -> list[int]:
    return list(Account.objects.filter(is_paper_trading=False).order_by("pk").values_list("pk", flat=True))


def streamed_account_ids(*, now: datetime | None = None) -> set[int]:
    """Live accounts whose user-data stream is healthy: connected, as recorded by the process
    that holds the account's stream lease, and that lease alive (a dead process's rows may
    still say connected; its lease lapses within STREAM_LEASE_SECONDS)."""
    now = now or timezone.now()
    holders = dict(StreamLease.objects.filter(expires_at__gt=now).values_list("account_id", "holder"))
    connected = StreamStatus.objects.filter(kind=StreamKind.USER, connected=True, account_id__in=holders)
    return {
        account_id
        for account_id, holder in connected.values_list("account_id", "holder")
        if holders[account_id] == holder
    }


def accounts_due_for_reconciliation(*, now: datetime | None = None) -> list[int]:
    """The live accounts the beat reconciles now: every one without a healthy user-data stream
    (each beat, RECONCILE_SECONDS), and those with one whose last run started at least
    RECONCILE_STREAMED_SECONDS ago (less half a beat, so that a run is never a whole beat late)."""
    now = now or timezone.now()
    streamed = streamed_account_ids(now=now)
    interval = timedelta(seconds=settings.RECONCILE_STREAMED_SECONDS - settings.RECONCILE_SECONDS / 2)
    recent = set(
        ReconciliationRun.objects.filter(account_id__in=streamed, dry_run=False, started_at__gt=now - interval)
        .exclude(status__in=[ReconciliationStatus.SKIPPED, ReconciliationStatus.FAILED])  # retried each beat
        .values_list("account_id", flat=True)
    )
    return [pk for pk in live_account_ids() if pk not in streamed or pk not in recent]


def reconcile_accounts(account_ids: list[int], *, dry_run: bool = False) -> dict[str, Any]:
    """Reconcile accounts one after the other; one account's failure does not stop the others."""
    runs: dict[str, Any] = {}
    for account in Account.objects.filter(pk__in=account_ids).order_by("pk"):
        try:
            run = reconcile_account(account, dry_run=dry_run)
            runs[str(account.pk)] = run.status
        except Exception as exc:  # an account must never take the others down with it
            logger.exception("reconciliation of account %s crashed", account.pk)
            runs[str(account.pk)] = f"error: {exc}"
    return runs


# --------------------------------------------------------------------------- conclusion


def _conclude(
    account: Account, run: ReconciliationRun, differences: list[Difference], *, dry_run: bool
) -> ReconciliationRun:
    failed = [d for d in differences if d.outcome == "failed"]
    if dry_run:
        status = ReconciliationStatus.DRY_RUN
    elif failed:
        status = ReconciliationStatus.FAILED
        _fail_closed(account, failed)
    else:
        status = ReconciliationStatus.REPAIRED if differences else ReconciliationStatus.IN_SYNC
    run = _finish(run, status, differences, f"{len(differences)} difference(s), {len(failed)} not repaired")
    if failed and not dry_run:
        summary = "; ".join(sorted({f"{d.kind} {d.symbol}" for d in failed}))
        alert_reconciliation(account=account, run_id=run.pk, summary=summary)
    return run


def _finish(run: ReconciliationRun, status: str, differences: list[Difference], message: str) -> ReconciliationRun:
    with transaction.atomic():
        ReconciliationItem.objects.bulk_create(
            ReconciliationItem(
                run=run,
                kind=d.kind,
                symbol=d.symbol,
                local=d.local,
                remote=d.remote,
                action=d.action,
                outcome=d.outcome,
                message=d.message,
            )
            for d in differences
        )
        run.differences, run.message, run.finished_at = len(differences), message, timezone.now()
        transition(
            run,
            to_status=status,
            account=run.account,
            message=message,
            update_fields=["differences", "message", "finished_at", "http_calls"],
        )
    RECONCILIATION_RUNS.labels(status=status).inc()
    for difference in differences:
        RECONCILIATION_DIFFERENCES.labels(kind=difference.kind).inc()
    return run


def _fail_closed(account: Account, failed: list[Difference]) -> None:
    """An unrepaired difference: no new exposure until an operator looks (state `reducing`)."""
    summary = "; ".join(f"{d.kind} {d.symbol}: {d.message}" for d in failed)
    set_trading_state(
        account=account,
        state=TradingState.REDUCING,
        only_from=TradingState.ACTIVE,
        reason=f"reconciliation could not repair: {summary}",
    )
    logger.error("account %s set to reducing: reconciliation could not repair: %s", account.pk, summary)
