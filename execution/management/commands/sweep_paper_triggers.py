from typing import Any

from django.core.management.base import BaseCommand, CommandError

from execution.exceptions import ExecutionError
from execution.services.paper.sweep import sweep_paper_triggers


class Command(BaseCommand):
    help = "Run one paper sweep now: mark to market, funding, liquidations and TP/SL triggers."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = sweep_paper_triggers()
        except ExecutionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"symbols {report.symbols}, marked {report.marked}, funding {report.funding_payments}, "
            f"liquidated {report.liquidated}, triggered {report.triggered}, filled {report.filled}, "
            f"cancelled {report.cancelled}, failed {report.failed} in {report.seconds * 1000:.0f} ms"
        )
        if report.skipped_symbols:
            self.stdout.write(f"skipped (no fresh mark price): {', '.join(sorted(report.skipped_symbols))}")
