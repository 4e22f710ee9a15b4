"""Queueing a live decision's shadow on the paired paper account never fails the live decision:
a broker that cannot be reached is logged, and nothing else happens."""

import logging

from decisions import services as decision_services


def test_an_unreachable_broker_is_logged_and_does_not_raise(monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(decision_services.current_app, "send_task", unreachable)
    with caplog.at_level(logging.ERROR, logger="decisions.services"):
        decision_services.enqueue_mirror(12345)
    assert "decision 12345: its shadow paper decision could not be queued" in caplog.text
