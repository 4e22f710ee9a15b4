"""Celery entry points of decisions: thin wrappers around the services."""

from __future__ import annotations

from celery import shared_task

from decisions.services import settle_decisions as settle


@shared_task(name="decisions.settle_decisions", ignore_result=True)
def settle_decisions() -> int:
    """Decisions left `unknown` or `received` follow their order's final outcome."""
    return settle()
