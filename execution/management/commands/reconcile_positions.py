"""Reconcile live accounts with AsterDEX now, printing what differed and what was done."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Account
from execution.models import ReconciliationStatus
from execution.services.reconciliation import live_account_ids, reconcile_account

NOT_RECONCILED = {ReconciliationStatus.FAILED, ReconciliationStatus.SKIPPED}


class Command(BaseCommand):
    help = "Compare live accounts with the exchange and repair the differences (or only show them with --dry-run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            type=int,
            action="append",
            dest="accounts",
            metavar="ID",
            help="a live account id (repeatable); default: every live account",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="change nothing, locally or on the exchange; only the run record is written",
        )

    def handle(self, *args: Any, accounts: list[int] | None, dry_run: bool, **options: Any) -> None:
        targets = self._accounts(accounts)
        failures = 0
        for account in targets:
            run = reconcile_account(account, dry_run=dry_run)
            self._print(account, run)
            failures += run.status in NOT_RECONCILED
        if failures:
            raise CommandError(f"{failures} account(s) could not be reconciled", returncode=1)

    def _accounts(self, ids: list[int] | None) -> list[Account]:
        if not ids:
            return list(Account.objects.filter(pk__in=live_account_ids()).order_by("pk"))
        found = {a.pk: a for a in Account.objects.filter(pk__in=ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise CommandError(f"no account with id {', '.join(map(str, missing))}", returncode=2)
        paper = [i for i in ids if found[i].is_paper_trading]
        if paper:
            raise CommandError(
                f"account {', '.join(map(str, paper))} is a paper account: only live accounts are reconciled",
                returncode=2,
            )
        return [found[i] for i in ids]

    def _print(self, account: Account, run: Any) -> None:
        label = " (dry run: nothing changed)" if run.dry_run else ""
        self.stdout.write(
            f"account {account.pk} {account.name}: {run.status}{label}, "
            f"{run.differences} difference(s), {run.http_calls} exchange request(s). {run.message}"
        )
        items = list(run.items.all())
        if not items:
            return
        rows = [("kind", "symbol", "local", "remote", "action", "outcome")]
        rows += [
            (
                i.kind,
                i.symbol,
                _short(i.local),
                _short(i.remote),
                i.action,
                i.outcome + (f": {i.message}" if i.message else ""),
            )
            for i in items
        ]
        widths = [min(max(len(r[c]) for r in rows), 48) for c in range(5)]
        for row in rows:
            cells = [row[c][: widths[c]].ljust(widths[c]) for c in range(5)]
            self.stdout.write("  " + "  ".join(cells) + "  " + row[5])


def _short(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items() if k not in ("id",))
