"""Issue #10, item 8: a threaded server (runserver, gunicorn gthread) must not pile up database
connections. Each request thread that ends with its persistent connection still open leaves it
to the garbage collector (a DatabaseWrapper is a reference cycle), so 20 parallel clients with
CONN_MAX_AGE=60 exhausted PostgreSQL's 100 connections. Settings are read in a subprocess,
from the environment, as a process would start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 30

# What Django's handler does around every request (close_old_connections on both signals), in a
# new thread per request as runserver does; the collector is off, as between two of its runs.
SERVER = f"""
import gc, json, threading
import django
django.setup()
from django.core.signals import request_finished, request_started
from django.db import connection

gc.disable()

def handle():
    request_started.send(sender=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    request_finished.send(sender=None)

for _ in range({REQUESTS}):
    thread = threading.Thread(target=handle)
    thread.start()
    thread.join()

name = connection.settings_dict["OPTIONS"]["application_name"]
request_started.send(sender=None)
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
    (open_connections,) = cursor.fetchone()
print(json.dumps({{"open": open_connections, "pool": connection.settings_dict["OPTIONS"].get("pool"),
                  "conn_max_age": connection.settings_dict["CONN_MAX_AGE"]}}))
"""


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"CONN_MAX_AGE", "DB_POOL_MAX_SIZE", "DB_POOL_MIN_SIZE"}}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings_test")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def server_database_url() -> str:
    """The PostgreSQL server of the test run, its `postgres` database, tagged with a unique
    application name so that this process's connections can be counted."""
    db = settings.DATABASES["default"]
    user, host, port = db["USER"], db["HOST"] or "127.0.0.1", db["PORT"] or "5432"
    return f"postgres://{user}@{host}:{port}/postgres?application_name=conn-test-{uuid.uuid4().hex[:12]}"


def threaded_server(**env: str) -> dict:
    result = run(SERVER, DATABASE_URL=server_database_url(), **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.postgres
def test_by_default_request_threads_leave_no_connections_behind():
    report = threaded_server()
    assert report["pool"] is None and report["conn_max_age"] == 0
    assert report["open"] == 1  # the counting query's own


@pytest.mark.postgres
def test_with_a_pool_the_process_holds_at_most_its_max_size():
    report = threaded_server(DB_POOL_MAX_SIZE="4", DB_POOL_MIN_SIZE="1")
    assert report["pool"] == {"min_size": 1, "max_size": 4, "timeout": 10.0}
    assert report["conn_max_age"] == 0
    assert 1 <= report["open"] <= 4


@pytest.mark.postgres
def test_persistent_connections_stay_available_but_pile_up_under_a_thread_per_request():
    # For one thread per process (gunicorn sync, celery prefork); under a threaded server each
    # finished thread leaves its connection open: the hazard the default (0) avoids.
    report = threaded_server(CONN_MAX_AGE="60")
    assert report["pool"] is None and report["conn_max_age"] == 60
    assert report["open"] > REQUESTS // 2


def check(**env: str) -> subprocess.CompletedProcess:
    return run(
        "import django; django.setup(); from django.conf import settings; "
        "import json; d = settings.DATABASES['default']; print(json.dumps([d.get('CONN_MAX_AGE'), d.get('OPTIONS')]))",
        **env,
    )


def test_a_pool_with_persistent_connections_is_refused_clearly():
    result = check(DATABASE_URL="postgres://u@127.0.0.1:5432/x", DB_POOL_MAX_SIZE="4", CONN_MAX_AGE="60")
    assert result.returncode != 0
    assert "DB_POOL_MAX_SIZE" in result.stderr and "CONN_MAX_AGE" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "env",
    [
        {"DB_POOL_MAX_SIZE": "-1"},
        {"DB_POOL_MAX_SIZE": "2", "DB_POOL_MIN_SIZE": "3"},
        {"DB_POOL_MAX_SIZE": "2", "DB_POOL_TIMEOUT": "0"},
        {"CONN_MAX_AGE": "-5"},
    ],
)
def test_malformed_pool_settings_are_refused(env):
    result = check(DATABASE_URL="postgres://u@127.0.0.1:5432/x", **env)
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr, result.stderr


def test_sqlite_ignores_the_pool_setting():
    result = check(DATABASE_URL="sqlite:////tmp/x.sqlite3", DB_POOL_MAX_SIZE="4")
    assert result.returncode == 0, result.stderr
    _, options = json.loads(result.stdout)
    assert "pool" not in options


def test_postgresql_binds_on_the_server_and_prepares_hot_statements_by_default():
    result = check(DATABASE_URL="postgres://u@127.0.0.1:5432/x")
    assert result.returncode == 0, result.stderr
    _, options = json.loads(result.stdout)
    assert options["server_side_binding"] is True and options["prepare_threshold"] == 2


def test_prepared_statements_can_be_turned_off_for_a_transaction_pooler():
    result = check(DATABASE_URL="postgres://u@127.0.0.1:5432/x", DB_PREPARED_STATEMENTS="0")
    assert result.returncode == 0, result.stderr
    _, options = json.loads(result.stdout)
    assert "server_side_binding" not in (options or {}) and "prepare_threshold" not in (options or {})


def test_a_negative_prepare_threshold_is_refused():
    result = check(DATABASE_URL="postgres://u@127.0.0.1:5432/x", DB_PREPARE_THRESHOLD="-1")
    assert result.returncode != 0 and "DB_PREPARE_THRESHOLD" in result.stderr, result.stderr
