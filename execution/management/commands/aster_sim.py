"""Run the local AsterDEX simulator on loopback (demos, end-to-end tests, benchmarks)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3
from execution.aster.simulator.exchange import SimExchange, default_symbols
from execution.aster.simulator.server import REQUEST_LOG_SIZE, AsterSimulator


class Command(BaseCommand):
    help = "Run the local AsterDEX simulator (same paths, shapes and signature checks as the real API)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument(
            "--ws-port",
            type=int,
            default=None,
            help="WebSocket streams port (default: --port + 1, or a free one when that is busy; 0 picks a free one)",
        )
        parser.add_argument(
            "--listen-key-seconds",
            type=float,
            default=3600.0,
            help="how long a listenKey lives without a keepalive (default 3600, as on the exchange)",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the price random walk")
        parser.add_argument("--tick-seconds", type=float, default=1.0, help="price step interval; 0 freezes prices")
        parser.add_argument("--extra-symbols", type=int, default=0, help="add N synthetic symbols SIM000USDT...")
        parser.add_argument("--chain-id", type=int, default=1666, help="EIP-712 chain id expected from V3 clients")
        parser.add_argument(
            "--request-log-size",
            type=int,
            default=REQUEST_LOG_SIZE,
            help=f"how many recent requests the simulator remembers (default {REQUEST_LOG_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 <= options["port"] <= 65535:
            raise CommandError(f"--port must be 0..65535, got {options['port']}")
        ws_port = options["ws_port"]
        if ws_port is None:
            ws_port = options["port"] + 1 if options["port"] else 0
        if not 0 <= ws_port <= 65535:
            raise CommandError(f"--ws-port must be 0..65535, got {ws_port}")
        if not options["listen_key_seconds"] > 0:
            raise CommandError("--listen-key-seconds must be > 0")
        if ws_port and ws_port == options["port"]:
            raise CommandError("--ws-port must differ from --port")
        if options["tick_seconds"] < 0 or options["extra_symbols"] < 0 or options["request_log_size"] < 0:
            raise CommandError("--tick-seconds, --extra-symbols and --request-log-size must be >= 0")
        exchange = SimExchange(
            seed=options["seed"], symbols=default_symbols(options["extra_symbols"]), chain_id=options["chain_id"]
        )
        exchange.add_account(**DEMO_V1)
        exchange.add_account(**DEMO_V3)
        try:
            sim = self._simulator(exchange, options, ws_port)
        except OSError as exc:
            if options["ws_port"] is not None or not ws_port:
                raise CommandError(f"cannot start the simulator: {exc}") from exc
            # The default WebSocket port (--port + 1) is taken: serve the streams on a free one
            # rather than not at all, and say where (an explicit --ws-port fails instead).
            try:
                sim = self._simulator(exchange, options, 0)
            except OSError as again:
                raise CommandError(f"cannot start the simulator: {again}") from again
            self.stderr.write(f"port {ws_port} is busy: WebSocket streams on {sim.ws_url} instead")
        except ValueError as exc:
            raise CommandError(f"cannot start the simulator: {exc}") from exc
        sim.start()
        self.stdout.write(f"AsterDEX simulator on {sim.url} (seed {options['seed']}, {len(exchange.symbols)} symbols)")
        self.stdout.write(f"WebSocket streams on {sim.ws_url}")
        self.stdout.write("demo accounts: demo-v1 (the docs' HMAC test key), demo-v3 (the docs' API-wallet demo)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()

    @staticmethod
    def _simulator(exchange: SimExchange, options: dict[str, Any], ws_port: int) -> AsterSimulator:
        return AsterSimulator(
            host=options["host"],
            port=options["port"],
            exchange=exchange,
            tick_seconds=options["tick_seconds"] or None,
            request_log_size=options["request_log_size"],
            ws_port=ws_port,
            listen_key_seconds=options["listen_key_seconds"],
        )
