"""Liveness, readiness and metrics endpoints, and `manage.py health` (issue 15)."""

from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import Client, override_settings
from django.utils import timezone

from execution.models import Heartbeat, StreamKind, StreamStatus
from execution.services.health import PAPER_SWEEP, record_heartbeat
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def all_healthy(market, tmp_path, settings):
    if not settings.REDIS_URL:  # the filesystem broker's folder exists (Celery makes it on first use)
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "data_folder_out": str(tmp_path),
        }
    record_heartbeat(PAPER_SWEEP, seconds=0.01)
    StreamStatus.objects.create(
        name="market:!markPrice@arr@1s",
        kind=StreamKind.MARKET,
        connected=True,
        last_frame_at=timezone.now(),
        lag_ms=40,
        updated_at=timezone.now(),
    )


def test_healthz_answers_without_the_database():
    with mock.patch.object(connection, "cursor", side_effect=OperationalError("down")):
        response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_readyz_is_200_when_every_check_passes(all_healthy):
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ready"] is True
    assert set(body["checks"]) == {
        "database",
        "broker_and_cache",
        "paper_sweep",
        "reconciliation",
        "market_stream",
        "user_streams",
        "exchange",
    }
    assert body["checks"]["market_stream"]["lag_ms"] == 40


def test_readyz_names_a_stale_sweep(all_healthy, settings):
    Heartbeat.objects.filter(name=PAPER_SWEEP).update(beat_at=timezone.now() - timedelta(minutes=5))
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["ready"] is False
    assert body["checks"]["paper_sweep"]["ok"] is False
    assert "paper_sweep last ran 300 s ago" in body["checks"]["paper_sweep"]["error"]
    assert all(c["ok"] for name, c in body["checks"].items() if name != "paper_sweep")


def test_readyz_names_the_database_when_it_is_down(all_healthy):
    real_cursor = connection.cursor

    def failing_select_1(*args, **kwargs):
        cursor = real_cursor(*args, **kwargs)
        original = cursor.execute

        def execute(sql, params=None):
            if sql == "SELECT 1":
                raise OperationalError("connection refused")
            return original(sql, params)

        cursor.execute = execute
        return cursor

    with mock.patch.object(connection, "cursor", side_effect=failing_select_1):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "OperationalError: connection refused"}


def test_readyz_names_a_silent_market_stream(all_healthy):
    StreamStatus.objects.update(last_frame_at=timezone.now() - timedelta(minutes=1))
    body = Client().get("/readyz").json()
    assert body["checks"]["market_stream"]["ok"] is False
    assert "no market stream has delivered a frame" in body["checks"]["market_stream"]["error"]


def test_health_command_exit_status(all_healthy):
    out = StringIO()
    with pytest.raises(SystemExit) as ready:
        call_command("health", stdout=out)
    assert ready.value.code == 0 and out.getvalue().strip().endswith("ready")
    Heartbeat.objects.all().delete()
    out = StringIO()
    with pytest.raises(SystemExit) as not_ready:
        call_command("health", stdout=out)
    assert not_ready.value.code == 1
    assert "FAIL paper_sweep: paper_sweep has never run" in out.getvalue()


def test_metrics_expose_the_named_series_to_loopback_only(market):
    PaperAccountFactory()
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    for name in (
        "execution_orders_total",
        "execution_order_denials_total",
        "execution_order_stage_seconds",
        "execution_paper_sweep_seconds",
        "execution_reconciliation_runs_total",
        "execution_stream_reconnects_total",
        "execution_exchange_weight_used",
        "execution_alert_deliveries_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'execution_accounts{mode="paper",state="active"} 1.0' in text
    assert "execution_unknown_intents 0.0" in text
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 403


@override_settings(METRICS_TOKEN="s3cret-token")
def test_metrics_with_a_token_need_it_from_everyone():
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200
    assert b"s3cret-token" not in ok.content


def _sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move_on_an_order_and_a_denial(market):
    from execution.exceptions import RiskCheckFailed
    from execution.services import ExecutionService

    account = PaperAccountFactory()
    scrape = lambda: Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()  # noqa: E731
    before = scrape()
    ExecutionService(account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
    )
    with pytest.raises(RiskCheckFailed):
        ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=60)
    after = scrape()
    filled = 'execution_orders_total{mode="paper",outcome="filled"}'
    denied = 'execution_orders_total{mode="paper",outcome="denied"}'
    assert _sample(after, filled) == _sample(before, filled) + 1
    assert _sample(after, denied) == _sample(before, denied) + 1
    code = 'execution_order_denials_total{code="LEVERAGE_TOO_HIGH"}'
    assert _sample(after, code) == _sample(before, code) + 1
    for stage in ("reserve", "exchange", "apply", "protect"):
        key = f'execution_order_stage_seconds_count{{stage="{stage}"}}'
        assert _sample(after, key) == _sample(before, key) + 1, stage
    assert 'execution_open_positions{mode="paper"} 1.0' in after


def test_an_order_path_log_line_carries_the_ids_and_no_secret(market):
    import io
    import json
    import logging

    import structlog

    from config.structured_logging import logging_config
    from decisions.services import submit_decision
    from tests.factories import LiveV1AccountFactory

    options = dict(logging_config(log_format="json", level="INFO")["formatters"]["structured"])
    options.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(**options))
    root = logging.getLogger()
    root.addHandler(handler)
    account = LiveV1AccountFactory()  # no venue behind `market`: the balance request fails and is logged
    try:
        submission = submit_decision(
            account=account, symbol="BTCUSDT", action="open_long", quantity="0.01", leverage=5, idempotency_key="ids-1"
        )
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [line for line in lines if line["logger"] == "decisions.services"]
    assert failed, lines
    assert failed[-1]["decision_id"] == submission.decision.pk and failed[-1]["account_id"] == account.pk
    for secret in (account.api_key.reveal(), account.api_secret.reveal()):
        assert secret not in stream.getvalue()


def test_a_worker_or_stream_process_serves_its_own_metrics_port(monkeypatch):
    import socket

    import requests

    from execution.metrics import serve_metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert serve_metrics(0) is False
    assert serve_metrics(port) is True
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "# TYPE execution_orders_total counter" in text
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp")
    assert serve_metrics(port + 1) is False  # the web process's /metrics sums them instead
