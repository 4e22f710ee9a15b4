from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from accounts.encrypted_fields import EncryptedSecretField

HARD_MAX_LEVERAGE = 25


class TradingState(models.TextChoices):
    ACTIVE = "active", "Active"
    REDUCING = "reducing", "Reducing only"
    HALTED = "halted", "Halted"


class ApiVersion(models.TextChoices):
    V1 = "v1", "V1 (HMAC API key)"
    V3 = "v3", "V3 (EIP-712 API wallet)"


class MarginType(models.TextChoices):
    ISOLATED = "ISOLATED", "Isolated"
    CROSSED = "CROSSED", "Cross"


class Account(models.Model):
    """A trading account: paper (simulated) or live (real AsterDEX orders).

    Credentials are write-only secrets (see accounts.encrypted_fields). Every write goes
    through accounts.services, which validates the whole account, credentials included.
    """

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("api_key", "api_secret", "signer_private_key")

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trading_accounts")
    name = models.CharField(max_length=100)
    is_paper_trading = models.BooleanField(default=True)
    trading_state = models.CharField(max_length=16, choices=TradingState.choices, default=TradingState.ACTIVE)
    max_leverage = models.PositiveSmallIntegerField(
        default=HARD_MAX_LEVERAGE, validators=[MinValueValidator(1), MaxValueValidator(HARD_MAX_LEVERAGE)]
    )
    cooldown_seconds = models.PositiveIntegerField(default=0, validators=[MinValueValidator(0)])
    paper_balance = models.DecimalField(
        max_digits=24, decimal_places=8, default=Decimal("10000"), validators=[MinValueValidator(Decimal("0"))]
    )
    paper_realized_pnl = models.DecimalField(
        max_digits=28,
        decimal_places=10,
        default=Decimal("0"),
        help_text="Paper only: realized PnL net of fees and funding since the account opened.",
    )
    margin_type = models.CharField(max_length=8, choices=MarginType.choices, default=MarginType.ISOLATED)
    keep_unprotected_positions = models.BooleanField(
        default=False,
        help_text="If protective orders cannot be placed, keep the position open instead of closing it at market.",
    )

    api_version = models.CharField(max_length=2, choices=ApiVersion.choices, blank=True, default="")
    api_key = EncryptedSecretField()
    api_secret = EncryptedSecretField()
    wallet_address = models.CharField(max_length=42, blank=True, default="", help_text="V3: the main wallet (user).")
    signer_address = models.CharField(max_length=42, blank=True, default="", help_text="V3: the API wallet (signer).")
    signer_private_key = EncryptedSecretField()

    live_wallet_balance = models.DecimalField(
        max_digits=28,
        decimal_places=10,
        null=True,
        blank=True,
        editable=False,
        help_text="Live only: the exchange's wallet balance, from the user-data stream.",
    )
    live_balance_at = models.DateTimeField(null=True, blank=True, editable=False)
    shadow_paper_account = models.OneToOneField(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="shadowed_live_account",
        help_text="Live only: a paper account of the same owner that receives every decision of this one (parity).",
    )
    reconcile_lease_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Held by the reconciliation running for this account."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_leverage__gte=1) & Q(max_leverage__lte=HARD_MAX_LEVERAGE),
                name="account_max_leverage_1_to_25",
            ),
            models.CheckConstraint(condition=Q(cooldown_seconds__gte=0), name="account_cooldown_non_negative"),
            models.CheckConstraint(condition=Q(paper_balance__gte=0), name="account_paper_balance_non_negative"),
            models.CheckConstraint(
                condition=Q(trading_state__in=TradingState.values), name="account_trading_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(api_version__in=["", *ApiVersion.values]), name="account_api_version_valid"
            ),
            models.CheckConstraint(condition=Q(margin_type__in=MarginType.values), name="account_margin_type_valid"),
            models.CheckConstraint(condition=~Q(shadow_paper_account=F("id")), name="account_not_its_own_shadow"),
        ]

    def __str__(self) -> str:
        mode = "paper" if self.is_paper_trading else "live"
        return f"{self.name} ({mode})"

    def __repr__(self) -> str:
        return f"<Account id={self.pk} name={self.name!r} paper={self.is_paper_trading} state={self.trading_state}>"

    @property
    def paper_wallet(self) -> Decimal:
        """The paper wallet: the deposit (paper_balance) plus everything realized since."""
        return self.paper_balance + self.paper_realized_pnl

    @property
    def mode(self) -> str:
        return "paper" if self.is_paper_trading else "live"

    def clean(self) -> None:
        from accounts.credentials import validate_credentials

        validate_credentials(self)
        validate_shadow_paper_account(self)


def validate_shadow_paper_account(account: Account) -> None:
    """A shadow paper account belongs to a live account: it must be a paper account of the same
    owner, not the account itself."""
    shadow_id = account.shadow_paper_account_id
    if shadow_id is None:
        return
    if account.is_paper_trading:
        raise ValidationError({"shadow_paper_account": "only a live account can have a shadow paper account"})
    if account.pk is not None and shadow_id == account.pk:
        raise ValidationError({"shadow_paper_account": "an account cannot shadow itself"})
    shadow = Account.objects.filter(pk=shadow_id).only("owner_id", "is_paper_trading").first()
    if shadow is None:
        raise ValidationError({"shadow_paper_account": f"account {shadow_id} does not exist"})
    if not shadow.is_paper_trading:
        raise ValidationError({"shadow_paper_account": "the shadow account must be a paper account"})
    if shadow.owner_id != account.owner_id:
        raise ValidationError({"shadow_paper_account": "the shadow account must belong to the same owner"})


class ExecutionEvent(models.Model):
    """Append-only audit row: one per state change, written in the same transaction."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="events", null=True, blank=True)
    kind = models.CharField(max_length=64, db_index=True)
    subject_type = models.CharField(max_length=32, blank=True, default="")
    subject_id = models.BigIntegerField(null=True, blank=True)
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, blank=True, default="")
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        # The table keeps the name it had when the model lived in `execution` (moved, not copied).
        db_table = "execution_executionevent"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="event_subject")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind} {self.subject_type}#{self.subject_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("ExecutionEvent rows are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("ExecutionEvent rows are append-only.")
