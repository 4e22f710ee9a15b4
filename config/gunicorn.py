"""gunicorn settings for the web process: `gunicorn -c config/gunicorn.py config.wsgi`.

Environment: PORT (8000), HOST (0.0.0.0), WEB_CONCURRENCY (workers, default 2 x cores + 1),
WEB_THREADS (1). With PROMETHEUS_MULTIPROC_DIR set, every worker writes its series there and
/metrics sums them; a dead worker's files are marked here.
"""

import multiprocessing
import os
from typing import Any

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104 - behind a proxy
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("WEB_THREADS", "1"))
timeout = 30  # an API request never waits on the exchange longer than the client's own timeouts
graceful_timeout = 30
keepalive = 5
max_requests = 2000  # recycle workers now and then (bounded memory), with jitter so they do not all restart at once
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
