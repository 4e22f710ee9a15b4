"""Shadow paper accounts: a live account's decisions executed again on its paired paper account."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.models import ExecutionEvent
from decisions import services as decision_services
from decisions.models import Decision
from decisions.services import submit_decision
from execution.models import Position
from execution.services.parity.report import parity_report
from execution.services.parity.shadow_accounts import set_shadow_paper_account
from tests.factories import LiveV1AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.usefixtures("mirrors_run_at_once")


@pytest.fixture
def mirrors_run_at_once(monkeypatch):
    """The mirror runs after the live decision's commit, in a Celery task. Here (the test holds a
    transaction, which production's submit_decision does not) the commit callback runs as it is
    registered, and the task's body in process."""
    from types import SimpleNamespace

    from django.db import transaction

    from decisions import tasks

    def at_once(func, robust=False, using=None):
        func()

    monkeypatch.setattr(decision_services, "transaction", SimpleNamespace(atomic=transaction.atomic, on_commit=at_once))
    monkeypatch.setattr(decision_services, "enqueue_mirror", tasks.mirror_decision_to_shadow)


@pytest.fixture
def pair(sim, db):
    live = LiveV1AccountFactory()
    paper = PaperAccountFactory(owner=live.owner)
    set_shadow_paper_account(account=live, shadow=paper)
    live.refresh_from_db()
    return live, paper


def open_long(account, key="k1"):
    return submit_decision(
        account=account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.02"),
        leverage=5,
        stop_loss=Decimal("60000"),
        idempotency_key=key,
    )


def test_every_decision_of_the_live_account_is_executed_on_its_shadow_too(pair):
    live, paper = pair
    submission = open_long(live)
    assert submission.decision.status == "executed"
    shadow = Decision.objects.get(account=paper)
    assert (shadow.status, shadow.symbol, shadow.action, shadow.quantity, shadow.leverage, shadow.stop_loss) == (
        "executed",
        "BTCUSDT",
        "open_long",
        Decimal("0.02"),
        5,
        Decimal("60000"),
    )
    assert shadow.idempotency_key == f"shadow-{submission.decision.pk}"
    assert Position.objects.get(account=paper).quantity == Decimal("0.02")
    assert not ExecutionEvent.objects.filter(kind="parity.decision_mismatch").exists()
    submit_decision(account=live, symbol="BTCUSDT", action="close", idempotency_key="k2")
    assert Position.objects.get(account=paper).status == "closed"


def test_a_replayed_decision_is_not_mirrored_twice(pair):
    live, paper = pair
    open_long(live)
    again = open_long(live)
    assert not again.created and Decision.objects.filter(account=paper).count() == 1


def test_a_decision_refused_by_one_side_only_is_listed(pair):
    live, paper = pair
    live.trading_state = "halted"
    live.save(update_fields=["trading_state"])
    submission = open_long(live)
    assert submission.decision.status == "rejected"
    assert Decision.objects.get(account=paper).status == "executed"
    (mismatch,) = parity_report(account_id=live.pk).decisions
    assert (mismatch.live_status, mismatch.shadow_status) == ("rejected", "executed")
    assert mismatch.decision == submission.decision.pk and mismatch.live_reason.startswith("TRADING_HALTED")


def test_a_failing_shadow_never_fails_the_live_decision(pair, monkeypatch, caplog):
    live, _paper = pair
    real = decision_services.submit_decision

    def shadow_breaks(*, account, **kwargs):
        if account.is_paper_trading:
            raise RuntimeError("paper down")
        return real(account=account, **kwargs)

    monkeypatch.setattr(decision_services, "submit_decision", shadow_breaks)
    decision = real(
        account=live, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.02"), leverage=5, idempotency_key="x"
    ).decision
    assert decision.status == "executed"
    assert "its shadow paper decision failed" in caplog.text


def test_accounts_without_a_shadow_mirror_nothing(sim, db):
    live = LiveV1AccountFactory()
    open_long(live)
    assert Decision.objects.count() == 1


@pytest.mark.django_db
def test_the_shadow_must_be_a_paper_account_of_the_same_owner_and_not_itself():
    live = LiveV1AccountFactory()
    other_live = LiveV1AccountFactory(owner=live.owner)
    strangers_paper = PaperAccountFactory()
    paper = PaperAccountFactory(owner=live.owner)
    for shadow, message in (
        (other_live, "must be a paper account"),
        (strangers_paper, "same owner"),
        (live, "cannot shadow itself"),
    ):
        with pytest.raises(ValidationError, match=message):
            set_shadow_paper_account(account=live, shadow=shadow)
        assert live.shadow_paper_account_id is None
    with pytest.raises(ValidationError, match="only a live account"):
        set_shadow_paper_account(account=paper, shadow=PaperAccountFactory(owner=live.owner))
    live.refresh_from_db()
    assert live.shadow_paper_account_id is None
    set_shadow_paper_account(account=live, shadow=paper)
    live.refresh_from_db()
    assert live.shadow_paper_account_id == paper.pk
    assert ExecutionEvent.objects.filter(kind="account.shadow_paper_account", account=live).exists()
    set_shadow_paper_account(account=live, shadow=None)
    live.refresh_from_db()
    assert live.shadow_paper_account_id is None
