"""Celery entry points: thin wrappers around the services (also callable as plain functions)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task

from execution.services.paper.sweep import sweep_paper_triggers as sweep


@shared_task(name="execution.sweep_paper_triggers", bind=True, ignore_result=True)
def sweep_paper_triggers(self: Any) -> dict[str, Any]:
    """Beat entry point: one paper sweep (mark to market, funding, liquidations, TP/SL
    triggers). With PAPER_SWEEP_SHARDS = N > 1 on a worker, it enqueues one task per shard
    (each expiring with the interval, like the beat's own), the shard swept longest ago first,
    leaving out the shards running now (`paper.shards`); called as a plain function,
    or with one shard, it sweeps everything here."""
    from django.conf import settings

    from execution.services.paper.shards import fan_out_order

    shards = settings.PAPER_SWEEP_SHARDS
    if shards <= 1 or self.request.called_directly:
        return _sweep_shard(0, 1)
    queued = fan_out_order(shards)
    for shard in queued:
        sweep_paper_shard.apply_async((shard, shards), expires=settings.PAPER_SWEEP_SECONDS)
    return {"queued": len(queued), "running": shards - len(queued)}


@shared_task(name="execution.sweep_paper_shard", ignore_result=True)
def sweep_paper_shard(shard: int, shards: int) -> dict[str, Any]:
    """The part of one paper sweep for the symbols of `shard` of `shards`."""
    return _sweep_shard(shard, shards)


def _sweep_shard(shard: int, shards: int) -> dict[str, Any]:
    """One shard's sweep under its lease (a second message of a running shard returns at once),
    then its own heartbeat."""
    from execution.metrics import record_sweep_metrics
    from execution.services.health import record_heartbeat, sweep_heartbeat
    from execution.services.paper.shards import run_leased

    report = run_leased(shard, shards, lambda: sweep(shard=shard, shards=shards))
    if report is None:
        return {"skipped": f"shard {shard}/{shards} is being swept"}
    record_sweep_metrics(report, source="sweep")
    record_heartbeat(
        sweep_heartbeat(shard, shards),
        seconds=report.seconds,
        detail={"triggered": report.triggered, "shard": f"{shard}/{shards}"},
    )
    return asdict(report)


@shared_task(name="execution.reconcile_account", ignore_result=True)
def reconcile_account_task(account_id: int) -> dict[str, Any]:
    """Reconcile one live account (its lease keeps two runs from overlapping)."""
    from accounts.models import Account
    from execution.services.health import RECONCILE, record_heartbeat
    from execution.services.reconciliation import reconcile_account

    run = reconcile_account(Account.objects.get(pk=account_id))
    record_heartbeat(RECONCILE, detail={"account": account_id, "status": run.status})
    return {"account": account_id, "run": run.pk, "status": run.status, "differences": run.differences}


@shared_task(name="execution.reconcile_live_positions", bind=True, ignore_result=True)
def reconcile_live_positions(self: Any, account_id: int | None = None) -> dict[str, Any]:
    """Beat entry point: one task per live account that is due (inline when called as a plain
    function): each beat for accounts without a healthy user-data stream, every
    RECONCILE_STREAMED_SECONDS for those with one (`accounts_due_for_reconciliation`)."""
    from execution.services.health import RECONCILE, record_heartbeat
    from execution.services.reconciliation import accounts_due_for_reconciliation, reconcile_accounts

    ids = [account_id] if account_id is not None else accounts_due_for_reconciliation()
    # The reconciliation schedule is alive (accounts with a healthy stream are due less often).
    record_heartbeat(RECONCILE, detail={"due": len(ids)})
    if self.request.called_directly:
        return reconcile_accounts(ids)
    for each in ids:
        reconcile_account_task.delay_on_commit(each)  # sent once the caller's transaction commits
    return {"queued": len(ids)}


@shared_task(name="execution.take_equity_snapshots", ignore_result=True)
def take_equity_snapshots() -> dict[str, Any]:
    """Beat entry point: one equity snapshot per account for this minute."""
    from execution.services.equity import take_equity_snapshots as take

    return {"written": take()}


@shared_task(name="execution.deliver_alert", bind=True, ignore_result=True, max_retries=None)
def deliver_alert(self: Any, alert_id: int) -> bool:
    """POST one alert to ALERT_WEBHOOK_URL; retried with exponential backoff (ALERT_RETRY_BASE_SECONDS,
    doubling, at most ALERT_DELIVERY_RETRIES times). Called as a plain function: one attempt."""
    from django.conf import settings

    from execution.metrics import ALERT_DELIVERIES
    from execution.services.alerts import DeliveryFailed, deliver

    try:
        delivered = deliver(alert_id)
    except DeliveryFailed as exc:
        if self.request.called_directly or self.request.retries >= settings.ALERT_DELIVERY_RETRIES:
            ALERT_DELIVERIES.labels(outcome="gave_up").inc()
            return False
        ALERT_DELIVERIES.labels(outcome="retried").inc()
        raise self.retry(exc=exc, countdown=settings.ALERT_RETRY_BASE_SECONDS * 2**self.request.retries) from None
    if delivered:
        ALERT_DELIVERIES.labels(outcome="delivered").inc()
    return delivered


@shared_task(name="execution.check_alert_conditions", ignore_result=True)
def check_alert_conditions() -> dict[str, int]:
    """Beat: unresolved intents, streams down, undelivered alerts (execution.services.alerts)."""
    from execution.services.alerts import check_alert_conditions as check

    return check()
