"""The parity report: figures by symbol and kind, histogram, calibration; the command and the API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.audit import record_event
from execution.models import ParityRecord
from execution.services.parity.report import histogram_of, parity_report, parse_since, percentile
from tests.factories import LiveV1AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db


def record(account, *, key, kind="entry", symbol="BTCUSDT", bps="1", fee_diff="0.01", delay=None, **extra):
    fields = {
        "account": account,
        "source_key": key,
        "symbol": symbol,
        "kind": kind,
        "side": "BUY",
        "quantity": Decimal("1"),
        "live_price": Decimal("100"),
        "shadow_price": Decimal("100"),
        "slippage_bps": Decimal(bps) if bps is not None else None,
        "live_fee": Decimal("0.05"),
        "shadow_fee": Decimal("0.035"),
        "fee_diff": Decimal(fee_diff),
        "trigger_delay_ms": delay,
        **extra,
    }
    return ParityRecord.objects.create(**fields)


@pytest.fixture
def account():
    return LiveV1AccountFactory()


def test_groups_by_symbol_and_kind_with_mean_median_p95_fee_and_delay(account):
    for i, bps in enumerate(["-1", "0", "2", "3", "10"]):
        record(account, key=f"e{i}", bps=bps)
    record(account, key="sl1", kind="stop_loss", bps="4", delay=400)
    record(account, key="sl2", kind="stop_loss", bps="6", delay=800)
    record(account, key="x", symbol="ETHUSDT", bps="-2")
    report = parity_report(account_id=account.pk)
    groups = {(g.symbol, g.kind): g for g in report.groups}
    entry = groups[("BTCUSDT", "entry")]
    assert (entry.count, entry.mean_bps, entry.median_bps, entry.p95_bps) == (5, Decimal("2.8"), 2, 10)
    assert entry.fee_diff == Decimal("0.05") and entry.mean_trigger_delay_ms is None
    stop = groups[("BTCUSDT", "stop_loss")]
    assert (stop.count, stop.mean_trigger_delay_ms, stop.median_bps) == (2, 600, 5)
    assert groups[("ETHUSDT", "entry")].count == 1
    assert sum(b.count for b in report.histogram) == 6  # market fills only: the two stops are apart


def test_the_report_is_scoped_to_the_account_and_the_period(account):
    other = LiveV1AccountFactory()
    record(account, key="a")
    record(other, key="b")
    old = record(account, key="c")
    ParityRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    assert parity_report(account_id=account.pk).groups[0].count == 2
    assert parity_report(account_id=account.pk, since=parse_since("1d")).groups[0].count == 1
    assert parity_report().groups[0].count == 3


def test_percentile_and_histogram_edges():
    values = [Decimal(v) for v in range(1, 21)]
    assert percentile(values, 95) == 19 and percentile(values, 50) == 10 and percentile([Decimal(3)], 95) == 3
    buckets = histogram_of([Decimal("-25"), Decimal("0"), Decimal("0.5"), Decimal("1"), Decimal("30")])
    assert buckets[0].low_bps is None and buckets[0].high_bps == Decimal("-20") and buckets[0].count == 1
    assert buckets[-1].high_bps is None and buckets[-1].count == 1
    zero_to_one = next(b for b in buckets if b.low_bps == 0)
    assert zero_to_one.count == 2 and zero_to_one.high_bps == 1


def test_calibration_suggests_the_live_fee_rate_and_a_margin_from_fresh_market_fills(account):
    # live fee 0.05 on 100 notional: 0.0005; fresh market fills median 2 bps; the stale one left out.
    for i, bps in enumerate(["1", "2", "3"]):
        record(account, key=f"e{i}", bps=bps)
    record(account, key="stale", bps="50", stale=True)
    calibration = parity_report(account_id=account.pk).calibration
    assert calibration.fee_rate == Decimal("0.0005")
    assert calibration.slippage_margin_bps == 2
    assert "1 on a stale book left out" in calibration.basis


def test_calibration_margin_is_zero_when_paper_was_pessimistic(account):
    record(account, key="a", bps="-3")
    assert parity_report(account_id=account.pk).calibration.slippage_margin_bps == 0


def test_calibration_of_nothing_is_null():
    calibration = parity_report(account_id=None).calibration
    assert calibration.fee_rate is None and calibration.slippage_margin_bps is None


def test_parse_since_accepts_durations_and_iso_times_and_refuses_the_rest():
    now = timezone.now()
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("12h", now=now) == now - timedelta(hours=12)
    assert parse_since("2026-01-02T03:04:05Z", now=now).isoformat() == "2026-01-02T03:04:05+00:00"
    assert parse_since("2026-01-02T03:04:05", now=now).utcoffset() == timedelta(0)
    assert parse_since(None) is None
    from django.core.exceptions import ValidationError

    for bad in ("yesterday", "7x", "-1d", "2026-13-01T00:00:00", "2999-01-01T00:00:00Z"):
        with pytest.raises(ValidationError):
            parse_since(bad, now=now)


def test_command_prints_the_table_and_the_calibration(account):
    record(account, key="a", bps="2")
    record(account, key="sl", kind="stop_loss", bps="3", delay=250)
    out = StringIO()
    call_command("parity_report", "--account", str(account.pk), "--since", "1d", stdout=out)
    text = out.getvalue()
    assert "symbol" in text and "p95 bps" in text
    assert "BTCUSDT" in text and "stop_loss" in text and "250" in text
    assert "Calibration (suggested, not applied): fee rate 0.00050000" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "abc"], "not an account id"),
        (["--account", "999999"], "no account with id 999999"),
        (["--since", "yesterday"], "--since"),
        (["--since", "2999-01-01"], "in the future"),
    ],
)
def test_command_refuses_bad_options_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("parity_report", *args, stdout=StringIO())


def test_command_lists_decisions_refused_by_one_side(account):
    record_event(
        account=account,
        kind="parity.decision_mismatch",
        data={
            "decision": 1,
            "shadow_decision": 2,
            "symbol": "BTCUSDT",
            "action": "open_long",
            "live_status": "rejected",
            "shadow_status": "executed",
            "live_reason": "COOLDOWN: wait",
            "shadow_reason": "",
        },
    )
    out = StringIO()
    call_command("parity_report", "--decisions", stdout=out)
    assert "Decisions refused by one side only: 1" in out.getvalue()
    assert "live rejected (COOLDOWN: wait), paper executed" in out.getvalue()


def api_for(account):
    client = APIClient()
    client.force_authenticate(account.owner)
    return client


def test_api_returns_the_documented_shape_with_decimals_as_strings(account):
    record(account, key="a", bps="2")
    record(account, key="sl", kind="stop_loss", bps="3", delay=250)
    reply = api_for(account).get(f"/api/accounts/{account.pk}/parity/", {"since": "7d"})
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert set(body) == {"account", "since", "groups", "histogram", "calibration", "decisions"}
    assert body["account"] == account.pk and body["since"] is not None
    entry = next(g for g in body["groups"] if g["kind"] == "entry")
    assert set(entry) == {
        "symbol",
        "kind",
        "count",
        "mean_bps",
        "median_bps",
        "p95_bps",
        "fee_diff",
        "mean_trigger_delay_ms",
    }
    assert entry["mean_bps"] == "2.0000" and entry["fee_diff"] == "0.0100000000"
    assert {"low_bps", "high_bps", "count"} == set(body["histogram"][0])
    assert body["histogram"][0]["low_bps"] is None
    assert body["calibration"]["fee_rate"] == "0.00050000" and body["calibration"]["basis"]


def test_api_without_since_covers_everything(account):
    body = api_for(account).get(f"/api/accounts/{account.pk}/parity/").json()
    assert body["since"] is None and body["groups"] == []


def test_api_is_owner_scoped_and_refuses_bad_since(account):
    other = PaperAccountFactory()
    assert api_for(account).get(f"/api/accounts/{other.pk}/parity/").status_code == 404
    assert api_for(account).get("/api/accounts/99999999/parity/").status_code == 404
    assert APIClient().get(f"/api/accounts/{account.pk}/parity/").status_code in (401, 403)
    reply = api_for(account).get(f"/api/accounts/{account.pk}/parity/", {"since": "soon"})
    assert reply.status_code == 400 and "since" in reply.json()


def test_api_is_in_the_openapi_schema(account):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/accounts/{id}/parity/"]["get"]
    assert operation["operationId"] == "accounts_parity"
    assert "200" in operation["responses"] and "404" in operation["responses"]
