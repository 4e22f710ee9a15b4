"""Test settings: production settings with test-only keys (DEBUG stays off, as in production)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-the-dev-default")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "tS2ti-Qo1bBdpuOpbvQ9x4nF4pGZtUUdIBtr3oYMq0k=")
os.environ.setdefault("ASTER_BASE_URL", "http://aster.test")
# Tests keep their Redis keys under their own prefix; cache.clear() deletes only those (no FLUSHDB).
os.environ.setdefault("REDIS_KEY_PREFIX", "test-execution")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
CELERY_TASK_ALWAYS_EAGER = False

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A test database in a file, not in memory: the browser tests' live server answers the page's
    # parallel requests from several threads, each with its own connection (an in-memory database
    # is one connection shared by every thread, and parallel requests on it hang).
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"execution-test-{os.getpid()}.sqlite3")
    }
