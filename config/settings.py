"""Settings, all from the environment (django-environ). Defaults follow CONTRACT.md.

The dev-only SECRET_KEY and FIELD_ENCRYPTION_KEY defaults are refused unless DEBUG is on,
so a production process cannot start with keys that are published in this repository.
"""

import math
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config.structured_logging import logging_config

django_stubs_ext.monkeypatch()  # generic model fields, forms and serializers at run time

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")  # logs, broker folders, beat schedule

DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"
DEV_FIELD_ENCRYPTION_KEY = "Kp4NWr6f-WSOngSspPFQrB5Yi6fKxVrap6xP_j7005k="

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
# Comma-separated Fernet keys: the first encrypts, all decrypt (key rotation:
# prepend a new key, run `manage.py rotate_field_encryption`, then drop the old one).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEY", default=[DEV_FIELD_ENCRYPTION_KEY])


def _refuse_dev_defaults() -> None:
    if DEBUG:
        return
    offenders = []
    if SECRET_KEY == DEV_SECRET_KEY:
        offenders.append("SECRET_KEY")
    if DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEYS:
        offenders.append("FIELD_ENCRYPTION_KEY")
    if offenders:
        raise ImproperlyConfigured(
            f"{' and '.join(offenders)} still use the dev-only default, which is refused when "
            "DEBUG is off. Set them in the environment (FIELD_ENCRYPTION_KEY is a Fernet key: "
            'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"), '
            "or set DEBUG=1 for local development."
        )


def _check_field_keys() -> None:
    if not FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is empty.")
    for position, key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY entry {position} is not a valid Fernet key (32 url-safe base64-encoded bytes)."
            ) from None


def _seconds_setting(name: str, default: float, *, zero: bool = False) -> float:
    """A duration in seconds: a finite number > 0 (>= 0 with `zero`)."""
    raw = env.str(name, default=str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, got {raw!r}.") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ImproperlyConfigured(f"{name} must be a finite number of seconds {'>=' if zero else '>'} 0, got {raw!r}.")
    return value


def _decimal_setting(name: str, default: str) -> Decimal:
    raw = env.str(name, default=default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {raw!r}.") from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name} must be a finite number >= 0, got {raw!r}.")
    return value


def _configure_connections(database: dict[str, Any]) -> None:
    """PostgreSQL connections per process: closed after each request (CONN_MAX_AGE=0, the
    default: safe under any server), persistent (CONN_MAX_AGE>0: one thread per process only,
    e.g. gunicorn sync workers, Celery prefork), or from psycopg's pool (DB_POOL_MAX_SIZE>0:
    threaded servers; at most that many connections per process). docs/operations.md sizes them."""
    conn_max_age = env.int("CONN_MAX_AGE", default=database.get("CONN_MAX_AGE") or 0)
    pool_max = env.int("DB_POOL_MAX_SIZE", default=0)
    if conn_max_age < 0:
        raise ImproperlyConfigured(f"CONN_MAX_AGE must be >= 0 seconds, got {conn_max_age}.")
    if pool_max < 0:
        raise ImproperlyConfigured(f"DB_POOL_MAX_SIZE must be >= 0 (0: no pool), got {pool_max}.")
    if pool_max:
        if conn_max_age:
            raise ImproperlyConfigured(
                f"DB_POOL_MAX_SIZE={pool_max} (a connection pool) and CONN_MAX_AGE={conn_max_age} (persistent "
                "connections) exclude each other: Django refuses a pool with persistent connections. "
                "Unset CONN_MAX_AGE (or set it to 0) for a pooled process."
            )
        pool_min = env.int("DB_POOL_MIN_SIZE", default=1)
        timeout = env.float("DB_POOL_TIMEOUT", default=10.0)
        if not 0 <= pool_min <= pool_max:
            raise ImproperlyConfigured(f"DB_POOL_MIN_SIZE must be 0..DB_POOL_MAX_SIZE ({pool_max}), got {pool_min}.")
        if timeout <= 0:
            raise ImproperlyConfigured(f"DB_POOL_TIMEOUT must be > 0 seconds, got {timeout}.")
        database.setdefault("OPTIONS", {})["pool"] = {"min_size": pool_min, "max_size": pool_max, "timeout": timeout}
    database["CONN_MAX_AGE"] = conn_max_age
    database["CONN_HEALTH_CHECKS"] = conn_max_age > 0
    _configure_prepared_statements(database)


def _configure_prepared_statements(database: dict[str, Any]) -> None:
    """Server-side binding, and statements prepared after DB_PREPARE_THRESHOLD executions (the
    server parses a hot statement once per connection). DB_PREPARED_STATEMENTS=0 turns both off:
    needed behind a transaction-pooling PgBouncer older than 1.21 (docs/operations.md)."""
    if not env.bool("DB_PREPARED_STATEMENTS", default=True):
        return
    threshold = env.int("DB_PREPARE_THRESHOLD", default=2)
    if threshold < 0:
        raise ImproperlyConfigured(f"DB_PREPARE_THRESHOLD must be >= 0 executions, got {threshold}.")
    options = database.setdefault("OPTIONS", {})
    options["server_side_binding"] = True
    options["prepare_threshold"] = threshold


_refuse_dev_defaults()
_check_field_keys()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "execution",
    "decisions",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "execution.api.middleware.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# A request body larger than this is refused (413 from RequestBodyLimitMiddleware, for every
# parser; Django's own check covers forms). A decision is a few hundred bytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default runs a web server, a Celery worker and beat on one file:
    # IMMEDIATE transactions take the write lock up front (SQLite has no row locks),
    # WAL lets readers proceed, and the timeout waits for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    _configure_connections(DATABASES["default"])

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# The dashboard (dashboard/): its own small login page; the API takes the same session (with CSRF).
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:home"
# The live accounts' parity panel reads GET /api/accounts/{id}/parity/ (issue 18): on once that exists.
DASHBOARD_PARITY_PANEL = env.bool("DASHBOARD_PARITY_PANEL", default=True)
DASHBOARD_POLL_MS = env.int("DASHBOARD_POLL_MS", default=1500)
if not 250 <= DASHBOARD_POLL_MS <= 60_000:  # faster would hammer the API; slower is not "live"
    raise ImproperlyConfigured(f"DASHBOARD_POLL_MS must be 250..60000 ms, got {DASHBOARD_POLL_MS}.")

REDIS_URL = env.str("REDIS_URL", default="")

# Every Redis key of this service starts with this prefix (cache, weight budget, price cache), so
# that several deployments, or a test run, can share one Redis database and clear only their own.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="execution")
if not REDIS_KEY_PREFIX or not all(c.isalnum() or c in "-_." for c in REDIS_KEY_PREFIX):
    raise ImproperlyConfigured(f"REDIS_KEY_PREFIX must be letters, digits, '-', '_' or '.', got {REDIS_KEY_PREFIX!r}")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "config.redis_cache.PrefixScopedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery -------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if not REDIS_URL:
    # The folders are created when Celery first reads its configuration (config/celery.py),
    # not here: importing settings creates nothing.
    _broker_dir = VAR_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        # Exchange/queue bindings (worker pidbox included); kombu's default is ./control.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=120)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=100)
# Tasks are idempotent (they claim rows), so a task lost with its worker is run again.
CELERY_TASK_ACKS_LATE = True
# Workers log through Django's LOGGING (structured lines, redaction), not Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
PAPER_SWEEP_SECONDS = _seconds_setting("PAPER_SWEEP_SECONDS", 5.0)
PAPER_MARK_SECONDS = _seconds_setting("PAPER_MARK_SECONDS", 15.0)
# A triggered order whose worker died is claimed again after this long. Re-claiming one that a
# slow worker is still filling is harmless (the fill re-checks the status under the account lock).
PAPER_RECLAIM_SECONDS = _seconds_setting("PAPER_RECLAIM_SECONDS", 3 * PAPER_SWEEP_SECONDS)
# The sweep in N parts by a stable hash of the symbol (execution.services.paper.symbols): the beat
# enqueues one task per shard, so that N worker processes on any machines share one sweep.
PAPER_SWEEP_SHARDS = env.int("PAPER_SWEEP_SHARDS", default=1)
if not 1 <= PAPER_SWEEP_SHARDS <= 1024:
    raise ImproperlyConfigured(f"PAPER_SWEEP_SHARDS must be 1..1024, got {PAPER_SWEEP_SHARDS}")
# A `submitting` intent this old lost its process between sending and booking: reconciliation
# resolves it by client order id, like an `unknown` one.
EXECUTION_INTENT_STALE_SECONDS = _seconds_setting("EXECUTION_INTENT_STALE_SECONDS", 120.0)
# Protective placement and its rollback wait out a rate limit this short rather than give up.
EXECUTION_RATE_LIMIT_MAX_WAIT_SECONDS = _seconds_setting("EXECUTION_RATE_LIMIT_MAX_WAIT_SECONDS", 5.0, zero=True)
# The reconciliation beat. An account without a healthy user-data stream (none, or down) is
# reconciled on every beat; one whose stream is healthy (connected, its holder's lease alive)
# every RECONCILE_STREAMED_SECONDS: the stream books its fills, reconciliation is the safety net.
# A stream also reconciles its account on every (re)connect.
RECONCILE_SECONDS = _seconds_setting("RECONCILE_SECONDS", 60.0)
RECONCILE_STREAMED_SECONDS = _seconds_setting("RECONCILE_STREAMED_SECONDS", 600.0)
# Equity snapshots: one per account per minute (execution.take_equity_snapshots; a second run in
# the same minute writes nothing).
EQUITY_SNAPSHOT_SECONDS = _seconds_setting("EQUITY_SNAPSHOT_SECONDS", 60.0)
# --- Alerts (execution.services.alerts) ---------------------------------------------------
# Where alerts are POSTed as JSON (unset: they are only recorded). Never logged: it may hold a token.
ALERT_WEBHOOK_URL = os.environ.get("ALERT_WEBHOOK_URL", "")
ALERT_WEBHOOK_TIMEOUT_SECONDS = _seconds_setting("ALERT_WEBHOOK_TIMEOUT_SECONDS", 5.0)
# The same cause (a position's protection, a stream, ...) alerts once within this window.
ALERT_DEDUPE_SECONDS = _seconds_setting("ALERT_DEDUPE_SECONDS", 900.0)
# Delivery retries: after ALERT_RETRY_BASE_SECONDS, doubling, at most ALERT_DELIVERY_RETRIES times.
ALERT_RETRY_BASE_SECONDS = _seconds_setting("ALERT_RETRY_BASE_SECONDS", 2.0)
ALERT_DELIVERY_RETRIES = env.int("ALERT_DELIVERY_RETRIES", default=5)
# The beat check: an intent unresolved this long, a stream down this long, alert.
ALERT_CHECK_SECONDS = _seconds_setting("ALERT_CHECK_SECONDS", 30.0)
ALERT_UNKNOWN_INTENT_SECONDS = _seconds_setting("ALERT_UNKNOWN_INTENT_SECONDS", 300.0)
ALERT_STREAM_DOWN_SECONDS = _seconds_setting("ALERT_STREAM_DOWN_SECONDS", 120.0)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "sweep-paper-triggers": {
        "task": "execution.sweep_paper_triggers",
        "schedule": PAPER_SWEEP_SECONDS,
        # A sweep that waited longer than the interval is superseded by the next one.
        "options": {"expires": PAPER_SWEEP_SECONDS},
    },
    "reconcile-live-positions": {
        "task": "execution.reconcile_live_positions",
        "schedule": RECONCILE_SECONDS,
        "options": {"expires": RECONCILE_SECONDS},
    },
    "take-equity-snapshots": {
        "task": "execution.take_equity_snapshots",
        "schedule": EQUITY_SNAPSHOT_SECONDS,
        "options": {"expires": EQUITY_SNAPSHOT_SECONDS},
    },
    "check-alert-conditions": {
        "task": "execution.check_alert_conditions",
        "schedule": ALERT_CHECK_SECONDS,
        "options": {"expires": ALERT_CHECK_SECONDS},
    },
    "settle-decisions": {
        "task": "decisions.settle_decisions",
        "schedule": RECONCILE_SECONDS,
        "options": {"expires": RECONCILE_SECONDS},
    },
}

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        "execution.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "execution.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "EXCEPTION_HANDLER": "execution.api.errors.exception_handler",
}
# Each control of the API has its own throttle scope (execution.api.throttles), per user:
# API_CONTROL_RATE for trading controls, API_ACCOUNT_RATE for account lifecycle writes.
API_CONTROL_RATE = os.environ.get("API_CONTROL_RATE", "60/min")
API_ACCOUNT_RATE = os.environ.get("API_ACCOUNT_RATE", "20/min")
API_THROTTLE_RATES: dict[str, str] = {
    **dict.fromkeys(
        ["position-close", "position-protection", "pending-order-cancel", "account-close-all"], API_CONTROL_RATE
    ),
    **dict.fromkeys(["account-halt", "account-resume", "account-reduce-only"], API_CONTROL_RATE),
    **dict.fromkeys(
        ["account-create", "account-reset", "account-credentials", "account-switch-to-live"], API_ACCOUNT_RATE
    ),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Execution service API",
    "DESCRIPTION": "Positions, trades, protective orders and decisions of the execution service.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "execution.api.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "OrderSideEnum": "execution.models.Side",
        "PositionSideEnum": "execution.models.PositionSide",
        "DecisionStatusEnum": "decisions.models.DecisionStatus",
    },
}

# --- Exchange and execution -----------------------------------------------------------
ASTER_BASE_URL = env.str("ASTER_BASE_URL", default="https://fapi.asterdex.com").rstrip("/")
ASTER_CHAIN_ID = env.int("ASTER_CHAIN_ID", default=1666)
ASTER_RECV_WINDOW_MS = env.int("ASTER_RECV_WINDOW_MS", default=5000)
ASTER_CONNECT_TIMEOUT = env.float("ASTER_CONNECT_TIMEOUT", default=3.05)
ASTER_READ_TIMEOUT = env.float("ASTER_READ_TIMEOUT", default=10.0)
ASTER_EXCHANGE_INFO_TTL = env.int("ASTER_EXCHANGE_INFO_TTL", default=300)
ASTER_WEIGHT_LIMIT_1M = env.int("ASTER_WEIGHT_LIMIT_1M", default=2400)

EXECUTION_MAX_LEVERAGE = env.int("EXECUTION_MAX_LEVERAGE", default=25)
if not 1 <= EXECUTION_MAX_LEVERAGE <= 25:
    raise ImproperlyConfigured(
        f"EXECUTION_MAX_LEVERAGE must be between 1 and 25 (the hard cap), got {EXECUTION_MAX_LEVERAGE}."
    )
PAPER_TAKER_FEE_RATE = _decimal_setting("PAPER_TAKER_FEE_RATE", "0.00035")
EXECUTION_STALE_PRICE_SECONDS = env.int("EXECUTION_STALE_PRICE_SECONDS", default=30)
# A live account's availableBalance is reused by the order path for this long (0: read it for
# every order). Safe against double-spending margin because the balance keeps the time it was
# read and the reservation counts every intent in flight and every fill booked since then
# (risk_context.reserved_margin); what it can miss is activity outside this service (manual
# trades, transfers) for this long, which the exchange's own margin check still refuses.
LIVE_BALANCE_CACHE_SECONDS = _seconds_setting("LIVE_BALANCE_CACHE_SECONDS", 2.0, zero=True)
# Paper<->live parity (execution.services.parity): a shadow fill for every live fill.
PARITY_ENABLED = env.bool("PARITY_ENABLED", default=True)
# A shadow built on a book further than this from the send (either way) is marked stale.
PARITY_MAX_BOOK_AGE_MS = env.int("PARITY_MAX_BOOK_AGE_MS", default=1000)
if PARITY_MAX_BOOK_AGE_MS < 1:
    raise ImproperlyConfigured(f"PARITY_MAX_BOOK_AGE_MS must be a positive number of ms, got {PARITY_MAX_BOOK_AGE_MS}.")
# After the fill is booked and protected, how long (since the send) the record waits at most for
# the book read started before the send.
PARITY_BOOK_WAIT_SECONDS = _seconds_setting("PARITY_BOOK_WAIT_SECONDS", 0.5, zero=True)
# --- Operations -------------------------------------------------------------------------
# Unset: /metrics answers loopback clients only. Set: it needs `Authorization: Bearer <token>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# A worker or stream process serves its own series on this loopback port when set (0: off; with
# PROMETHEUS_MULTIPROC_DIR the web process's /metrics sums every process of the machine instead).
METRICS_PORT = env.int("METRICS_PORT", default=0)
if not 0 <= METRICS_PORT <= 65535:
    raise ImproperlyConfigured(f"METRICS_PORT must be 0..65535, got {METRICS_PORT}")

# --- Streams (`manage.py aster_stream`) ---------------------------------------------------
ASTER_WS_URL = env.str("ASTER_WS_URL", default="wss://fstream.asterdex.com").rstrip("/")
# No frame for this long: the connection is presumed dead and replaced (the mark stream pushes every 1 s).
STREAM_IDLE_SECONDS = _seconds_setting("STREAM_IDLE_SECONDS", 10.0)
# The stream process marks open positions (paper and live) to the cached marks this often, after
# each pass (a pass over many positions delays the next: it never overlaps itself). The exchange
# pushes marks every 1 s, so positions (and the dashboard) are true within about a second.
STREAM_MARK_SECONDS = _seconds_setting("STREAM_MARK_SECONDS", 1.0)
# The exchange closes a connection after 24 h; the process opens its successor before then.
STREAM_ROLLOVER_SECONDS = _seconds_setting("STREAM_ROLLOVER_SECONDS", 23 * 3600.0)
# Reconnects back off exponentially (with jitter) from 0.5 s up to this.
STREAM_BACKOFF_MAX_SECONDS = _seconds_setting("STREAM_BACKOFF_MAX_SECONDS", 30.0)
# A user-data stream lease lapses this long after its holder's last renewal (a dead process's
# accounts are taken over within about this long).
STREAM_LEASE_SECONDS = _seconds_setting("STREAM_LEASE_SECONDS", 30.0)
# listenKey keepalive: well inside the exchange's 60-minute validity.
LISTEN_KEY_KEEPALIVE_SECONDS = _seconds_setting("LISTEN_KEY_KEEPALIVE_SECONDS", 1800.0)
# An ACCOUNT_UPDATE position that differs from ours is reconciled if it still differs this long
# after (the ORDER_TRADE_UPDATE that explains it may arrive just after it); 0 = at once.
USER_STREAM_MISMATCH_GRACE_SECONDS = _seconds_setting("USER_STREAM_MISMATCH_GRACE_SECONDS", 2.0, zero=True)

# A position adopted by reconciliation gets a stop this far from the mark (0.05 = 5 %).
EXECUTION_ADOPTED_STOP_PCT = _decimal_setting("EXECUTION_ADOPTED_STOP_PCT", "0.05")

# JSON lines in production, readable lines in DEBUG; ids from execution.log_context; secrets redacted.
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
try:
    LOGGING = logging_config(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
