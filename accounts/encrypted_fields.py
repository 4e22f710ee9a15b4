"""Exchange secrets at rest: Fernet-encrypted with FIELD_ENCRYPTION_KEY, masked everywhere else.

In the database a secret is a Fernet token. In Python it is a `Secret`, whose repr and str
are masked, so a secret cannot leak through a log line, an exception message, a template or
a traceback's locals by accident; code that needs the value calls `.reveal()`.
Assigning a plain string to the attribute wraps it at once (see `SecretAttribute`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from secret_value import MASK, Secret, as_secret

__all__ = ["MASK", "EncryptedSecretField", "Secret", "as_secret", "decrypt", "encrypt", "rotate"]


@lru_cache(maxsize=4)
def _keyring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def keyring() -> MultiFernet:
    return _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return keyring().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return keyring().decrypt(token.encode()).decode()
    except InvalidToken:
        # Never include the token or any key material in the message.
        raise ValueError(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEY "
            "(was the key rotated without keeping the old one?)."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a token under the first (current) key."""
    return keyring().rotate(token.encode()).decode()


class SecretAttribute(DeferredAttribute):
    """Wraps whatever is assigned (plain str included) into a Secret."""

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = as_secret(value)


class EncryptedSecretField(models.TextField[Any, Secret]):
    """A TextField holding a Fernet token; the Python value is a `Secret`."""

    descriptor_class = SecretAttribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret:
        return Secret(decrypt(value)) if value else Secret("")

    def to_python(self, value: Any) -> Secret:
        return as_secret(value)

    def get_prep_value(self, value: Any) -> str:
        plain = as_secret(value).reveal()
        return encrypt(plain) if plain else ""

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata) must not export secrets in plain text.
        return MASK if getattr(obj, self.attname) else ""
