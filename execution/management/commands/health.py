"""`manage.py health`: the readiness checks of /readyz; exit 0 when ready, 1 when not."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from execution.services.health import readiness


class Command(BaseCommand):
    help = "Run the readiness checks (as /readyz); exit status 0 when ready, 1 when not."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the JSON report instead of lines")

    def handle(self, *args: Any, **options: Any) -> None:
        report = readiness()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            for name, check in report["checks"].items():
                mark = "ok  " if check["ok"] else "FAIL"
                detail = check.get("error") or ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")
                self.stdout.write(f"{mark} {name}: {detail}")
            self.stdout.write("ready" if report["ready"] else "NOT READY")
        sys.exit(0 if report["ready"] else 1)
