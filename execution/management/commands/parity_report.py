"""How far paper is from live: slippage, fees and TP/SL delay of the shadow fills, by symbol and kind."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Account
from execution.services.parity.report import ParityReport, parity_report, parse_since

ACCOUNT_ID = re.compile(r"[0-9]{1,18}")
HEADER = ("symbol", "kind", "count", "mean bps", "median bps", "p95 bps", "fee diff", "TP/SL delay ms")


class Command(BaseCommand):
    help = (
        "Paper<->live parity: per symbol and kind, how many live fills, their slippage against paper's "
        "shadow (bps, positive: live worse), the fee difference and the TP/SL trigger delay; then the "
        "calibration paper would have needed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", metavar="ID", help="one account id; default: every account")
        parser.add_argument("--since", metavar="ISO|1d|7d", help="only fills since then (an ISO time or 12h, 1d, 7d)")
        parser.add_argument(
            "--decisions", action="store_true", help="also list decisions one side of a shadow pair refused"
        )

    def handle(self, *args: Any, account: str | None, since: str | None, decisions: bool, **options: Any) -> None:
        account_id = self._account(account)
        try:
            start = parse_since(since)
        except ValidationError as exc:
            raise CommandError(f"--since: {'; '.join(exc.messages)}", returncode=2) from None
        report = parity_report(account_id=account_id, since=start)
        self._print(report)
        if decisions:
            self._print_decisions(report)

    @staticmethod
    def _account(raw: str | None) -> int | None:
        if raw is None:
            return None
        if not ACCOUNT_ID.fullmatch(raw):  # ASCII digits only: str.isdigit() takes "²", which int() refuses
            raise CommandError(f"--account: {raw!r} is not an account id (a positive integer)", returncode=2)
        if not Account.objects.filter(pk=int(raw)).exists():
            raise CommandError(f"--account: no account with id {raw}", returncode=2)
        return int(raw)

    def _print(self, report: ParityReport) -> None:
        scope = f"account {report.account}" if report.account is not None else "all accounts"
        since = report.since.isoformat() if report.since else "the beginning"
        self.stdout.write(f"Parity for {scope} since {since}")
        rows = [HEADER] + [
            (
                g.symbol,
                g.kind,
                str(g.count),
                _text(g.mean_bps),
                _text(g.median_bps),
                _text(g.p95_bps),
                _text(g.fee_diff),
                _text(g.mean_trigger_delay_ms),
            )
            for g in report.groups
        ]
        if len(rows) == 1:
            self.stdout.write("no parity records in this period")
        else:
            widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
            for row in rows:
                self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        calibration = report.calibration
        self.stdout.write(
            f"Calibration (suggested, not applied): fee rate {_text(calibration.fee_rate)}, "
            f"slippage margin {_text(calibration.slippage_margin_bps)} bps"
        )
        self.stdout.write(f"  basis: {calibration.basis}")

    def _print_decisions(self, report: ParityReport) -> None:
        self.stdout.write(f"Decisions refused by one side only: {len(report.decisions)}")
        for m in report.decisions:
            self.stdout.write(
                f"  {m.at:%Y-%m-%d %H:%M:%S} decision {m.decision} / shadow {m.shadow_decision} {m.action} {m.symbol}: "
                f"live {m.live_status} ({m.live_reason or '-'}), paper {m.shadow_status} ({m.shadow_reason or '-'})"
            )


def _text(value: object) -> str:
    return "-" if value is None else str(value)
