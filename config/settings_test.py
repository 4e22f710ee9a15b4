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
