"""Alerts: recorded, deduplicated by cause, free of secrets, delivered to a webhook (a real
http.server on loopback here) with retries, and raised by the paths that need a person."""

import json
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from decisions.services import submit_decision
from execution.models import Alert, Position, StreamStatus, Trade
from execution.services import alerts
from execution.services.paper.liquidation import liquidate_position
from execution.tasks import check_alert_conditions, deliver_alert
from tests.factories import DEMO_V1_API_SECRET, LiveV1AccountFactory, PaperAccountFactory, UserFactory
from tests.test_api_controls import client_for

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on loopback: records JSON bodies; answers 500 to the first `fail` posts."""

    def __init__(self, fail=0):
        self.bodies, self.fail = [], fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=webhook-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    with Receiver() as r:
        settings.ALERT_WEBHOOK_URL = r.url
        yield r


def deliveries(outcome):
    return REGISTRY.get_sample_value("execution_alert_deliveries_total", {"outcome": outcome}) or 0


def test_an_alert_reaches_the_webhook_once_per_cause(receiver, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(alerts.current_app, "send_task", lambda name, args: sent.append((name, args)))
    account = PaperAccountFactory()
    with django_capture_on_commit_callbacks(execute=True):
        first = alerts.raise_alert(account=account, kind="liquidation", message="BTC liquidated", cause="liq:1")
        again = alerts.raise_alert(account=account, kind="liquidation", message="BTC liquidated", cause="liq:1")
        other = alerts.raise_alert(account=account, kind="liquidation", message="ETH liquidated", cause="liq:2")
    assert first is not None and again is None and other is not None
    assert sent == [("execution.deliver_alert", [first.pk]), ("execution.deliver_alert", [other.pk])]
    before = deliveries("delivered")
    for _, (pk,) in sent:
        assert deliver_alert(pk) is True
    assert deliver_alert(first.pk) is False  # delivered already: not sent twice
    assert [b["message"] for b in receiver.bodies] == ["BTC liquidated", "ETH liquidated"]
    body = receiver.bodies[0]
    assert body["kind"] == "liquidation" and body["account"] == account.pk and body["mode"] == "paper"
    assert body["text"].startswith("[Liquidation] account") and "BTC liquidated" in body["text"]
    first.refresh_from_db()
    assert first.delivered_at is not None and first.attempts == 1
    assert deliveries("delivered") == before + 2


def test_the_dedupe_window_passes(settings):
    settings.ALERT_WEBHOOK_URL = ""
    first = alerts.raise_alert(account=None, kind="stream_down", message="down", cause="s")
    Alert.objects.filter(pk=first.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.ALERT_DEDUPE_SECONDS + 1)
    )
    from django.core.cache import cache

    cache.delete(alerts.cause_key("s"))
    assert alerts.raise_alert(account=None, kind="stream_down", message="down", cause="s") is not None


def test_delivery_is_retried_with_backoff(settings):
    settings.ALERT_RETRY_BASE_SECONDS = 0
    with Receiver(fail=2) as receiver:
        settings.ALERT_WEBHOOK_URL = receiver.url
        alert = alerts.raise_alert(account=None, kind="stream_down", message="market stream down", cause="m")
        deliver_alert.apply(args=[alert.pk])  # eager: the retries run in line
    alert.refresh_from_db()
    assert alert.delivered_at is not None and alert.attempts == 3 and alert.last_error == ""
    assert len(receiver.bodies) == 1


def test_an_unreachable_webhook_is_recorded_without_its_url(settings):
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook?token=webhook-token"
    alert = alerts.raise_alert(account=None, kind="stream_down", message="down", cause="u")
    before = deliveries("gave_up")
    assert deliver_alert(alert.pk) is False
    alert.refresh_from_db()
    assert alert.delivered_at is None and "could not be reached" in alert.last_error
    assert "webhook-token" not in alert.last_error and deliveries("gave_up") == before + 1


def test_secrets_never_appear_in_an_alert(settings):
    settings.ALERT_WEBHOOK_URL = ""
    account = LiveV1AccountFactory()
    alert = alerts.raise_alert(
        account=account,
        kind="protection_failed",
        message=f"refused with key {DEMO_V1_API_SECRET} and 0x{'ab' * 32}",
        cause="p",
    )
    assert DEMO_V1_API_SECRET not in alert.message and "ab" * 32 not in alert.message
    assert alert.message.count("[redacted]") == 2
    payload = json.dumps(alerts.payload(alert))
    assert DEMO_V1_API_SECRET not in payload


def test_halt_and_reduce_only_alert_with_why(django_capture_on_commit_callbacks, settings):
    settings.ALERT_WEBHOOK_URL = ""
    owner = UserFactory()
    account = PaperAccountFactory(owner=owner)
    api = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/accounts/{account.pk}/reduce-only/", {"reason": "drawdown"}, format="json")
        api.post(f"/api/accounts/{account.pk}/halt/", {"reason": "exchange incident"}, format="json")
        api.post(f"/api/accounts/{account.pk}/resume/", {}, format="json")
    messages = list(Alert.objects.filter(account=account, kind="trading_state").values_list("message", flat=True))
    assert sorted(messages) == [
        "trading state active -> reducing: drawdown",
        "trading state reducing -> halted: exchange incident",
    ]
    assert Alert.objects.filter(kind="trading_state").count() == 2  # resume raises none
    assert [a["message"] for a in api.get("/api/alerts/").data["results"]] == messages


def test_a_paper_liquidation_alerts(market, settings):
    settings.ALERT_WEBHOOK_URL = ""
    account = PaperAccountFactory()
    submit_decision(
        account=account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.01"),
        leverage=20,
        idempotency_key="l",
    )
    position = Position.objects.get(account=account)
    liquidate_position(position.pk, mark=position.liquidation_price - 1, fee_rate=Decimal("0.005"), now=timezone.now())
    alert = Alert.objects.get(kind="liquidation")
    assert alert.account == account and "liquidated" in alert.message and alert.cause == f"liquidation:{position.pk}"


def test_the_beat_check_alerts_unresolved_intents_and_streams_down(settings, django_assert_max_num_queries):
    settings.ALERT_WEBHOOK_URL = ""
    account = LiveV1AccountFactory()
    old = timezone.now() - timedelta(seconds=settings.ALERT_UNKNOWN_INTENT_SECONDS + 5)
    stuck = Trade.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=1,
        quantity=1,
        leverage=5,
        client_order_id="stuck-1",
        status="unknown",
    )
    Trade.objects.filter(pk=stuck.pk).update(created_at=old)
    Trade.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=1,
        quantity=1,
        leverage=5,
        client_order_id="fresh-1",
        status="unknown",
    )
    down_since = timezone.now() - timedelta(seconds=settings.ALERT_STREAM_DOWN_SECONDS + 5)
    StreamStatus.objects.create(
        name="market:all", kind="market", connected=True, last_frame_at=down_since, updated_at=timezone.now()
    )
    StreamStatus.objects.create(
        name="user:secret-listen-key", kind="user", account=account, connected=False, updated_at=down_since
    )
    StreamStatus.objects.create(name="user:fine", kind="user", connected=False, updated_at=timezone.now())
    assert check_alert_conditions() == {"unknown_intents": 1, "streams_down": 2, "requeued": 0}
    assert check_alert_conditions() == {"unknown_intents": 0, "streams_down": 0, "requeued": 0}  # deduplicated
    unknown = Alert.objects.get(kind="unknown_intent")
    assert "stuck-1" in unknown.message and unknown.account == account
    messages = sorted(Alert.objects.filter(kind="stream_down").values_list("message", flat=True))
    assert messages[0].startswith("market:all is down since")
    assert messages[1].startswith(f"the user-data stream of account {account.pk} is down")
    assert "secret-listen-key" not in " ".join(messages)


def test_undelivered_alerts_are_queued_again_by_the_beat_check(settings, monkeypatch):
    sent = []
    monkeypatch.setattr(alerts.current_app, "send_task", lambda name, args: sent.append(args[0]))
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    alert = Alert.objects.create(kind="stream_down", message="x", cause="c")
    Alert.objects.filter(pk=alert.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert check_alert_conditions()["requeued"] == 1 and sent == [alert.pk]
