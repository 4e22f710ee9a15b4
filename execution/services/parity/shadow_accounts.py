"""Pairing a live account with its shadow paper account (decisions.services mirrors every
decision of the live account to it)."""

from __future__ import annotations

from django.db import transaction

from accounts.audit import record_event
from accounts.models import Account, validate_shadow_paper_account


def set_shadow_paper_account(*, account: Account, shadow: Account | None) -> Account:
    """Pair (or, with None, unpair) a live account with a paper account of the same owner.
    Raises ValidationError (nothing written) for a paper account, another owner's account, a
    live shadow or the account itself."""
    before = account.shadow_paper_account_id
    account.shadow_paper_account = shadow
    try:
        validate_shadow_paper_account(account)
    except Exception:
        account.shadow_paper_account_id = before  # the caller's object is left as it was
        raise
    with transaction.atomic():
        account.save(update_fields=["shadow_paper_account", "updated_at"])
        record_event(
            account=account,
            kind="account.shadow_paper_account",
            message=f"shadow paper account {shadow.pk if shadow else 'removed'}",
            data={"shadow_paper_account": shadow.pk if shadow else None},
        )
    return account
