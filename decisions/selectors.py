"""Reads of decisions, scoped to the requesting owner."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from decisions.models import Decision


def decisions_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Decision]:
    return Decision.objects.filter(account__owner_id=user.pk)
