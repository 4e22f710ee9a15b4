"""History through the API: equity snapshots (beat) downsampled in the database, daily PnL, the
audit feed, funding payments, reconciliation runs with items, alerts. Owner-scoped, cursor pages,
time filters, constant query counts."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import ExecutionEvent
from decisions.services import submit_decision
from execution.models import (
    Alert,
    EquitySnapshot,
    FundingPayment,
    Position,
    ReconciliationItem,
    ReconciliationRun,
)
from execution.services.equity import take_equity_snapshots
from execution.tasks import take_equity_snapshots as snapshot_task
from tests.factories import LiveV1AccountFactory, PaperAccountFactory, UserFactory
from tests.test_api_controls import client_for

pytestmark = pytest.mark.django_db
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def api(owner):
    return client_for(owner)


def a_week_of_snapshots(account):
    """One snapshot a minute for 7 days; equity = the minute's index, so the last of each bucket is known."""
    EquitySnapshot.objects.bulk_create(
        EquitySnapshot(
            account=account,
            taken_at=MONDAY + timedelta(minutes=i),
            wallet=Decimal(1000),
            unrealized_pnl=Decimal(i),
            equity=Decimal(1000 + i),
            margin_in_use=Decimal(0),
        )
        for i in range(7 * 24 * 60)
    )


def test_equity_downsampling_over_a_week(api, owner, django_assert_max_num_queries):
    account = PaperAccountFactory(owner=owner)
    a_week_of_snapshots(account)
    url = f"/api/accounts/{account.pk}/equity/"
    with django_assert_max_num_queries(6):
        days = api.get(url, {"interval": "1d"}).data
    assert [row["taken_at"] for row in days["results"]] == [
        (MONDAY + timedelta(days=d, hours=23, minutes=59)).isoformat().replace("+00:00", "Z") for d in range(7)
    ]
    assert days["results"][0]["equity"] == f"{1000 + 1439}.0000000000"
    with django_assert_max_num_queries(6):
        hours = api.get(url, {"interval": "1h", "limit": 1000}).data["results"]
    assert len(hours) == 168
    assert [Decimal(h["unrealized_pnl"]) for h in hours] == [Decimal(60 * h + 59) for h in range(168)]
    window = api.get(
        url, {"interval": "1h", "from": "2026-11-17T00:00:00Z", "to": "2026-11-17T03:30:00+00:00", "limit": 1000}
    ).data["results"]
    # 00, 01, 02 full hours and the 03 bucket up to 03:29 (its last snapshot within the window).
    assert [w["taken_at"] for w in window] == [
        "2026-11-17T00:59:00Z",
        "2026-11-17T01:59:00Z",
        "2026-11-17T02:59:00Z",
        "2026-11-17T03:29:00Z",
    ]
    page = api.get(url, {"interval": "1m", "limit": 500}).data
    assert len(page["results"]) == 500 and page["next"]
    following = api.get(page["next"]).data
    assert following["results"][0]["taken_at"] == "2026-11-16T08:20:00Z"


@pytest.mark.parametrize(
    "query",
    [
        {"interval": "5m"},
        {"from": "yesterday"},
        {"from": "2026-11-20T00:00:00Z", "to": "2026-11-19T00:00:00Z"},
        {"from": "9999-12-31T23:59:59-05:00"},
        {"cursor": "bogus"},
    ],
)
def test_equity_bad_queries_are_4xx(api, owner, query):
    account = PaperAccountFactory(owner=owner)
    response = api.get(f"/api/accounts/{account.pk}/equity/", query)
    assert response.status_code == (404 if "cursor" in query else 400)


def test_equity_is_owner_scoped(api, owner):
    other = PaperAccountFactory(owner=UserFactory())
    assert api.get(f"/api/accounts/{other.pk}/equity/").status_code == 404
    assert APIClient().get(f"/api/accounts/{other.pk}/equity/").status_code == 401


def test_beat_writes_a_snapshot_a_minute_for_every_account(owner, market, django_assert_max_num_queries):
    paper = PaperAccountFactory(owner=owner, paper_balance=Decimal("1000"))
    submit_decision(
        account=paper, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.01"), leverage=5, idempotency_key="a"
    )
    Position.objects.filter(account=paper).update(unrealized_pnl=Decimal("12.5"))
    live_known = LiveV1AccountFactory(owner=owner)
    live_known.live_wallet_balance = Decimal("777")
    live_known.save()
    live_new = LiveV1AccountFactory(owner=owner)
    now = datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC)
    with django_assert_max_num_queries(5):
        assert take_equity_snapshots(now=now) == 2  # the live account without a known wallet is skipped
    assert take_equity_snapshots(now=now + timedelta(seconds=20)) == 0  # same minute: nothing new
    snap = EquitySnapshot.objects.get(account=paper)
    paper.refresh_from_db()
    assert snap.taken_at == now.replace(second=0)
    assert snap.wallet == paper.paper_wallet and snap.unrealized_pnl == Decimal("12.5")
    assert snap.equity == paper.paper_wallet + Decimal("12.5") and snap.margin_in_use > 0
    assert EquitySnapshot.objects.get(account=live_known).equity == Decimal("777")
    # The stream's balance is gone (say, a restart): the last known wallet carries on.
    type(live_known).objects.filter(pk=live_known.pk).update(live_wallet_balance=None)
    assert take_equity_snapshots(now=now + timedelta(minutes=1)) == 2
    assert EquitySnapshot.objects.filter(account=live_known).latest("taken_at").wallet == Decimal("777")
    assert not EquitySnapshot.objects.filter(account=live_new).exists()
    assert snapshot_task()["written"] == 2


def test_daily_pnl(api, owner, market):
    account = PaperAccountFactory(owner=owner)
    submit_decision(
        account=account, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.01"), leverage=5, idempotency_key="a"
    )
    submit_decision(account=account, symbol="BTCUSDT", action="close", idempotency_key="b")
    position = Position.objects.get(account=account)
    today = datetime.now(UTC)
    FundingPayment.objects.create(
        account=account,
        position=position,
        symbol="BTCUSDT",
        funding_time=today.replace(hour=0, minute=0, second=0, microsecond=0),
        rate=Decimal("0.0001"),
        mark_price=Decimal("65000"),
        quantity=Decimal("0.01"),
        amount=Decimal("0.065"),
    )
    response = api.get(f"/api/accounts/{account.pk}/pnl/", {"interval": "day"})
    assert response.status_code == 200, response.content
    (day,) = response.data
    assert day["day"] == today.date().isoformat() and day["trades"] == 2
    assert Decimal(day["funding"]) == Decimal("0.065") and Decimal(day["fees"]) > 0
    assert Decimal(day["net"]) == Decimal(day["realized_pnl"]) - Decimal(day["fees"]) - Decimal(day["funding"])
    assert api.get(f"/api/accounts/{account.pk}/pnl/", {"interval": "week"}).status_code == 400
    assert api.get(f"/api/accounts/{account.pk}/pnl/", {"from": "2099-01-01T00:00:00Z"}).data == []
    other = PaperAccountFactory(owner=UserFactory())
    assert api.get(f"/api/accounts/{other.pk}/pnl/").status_code == 404


def test_events_feed_filters_and_pages(api, owner, django_assert_max_num_queries):
    account = PaperAccountFactory(owner=owner)
    other = PaperAccountFactory(owner=UserFactory())
    for i in range(5):
        ExecutionEvent.objects.create(account=account, kind="account.trading_state", message=f"m{i}")
    ExecutionEvent.objects.create(account=other, kind="account.trading_state", message="secret of another")
    with django_assert_max_num_queries(4):
        page = api.get("/api/events/", {"kind": "account.trading_state", "limit": 2}).data
    assert [e["message"] for e in page["results"]] == ["m4", "m3"]
    rest = api.get(page["next"]).data["results"]
    assert [e["message"] for e in rest] == ["m2", "m1"]
    assert api.get("/api/events/", {"account": other.pk}).status_code == 400  # not one of yours
    assert api.get("/api/events/", {"from": "2099-01-01T00:00:00Z"}).data["results"] == []
    assert api.get("/api/events/", {"to": "nonsense"}).status_code == 400
    assert APIClient().get("/api/events/").status_code == 401


def test_reconciliation_runs_with_items_in_constant_queries(api, owner, django_assert_max_num_queries):
    account = LiveV1AccountFactory(owner=owner)
    for _ in range(3):
        run = ReconciliationRun.objects.create(account=account, status="running", differences=2)
        ReconciliationItem.objects.create(run=run, kind="position_missing", symbol="BTCUSDT", outcome="repaired")
        ReconciliationItem.objects.create(run=run, kind="order_missing", symbol="ETHUSDT", outcome="failed")
    ReconciliationRun.objects.create(account=LiveV1AccountFactory(owner=UserFactory()))
    with django_assert_max_num_queries(5):
        runs = api.get("/api/reconciliation-runs/").data["results"]
    assert len(runs) == 3 and [i["kind"] for i in runs[0]["items"]] == ["position_missing", "order_missing"]


def test_funding_payments_and_alerts_are_owner_scoped(api, owner, market):
    account = PaperAccountFactory(owner=owner)
    other = PaperAccountFactory(owner=UserFactory())
    Alert.objects.create(account=account, kind="liquidation", message="mine", cause="a")
    Alert.objects.create(account=other, kind="liquidation", message="theirs", cause="b")
    assert [a["message"] for a in api.get("/api/alerts/").data["results"]] == ["mine"]
    assert api.get("/api/funding-payments/").data["results"] == []
    theirs = Alert.objects.get(message="theirs")
    assert api.get(f"/api/alerts/{theirs.pk}/").status_code == 404
