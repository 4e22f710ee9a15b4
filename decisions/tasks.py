"""Celery entry points of decisions: thin wrappers around the services."""

from __future__ import annotations

from celery import shared_task

from decisions.models import Decision
from decisions.services import MIRROR_TASK, mirror_to_shadow
from decisions.services import settle_decisions as settle


@shared_task(name="decisions.settle_decisions", ignore_result=True)
def settle_decisions() -> int:
    """Decisions left `unknown` or `received` follow their order's final outcome."""
    return settle()


@shared_task(name=MIRROR_TASK, ignore_result=True)
def mirror_decision_to_shadow(decision_id: int) -> int | None:
    """A live decision, again on its account's shadow paper account (after the live response)."""
    decision = Decision.objects.select_related("account").filter(pk=decision_id).first()
    if decision is None:
        return None
    shadow = mirror_to_shadow(decision)
    return shadow.pk if shadow is not None else None
