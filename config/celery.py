"""The Celery app. Broker and schedule come from Django settings (namespace CELERY)."""

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect  # type: ignore[misc]  # Celery's signal decorator is untyped
def create_filesystem_broker_folders(sender: Celery, **kwargs: Any) -> None:
    """The filesystem broker (the embedded default) needs its folders before the first message;
    they are made when Celery is first used, not when settings are imported."""
    options = sender.conf.broker_transport_options or {}
    for name in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(name):
            Path(options[name]).mkdir(parents=True, exist_ok=True)


@worker_init.connect  # type: ignore[misc]  # Celery's signal decorator is untyped
def serve_worker_metrics(**kwargs: Any) -> None:
    """METRICS_PORT: the worker's own /metrics (docs/operations.md)."""
    from django.conf import settings

    from execution.metrics import serve_metrics

    serve_metrics(settings.METRICS_PORT)
