"""Validation of exchange credentials, shared by every entry point (service, admin, API).

Error messages name the field and the rule; they never echo a secret's value.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from eth_account import Account as EthAccount

if TYPE_CHECKING:
    from accounts.models import Account

_PRIVATE_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{8,256}$")  # printable ASCII, no spaces


def address_for_private_key(private_key: str) -> str:
    """The checksummed address of a 32-byte hex private key (raises ValueError if malformed)."""
    if not _PRIVATE_KEY_RE.match(private_key):
        raise ValueError("not a 32-byte hex private key")
    return str(EthAccount.from_key(private_key).address)


def _v1_errors(account: Account) -> dict[str, str]:
    errors = {}
    for field in ("api_key", "api_secret"):
        value = getattr(account, field).reveal()
        if not value:
            errors[field] = "Required for a live V1 account (API key and secret come as a pair)."
        elif not _TOKEN_RE.match(value):
            errors[field] = "Must be 8 to 256 printable characters without spaces."
    return errors


def _v3_errors(account: Account) -> dict[str, str]:
    errors = {}
    if not _ADDRESS_RE.match(account.wallet_address or ""):
        errors["wallet_address"] = "Required for a live V3 account: the main wallet address, 0x and 40 hex digits."
    key = account.signer_private_key.reveal()
    if not key:
        errors["signer_private_key"] = "Required for a live V3 account: the API wallet's private key."
        return errors
    try:
        derived = address_for_private_key(key)
    except ValueError:
        errors["signer_private_key"] = "Must be a 32-byte private key in hex (64 hex digits, optional 0x)."
        return errors
    if not _ADDRESS_RE.match(account.signer_address or ""):
        errors["signer_address"] = "Required for a live V3 account: the API wallet address, 0x and 40 hex digits."
    elif account.signer_address.lower() != derived.lower():
        errors["signer_address"] = "Does not match the address of signer_private_key."
    return errors


def validate_credentials(account: Account) -> None:
    """Raise ValidationError (per field) unless a live account has one complete credential set."""
    if account.is_paper_trading:
        return
    if account.api_version == "v1":
        errors = _v1_errors(account)
    elif account.api_version == "v3":
        errors = _v3_errors(account)
    else:
        errors = {"api_version": "A live account needs credentials: choose v1 (API key) or v3 (API wallet)."}
    if errors:
        raise ValidationError(errors)
