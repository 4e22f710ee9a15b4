from typing import Any

from django.apps import AppConfig


class ExecutionConfig(AppConfig):
    name = "execution"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.services import trading_state_changed

        trading_state_changed.connect(_alert_on_trading_state, dispatch_uid="execution.alert_on_trading_state")


def _alert_on_trading_state(sender: Any, *, account: Any, previous: str, state: str, reason: str, **_: Any) -> None:
    """An account moved to reducing or halted: an alert (accounts.services.trading_state_changed)."""
    from execution.services.alerts import alert_trading_state

    alert_trading_state(account=account, previous=previous, state=state, reason=reason)
