"""decisions.services: what submit_decision tells its caller, and the denial code as a field."""

from decimal import Decimal
from unittest import mock

import pytest

from decisions import services
from decisions.engine import DecisionEngine
from decisions.models import Decision, DecisionStatus
from decisions.services import Submission, submit_decision
from execution.models import ExecutionEvent, Trade

pytestmark = pytest.mark.django_db


def hold(account, key="k-1"):
    return submit_decision(account=account, symbol="BTCUSDT", action="hold", idempotency_key=key)


def test_first_submission_is_created_and_a_repeat_of_its_key_is_not(paper_account, market):
    first = submit_decision(
        account=paper_account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.01"),
        leverage=5,
        idempotency_key="open-1",
    )
    assert isinstance(first, Submission)
    assert first.created and first.decision.status == DecisionStatus.EXECUTED
    again = submit_decision(
        account=paper_account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.01"),
        leverage=5,
        idempotency_key="open-1",
    )
    assert not again.created and again.decision.pk == first.decision.pk
    assert Trade.objects.count() == 1


def test_submissions_without_a_key_are_each_created(paper_account):
    assert hold(paper_account, key="").created
    assert hold(paper_account, key="").created
    assert Decision.objects.count() == 2


def test_the_engine_still_returns_the_decision(paper_account):
    decision = DecisionEngine().submit(paper_account, symbol="BTCUSDT", action="hold", idempotency_key="e-1")
    assert isinstance(decision, Decision) and decision.status == DecisionStatus.SKIPPED


def _miss_once():
    """The first look-up of the key misses (a concurrent submission commits right after it)."""
    real = services._earlier
    calls = []

    def lookup(account, key):
        calls.append(key)
        return None if len(calls) == 1 else real(account, key)

    return mock.patch.object(services, "_earlier", side_effect=lookup), calls


def test_a_race_caught_by_full_clean_answers_with_the_first_decision(paper_account):
    first = hold(paper_account).decision
    patch, calls = _miss_once()
    with patch:
        second = hold(paper_account)
    assert len(calls) == 2  # missed, then found after full_clean reported the duplicate key
    assert not second.created and second.decision.pk == first.pk
    assert Decision.objects.count() == 1


def test_a_race_caught_by_the_unique_constraint_answers_with_the_first_decision(paper_account):
    first = hold(paper_account).decision
    patch, calls = _miss_once()
    # The other submission commits after full_clean: only the database's constraint sees it.
    with patch, mock.patch.object(Decision, "validate_constraints", autospec=True, return_value=None):
        second = hold(paper_account)
    assert len(calls) == 2
    assert not second.created and second.decision.pk == first.pk
    assert Decision.objects.count() == 1
    assert ExecutionEvent.objects.filter(kind="decision.received").count() == 1


def test_bad_input_without_a_duplicate_still_raises_and_writes_nothing(paper_account):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        submit_decision(account=paper_account, symbol="X" * 40, action="hold", idempotency_key="k-9")
    assert not Decision.objects.exists()


def test_a_risk_denial_stores_its_code_in_the_same_write(paper_account, market):
    submission = submit_decision(
        account=paper_account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.01"),
        leverage=5,
        stop_loss=Decimal("90000"),  # above the price: a long's stop must be below it
    )
    decision = Decision.objects.get(pk=submission.decision.pk)
    assert decision.status == DecisionStatus.REJECTED
    assert decision.denial_code == "INVALID_PROTECTION"
    assert decision.reason.startswith("INVALID_PROTECTION: ")
    event = ExecutionEvent.objects.get(kind="decision.rejected", subject_id=decision.pk)
    assert event.from_status == DecisionStatus.RECEIVED


def test_input_the_execution_service_refuses_is_rejected_as_invalid_input(paper_account, market):
    submission = submit_decision(
        account=paper_account, symbol="btc-usdt", action="open_long", quantity=Decimal("0.01"), leverage=5
    )
    decision = Decision.objects.get(pk=submission.decision.pk)
    assert decision.status == DecisionStatus.REJECTED and decision.denial_code == "INVALID_INPUT"


def test_executed_and_skipped_decisions_have_no_denial_code(paper_account, market):
    assert hold(paper_account).decision.denial_code == ""
    opened = submit_decision(
        account=paper_account, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.01"), leverage=5
    )
    assert opened.decision.status == DecisionStatus.EXECUTED and opened.decision.denial_code == ""


def test_the_free_text_helper_is_gone():
    assert not hasattr(services, "denial_code")


# --- shared rules, defined once -------------------------------------------------------------


def test_the_fields_required_to_open_come_from_one_definition(paper_account, monkeypatch):
    """Serializer and service both read decisions.models: a field added there is required by both."""
    from types import SimpleNamespace

    from django.core.exceptions import ValidationError

    from decisions import models
    from decisions.api.serializers import DecisionCreateSerializer

    monkeypatch.setattr(models, "REQUIRED_TO_OPEN", ("quantity", "leverage", "stop_loss"))
    body = {"account": paper_account.pk, "symbol": "BTCUSDT", "action": "open_long", "quantity": "0.01", "leverage": 5}
    serializer = DecisionCreateSerializer(data=body, context={"request": SimpleNamespace(user=paper_account.owner)})
    assert not serializer.is_valid()
    assert set(serializer.errors) == {"stop_loss"}
    with pytest.raises(ValidationError) as raised:
        submit_decision(
            account=paper_account, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.01"), leverage=5
        )
    assert set(raised.value.message_dict) == {"stop_loss"}
    assert not Decision.objects.exists()


def test_missing_open_fields():
    from decisions.models import missing_open_fields

    assert missing_open_fields("open_short", {"quantity": Decimal("1")}) == {"leverage": "Required to open a position."}
    assert missing_open_fields("open_long", {"quantity": Decimal("1"), "leverage": 3}) == {}
    assert missing_open_fields("close", {}) == {} and missing_open_fields("hold", {}) == {}


def test_the_leverage_cap_is_the_accounts_constant():
    from accounts.models import HARD_MAX_LEVERAGE
    from decisions.api.serializers import DecisionCreateSerializer

    assert DecisionCreateSerializer().fields["leverage"].max_value == HARD_MAX_LEVERAGE
    (constraint,) = [c for c in Decision._meta.constraints if c.name == "decision_leverage_1_to_25"]
    assert ("leverage__lte", HARD_MAX_LEVERAGE) in constraint.condition.children[1].children


def test_shared_rules_are_written_once_in_the_source():
    """The symbol pattern, the leverage cap and the open-fields message each have one definition."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sources = {
        str(path.relative_to(root)): path.read_text()
        for app in ("accounts", "decisions", "execution", "config")
        for path in (root / app).rglob("*.py")
        if "migrations" not in path.parts
    }

    def where(pattern):
        return sorted(name for name, text in sources.items() if re.search(pattern, text))

    assert where(re.escape("[A-Z0-9]{2,32}")) == ["execution/aster/rules.py"]
    assert where(r"(lte=|max_value=)25\b") == []
    assert where(re.escape("Required to open a position.")) == ["decisions/models.py"]
    assert where(r"(?m)^HARD_MAX_LEVERAGE = ") == ["accounts/models.py"]
