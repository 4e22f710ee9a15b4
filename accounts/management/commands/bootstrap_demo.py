"""Create (once) the demo operator, its API token and a paper account, for the embedded demo."""

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token

from accounts.models import Account
from accounts.services import create_account


class Command(BaseCommand):
    help = "Create the demo superuser, its API token and a paper account if they do not exist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args: Any, username: str, password: str, **options: Any) -> None:
        users = get_user_model()
        user = users.objects.filter(username=username).first()
        if user is None:
            user = users.objects.create_superuser(username, f"{username}@example.test", password)
        token, _ = Token.objects.get_or_create(user=user)
        account = Account.objects.filter(owner=user, name="demo-paper").first()
        if account is None:
            account = create_account(
                owner=user, name="demo-paper", is_paper_trading=True, paper_balance=Decimal("10000")
            )
        self.stdout.write(f"login: {username} / {password}")
        self.stdout.write(f"api token: {token.key}")
        self.stdout.write(f"paper account id: {account.pk}")
