"""Account admin actions: the ones that call execution services live in execution/admin.py,
and "reconcile now" queues the Celery task instead of calling the exchange in the request."""

import ast
from pathlib import Path
from unittest import mock

import pytest
import responses
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from kombu.exceptions import OperationalError

from accounts.models import Account, TradingState
from execution import tasks
from execution.models import ReconciliationRun
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
CHANGELIST = "/admin/accounts/account/"


@pytest.fixture
def admin_client(client):
    admin_user = get_user_model().objects.create_superuser("admin", "admin@example.test", "pw-admin-123")
    client.force_login(admin_user)
    return client


def run_action(admin_client, action, accounts):
    """Post an action on the change list, follow the redirect, return the messages shown."""
    response = admin_client.post(
        CHANGELIST, {"action": action, "_selected_action": [a.pk for a in accounts]}, follow=True
    )
    assert response.redirect_chain == [(CHANGELIST, 302)], response.content.decode()[:2000]
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_accounts_admin_imports_nothing_from_execution_or_decisions():
    modules = imported_modules(ROOT / "accounts" / "admin.py")
    assert not {m for m in modules if m.split(".")[0] in ("execution", "decisions")}


def test_the_registered_account_admin_adds_the_execution_actions():
    from accounts.admin import AccountAdmin as AccountsAccountAdmin
    from execution.admin import AccountAdmin

    registered = admin.site._registry[Account]
    assert type(registered) is AccountAdmin and isinstance(registered, AccountsAccountAdmin)
    assert AccountsAccountAdmin.actions == ["resume_trading"]
    assert list(AccountAdmin.actions) == ["halt_trading", "resume_trading", "reconcile_now"]


def test_reconcile_now_queues_a_task_per_live_account_and_calls_no_exchange(admin_client):
    v1, v3 = LiveV1AccountFactory(), LiveV3AccountFactory()
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False) as http,
        mock.patch.object(tasks.reconcile_account_task, "delay") as delay,
    ):
        notes = run_action(admin_client, "reconcile_now", [v1, v3])
        assert len(http.calls) == 0
    assert sorted(call.args for call in delay.call_args_list) == sorted([(v1.pk,), (v3.pk,)])
    assert not ReconciliationRun.objects.exists()
    assert [level for level, _ in notes] == ["success"]
    assert notes[0][1].startswith("queued reconciliation of ") and str(v1) in notes[0][1] and str(v3) in notes[0][1]


def test_reconcile_now_refuses_paper_accounts_with_a_warning(admin_client):
    paper, live = PaperAccountFactory(), LiveV1AccountFactory()
    with mock.patch.object(tasks.reconcile_account_task, "delay") as delay:
        notes = run_action(admin_client, "reconcile_now", [paper, live])
    delay.assert_called_once_with(live.pk)
    assert ("warning", f"{paper}: paper accounts are not reconciled") in notes
    with mock.patch.object(tasks.reconcile_account_task, "delay") as delay:
        notes = run_action(admin_client, "reconcile_now", [paper])
    delay.assert_not_called()
    assert notes == [("warning", f"{paper}: paper accounts are not reconciled")]


def test_reconcile_now_reports_an_unreachable_broker(admin_client):
    live = LiveV1AccountFactory()
    with mock.patch.object(tasks.reconcile_account_task, "delay", side_effect=OperationalError("connection refused")):
        notes = run_action(admin_client, "reconcile_now", [live])
    assert notes == [("error", f"{live}: could not queue reconciliation: connection refused")]


def test_halt_trading_action_halts_and_resume_trading_resumes(admin_client):
    account = PaperAccountFactory()
    notes = run_action(admin_client, "halt_trading", [account])
    account.refresh_from_db()
    assert account.trading_state == TradingState.HALTED
    assert notes == [("info", f"{account}: halted; cancelled 0 entry order(s), kept 0")]
    run_action(admin_client, "resume_trading", [account])
    account.refresh_from_db()
    assert account.trading_state == TradingState.ACTIVE
