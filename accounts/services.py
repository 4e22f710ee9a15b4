"""Writes to accounts. Every entry point (admin, API, commands, code) goes through here."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.dispatch import Signal

from accounts import encrypted_fields
from accounts.audit import record_event
from accounts.models import Account, TradingState

# Sent after the commit of a trading-state change, with `account`, `previous`, `state` and
# `reason`: how `execution` (which accounts may not import) raises its alerts about it.
trading_state_changed = Signal()


def _announce_state(account: Account, previous: str, state: str, reason: str) -> None:
    transaction.on_commit(
        lambda: trading_state_changed.send(
            sender=Account, account=account, previous=previous, state=state, reason=reason
        )
    )


# What callers may set on an account, in the order forms show them (the admin form uses it).
EDITABLE_FIELDS: tuple[str, ...] = (
    "name",
    "is_paper_trading",
    "trading_state",
    "max_leverage",
    "cooldown_seconds",
    "paper_balance",
    "margin_type",
    "keep_unprotected_positions",
    "api_version",
    "api_key",
    "api_secret",
    "wallet_address",
    "signer_address",
    "signer_private_key",
)


def _audit_data(changes: dict[str, Any]) -> dict[str, Any]:
    """What changed, with secret values replaced by 'set' / 'cleared'."""
    data: dict[str, Any] = {}
    for field, value in changes.items():
        if field in Account.SECRET_FIELDS:
            data[field] = "set" if value else "cleared"
        else:
            data[field] = value
    return data


def _apply(account: Account, changes: dict[str, Any]) -> None:
    unknown = set(changes).difference(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({field: "Not an editable account field." for field in sorted(unknown)})
    for field, value in changes.items():
        setattr(account, field, value)


def create_account(*, owner: User, name: str, **fields: Any) -> Account:
    """Create a validated account. Raises ValidationError (per field); writes nothing then."""
    account = Account(owner=owner, name=name)
    _apply(account, fields)
    account.full_clean()
    with transaction.atomic():
        account.save()
        record_event(account=account, kind="account.created", subject=account, data=_audit_data(fields))
    return account


def update_account(*, account: Account, **changes: Any) -> Account:
    """Change fields of an account, validating the whole result first."""
    if not changes:
        return account
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        previous = locked.trading_state
        _apply(locked, changes)
        locked.full_clean()
        locked.save(update_fields=[*sorted(changes), "updated_at"])
        record_event(account=locked, kind="account.updated", subject=locked, data=_audit_data(changes))
        if locked.trading_state != previous:
            _announce_state(locked, previous, locked.trading_state, "account edited")
    return locked


def set_trading_state(*, account: Account, state: str, reason: str = "", only_from: str | None = None) -> Account:
    """Move an account between active, reducing and halted (audited).

    With `only_from`, the change happens only if the account is in that state now (so that an
    automatic fail-closed never lifts an operator's halt).
    """
    if state not in TradingState.values:
        raise ValidationError({"trading_state": f"Must be one of {', '.join(TradingState.values)}."})
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        previous = locked.trading_state
        if previous == state or (only_from is not None and previous != only_from):
            return locked
        locked.trading_state = state
        locked.save(update_fields=["trading_state", "updated_at"])
        record_event(
            account=locked,
            kind="account.trading_state",
            subject=locked,
            from_status=previous,
            to_status=state,
            message=reason,
        )
        _announce_state(locked, previous, state, reason)
    return locked


def rotate_field_encryption() -> int:
    """Re-encrypt every stored secret under the first FIELD_ENCRYPTION_KEY. Returns rows rewritten.

    Works on the raw tokens in SQL, so no plain secret is held in a model instance.
    """
    fields = Account.SECRET_FIELDS
    table = connection.ops.quote_name(Account._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in fields)
    assignments = ", ".join(f"{connection.ops.quote_name(name)} = %s" for name in fields)
    rewritten = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {columns} FROM {table} ORDER BY id")
        for pk, *tokens in cursor.fetchall():
            if not any(tokens):
                continue
            rotated = [encrypted_fields.rotate(token) if token else "" for token in tokens]
            cursor.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", [*rotated, pk])
            rewritten += 1
        record_event(account=None, kind="account.secrets_rotated", data={"accounts": rewritten})
    return rewritten


# What each credential scheme takes through set_credentials (the other scheme's fields are cleared).
CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "v1": ("api_key", "api_secret"),
    "v3": ("wallet_address", "signer_address", "signer_private_key"),
}


def set_credentials(*, account: Account, api_version: str, **values: str) -> Account:
    """Set or rotate a live credential set (write-only: the audit says only "set"). Validated as
    a live account's, whatever the account's mode, so that a paper account switched to live
    later has working credentials. Raises ValidationError (per field, never echoing a value)."""
    from accounts.credentials import validate_credentials

    if api_version not in CREDENTIAL_FIELDS:
        raise ValidationError({"api_version": "Must be v1 or v3."})
    wanted = CREDENTIAL_FIELDS[api_version]
    if unknown := set(values).difference(wanted):
        raise ValidationError({name: f"Not a {api_version} credential field." for name in sorted(unknown)})
    changes: dict[str, Any] = {"api_version": api_version}
    for scheme_fields in CREDENTIAL_FIELDS.values():
        for name in scheme_fields:
            changes[name] = values.get(name, "") if name in wanted else ""
    probe = Account(is_paper_trading=False)
    _apply(probe, changes)
    validate_credentials(probe)
    return update_account(account=account, **changes)


def switch_to_live(*, account: Account, by: User, open_positions: int) -> Account:
    """Paper -> live, a staff action: the account must hold valid credentials and no open paper
    position (`open_positions`, counted by the caller). Audited with who did it."""
    if not account.is_paper_trading:
        raise ValidationError({"is_paper_trading": "The account is live already."})
    if open_positions:
        raise ValidationError({"is_paper_trading": "Close the account's paper positions first."})
    with transaction.atomic():
        locked = update_account(account=account, is_paper_trading=False)
        record_event(
            account=locked,
            kind="account.switched_to_live",
            subject=locked,
            from_status="paper",
            to_status="live",
            data={"by_user": by.pk},
        )
    return locked


def reset_paper_wallet(*, account: Account, paper_balance: Decimal | None = None) -> Account:
    """A paper account's wallet back to a deposit (`paper_balance`, or the current deposit) with
    nothing realized. The caller has closed its positions. Audited."""
    if not account.is_paper_trading:
        raise ValidationError({"is_paper_trading": "Only a paper account can be reset."})
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        before = {"paper_balance": locked.paper_balance, "paper_realized_pnl": locked.paper_realized_pnl}
        if paper_balance is not None:
            locked.paper_balance = paper_balance
        locked.paper_realized_pnl = Decimal("0")
        locked.full_clean()
        locked.save(update_fields=["paper_balance", "paper_realized_pnl", "updated_at"])
        record_event(
            account=locked,
            kind="account.reset",
            subject=locked,
            data={"before": before, "paper_balance": locked.paper_balance},
        )
    return locked
