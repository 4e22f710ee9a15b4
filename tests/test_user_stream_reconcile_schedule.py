"""Reconciliation's role with user-data streams: accounts with a healthy stream are reconciled
every RECONCILE_STREAMED_SECONDS, the others on every beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from execution.models import ReconciliationRun, StreamKind, StreamLease, StreamStatus
from execution.services.reconciliation import accounts_due_for_reconciliation, streamed_account_ids
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db


def stream(account, *, holder="h:1", connected=True, lease_seconds=30, status_holder=None):
    now = timezone.now()
    StreamLease.objects.create(
        account=account, holder=holder, acquired_at=now, expires_at=now + timedelta(seconds=lease_seconds)
    )
    StreamStatus.objects.create(
        name=f"user-{account.pk}@{holder}",
        kind=StreamKind.USER,
        account=account,
        holder=status_holder or holder,
        connected=connected,
        updated_at=now,
    )


def ran(account, *, ago: float, status="in_sync"):
    run = ReconciliationRun.objects.create(account=account, status=status)
    ReconciliationRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=ago))


def test_healthy_means_connected_by_the_live_lease_holder():
    healthy, down, dead_holder, stale_row = (LiveV1AccountFactory() for _ in range(4))
    stream(healthy)
    stream(down, connected=False)
    stream(dead_holder, lease_seconds=-1)  # its process died: the row still says connected
    stream(stale_row, status_holder="old:2")  # another process took the account over
    assert streamed_account_ids() == {healthy.pk}


def test_streamed_accounts_are_reconciled_less_often(settings):
    settings.RECONCILE_SECONDS, settings.RECONCILE_STREAMED_SECONDS = 60, 600
    PaperAccountFactory()
    streamed_recent, streamed_old, streamed_never, unstreamed, down = (
        LiveV1AccountFactory(),
        LiveV3AccountFactory(),
        LiveV1AccountFactory(),
        LiveV1AccountFactory(),
        LiveV1AccountFactory(),
    )
    for account in (streamed_recent, streamed_old, streamed_never):
        stream(account)
    stream(down, connected=False)
    ran(streamed_recent, ago=100)
    ran(streamed_old, ago=580)  # within half a beat of its interval: due now, not a beat late
    ran(unstreamed, ago=10)
    ran(down, ago=10)
    due = accounts_due_for_reconciliation()
    assert due == sorted([streamed_old.pk, streamed_never.pk, unstreamed.pk, down.pk])


def test_a_skipped_run_does_not_count(settings):
    account = LiveV1AccountFactory()
    stream(account)
    ran(account, ago=5, status="skipped")
    assert accounts_due_for_reconciliation() == [account.pk]
    ran(account, ago=5)
    assert accounts_due_for_reconciliation() == []


def test_the_beat_task_queues_only_the_due_accounts(monkeypatch, django_capture_on_commit_callbacks):
    from execution import tasks

    streamed, other = LiveV1AccountFactory(), LiveV1AccountFactory()
    stream(streamed)
    ran(streamed, ago=1)
    sent: list[int] = []
    monkeypatch.setattr(tasks.reconcile_account_task, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_live_positions.apply().get() == {"queued": 1}
    assert sent == [other.pk]
