"""Celery entry points: thin wrappers around the services (also callable as plain functions)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task

from execution.services import paper_sweep


@shared_task(name="execution.sweep_paper_triggers", ignore_result=True)
def sweep_paper_triggers() -> dict[str, Any]:
    """One paper sweep: mark to market, funding, liquidations, TP/SL triggers."""
    return asdict(paper_sweep.sweep_paper_triggers())
