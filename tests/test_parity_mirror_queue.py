"""Queueing a live decision's shadow on the paired paper account never fails the live decision:
a broker that cannot be reached is logged, and nothing else happens."""

from decisions import services as decision_services


def test_an_unreachable_broker_is_logged_and_does_not_raise(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    logged: list[tuple] = []
    monkeypatch.setattr(decision_services.current_app, "send_task", unreachable)
    # The log record itself (logging's configuration varies with the tests run before this one).
    monkeypatch.setattr(decision_services.logger, "exception", lambda *args, **kwargs: logged.append(args))
    decision_services.enqueue_mirror(12345)
    assert logged == [("decision %s: its shadow paper decision could not be queued", 12345)]
