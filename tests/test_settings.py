import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG"}}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_check_deploy_with_debug_off_and_dev_defaults_is_refused_clearly():
    result = run_manage("check", "--deploy", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY and FIELD_ENCRYPTION_KEY still use the dev-only default" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_field_key_alone_is_refused_when_debug_is_off():
    result = run_manage("check", DEBUG="0", SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY still uses" in result.stderr or "FIELD_ENCRYPTION_KEY still use" in result.stderr


def test_malformed_field_key_is_refused():
    result = run_manage("check", DEBUG="1", FIELD_ENCRYPTION_KEY="short")
    assert result.returncode != 0
    assert "not a valid Fernet key" in result.stderr


def test_dev_defaults_are_accepted_with_debug_on():
    result = run_manage("check", DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_leverage_cap_above_25_is_refused():
    result = run_manage("check", DEBUG="1", EXECUTION_MAX_LEVERAGE="50")
    assert result.returncode != 0
    assert "EXECUTION_MAX_LEVERAGE" in result.stderr


def test_contract_defaults():
    assert settings.EXECUTION_MAX_LEVERAGE == 25
    assert settings.PAPER_TAKER_FEE_RATE == Decimal("0.00035")
    assert isinstance(settings.PAPER_TAKER_FEE_RATE, Decimal)


def test_celery_broker_follows_redis_url():
    from config.celery import app

    if settings.REDIS_URL:
        assert app.conf.broker_url == settings.REDIS_URL
    else:
        assert app.conf.broker_url == "filesystem://"
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_time_limit > 0


def test_celery_tasks_can_start_on_commit():
    from config.celery import app

    assert hasattr(app.Task, "delay_on_commit")


FILESYSTEM_BROKER_PROBE = """
import json, django
django.setup()
from django.conf import settings
from kombu import Exchange, Queue
from config.celery import app

with app.connection_for_write() as conn:  # binding a queue writes the exchange table (control folder)
    Queue("probe", Exchange("probe"), "probe")(conn.default_channel).declare()
print(json.dumps({"options": settings.CELERY_BROKER_TRANSPORT_OPTIONS, "var": str(settings.VAR_DIR)}))
"""


def test_filesystem_broker_writes_only_under_var(tmp_path):
    """Without REDIS_URL every folder of the filesystem broker is under var/, so a worker started
    from the repository root leaves no control/*.exchange files behind."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings_test", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", FILESYSTEM_BROKER_PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    folders = {k: v for k, v in report["options"].items() if k.endswith("folder") or "folder_" in k}
    assert set(folders) >= {"data_folder_in", "data_folder_out", "control_folder"}
    assert all(Path(v).is_relative_to(report["var"]) for v in folders.values()), folders
    assert not (tmp_path / "control").exists()
    assert (Path(report["options"]["control_folder"]) / "probe.exchange").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXECUTION_INTENT_STALE_SECONDS", "-1"),
        ("EXECUTION_INTENT_STALE_SECONDS", "0"),
        ("PAPER_RECLAIM_SECONDS", "soon"),
        ("EXECUTION_RATE_LIMIT_MAX_WAIT_SECONDS", "nan"),
        ("PAPER_SWEEP_SECONDS", "inf"),
    ],
)
def test_durations_that_make_no_sense_are_refused_at_start_up(name, value):
    result = run_manage("check", DEBUG="1", **{name: value})
    assert result.returncode != 0
    assert name in result.stderr and "Traceback" not in result.stderr


def test_no_wait_on_rate_limits_is_allowed():
    assert run_manage("check", DEBUG="1", EXECUTION_RATE_LIMIT_MAX_WAIT_SECONDS="0").returncode == 0


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings", DEBUG="1")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_importing_settings_creates_no_directory_and_celery_makes_its_broker_folders(tmp_path):
    var_dir = tmp_path / "var"
    setup = _run_python("import django; django.setup()", VAR_DIR=str(var_dir))
    assert setup.returncode == 0, setup.stderr
    assert not var_dir.exists()

    used = _run_python(
        "import django; django.setup(); from config.celery import app; app.conf.broker_url", VAR_DIR=str(var_dir)
    )
    assert used.returncode == 0, used.stderr
    assert (var_dir / "celery-broker" / "control").is_dir()


def test_redis_key_prefix_is_validated():
    result = run_manage("check", DEBUG="1", REDIS_KEY_PREFIX="bad prefix*")
    assert result.returncode != 0
    assert "REDIS_KEY_PREFIX" in result.stderr


@pytest.mark.redis
def test_cache_clear_deletes_only_this_services_keys():
    import redis
    from django.core.cache import cache

    client = redis.Redis.from_url(settings.REDIS_URL)
    foreign = "someone-else:key"
    ours = f"{settings.REDIS_KEY_PREFIX}:raw-key"
    client.set(foreign, "keep", ex=60)
    client.set(ours, "ours", ex=60)
    cache.set("cached", 1, timeout=60)
    try:
        cache.clear()
        assert client.get(foreign) == b"keep"
        assert client.get(ours) is None
        assert cache.get("cached") is None
    finally:
        client.delete(foreign)


def test_tests_use_their_own_redis_key_prefix():
    assert settings.REDIS_KEY_PREFIX == "test-execution"


def test_gunicorn_config_loads():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "--check-config", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_metrics_port_out_of_range_is_refused():
    result = run_manage("check", DEBUG="1", METRICS_PORT="70000")
    assert result.returncode != 0
    assert "METRICS_PORT must be 0..65535" in result.stderr


def test_paper_sweep_shards_out_of_range_is_refused():
    result = run_manage("check", DEBUG="1", PAPER_SWEEP_SHARDS="0")
    assert result.returncode != 0
    assert "PAPER_SWEEP_SHARDS must be 1..1024" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DASHBOARD_POLL_MS", "0", "DASHBOARD_POLL_MS must be 250..60000 ms"),
        ("DASHBOARD_POLL_MS", "100000", "DASHBOARD_POLL_MS must be 250..60000 ms"),
        ("PARITY_MAX_BOOK_AGE_MS", "0", "PARITY_MAX_BOOK_AGE_MS must be a positive number of ms"),
        ("STREAM_MARK_SECONDS", "0", "STREAM_MARK_SECONDS must be a finite number of seconds > 0"),
        ("STREAM_MARK_SECONDS", "soon", "STREAM_MARK_SECONDS must be a number of seconds"),
        ("PARITY_BOOK_WAIT_SECONDS", "-1", "PARITY_BOOK_WAIT_SECONDS must be a finite number of seconds >= 0"),
    ],
)
def test_this_waves_settings_refuse_bad_values_at_start_up(name, value, message):
    result = run_manage("check", DEBUG="1", **{name: value})
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
