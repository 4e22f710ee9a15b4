"""Run the stream process: market data into the price cache (and paper triggers), user-data streams."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution.metrics import serve_metrics
from execution.streams.market import MarketStream
from execution.streams.process import Shard, StreamSupervisor
from execution.streams.status import StatusBoard
from execution.streams.user_data import run_user_streams

logger = logging.getLogger("execution.streams")


class Command(BaseCommand):
    help = "Run the stream process (market data, paper triggers, user-data streams) until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shard", default="0/1", help="K/N: stream only the live accounts with id %% N == K")
        parser.add_argument(
            "--only", choices=["market", "user"], default=None, help="run only the market or only the user streams"
        )
        parser.add_argument(
            "--url", default=None, help=f"WebSocket base (default ASTER_WS_URL: {settings.ASTER_WS_URL})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            shard = Shard.parse(options["shard"])
        except ValueError as exc:
            raise CommandError(f"--shard: {exc}") from None
        url = (options["url"] or settings.ASTER_WS_URL).rstrip("/")
        if not url.startswith(("ws://", "wss://")):
            raise CommandError(f"the WebSocket base must be a ws:// or wss:// URL, got {url!r}")
        serve_metrics(settings.METRICS_PORT)
        asyncio.run(self._run(url=url, shard=shard, market=options["only"] != "user", user=options["only"] != "market"))

    async def _run(self, *, url: str, shard: Shard, market: bool, user: bool) -> None:
        supervisor = StreamSupervisor()
        board = StatusBoard()
        board.attach(supervisor)
        stream = None
        if market:
            stream = MarketStream(supervisor=supervisor, board=board, url=url)
            supervisor.add("market", stream.run)
        if user:
            supervisor.add(
                "user-streams", lambda: run_user_streams(supervisor=supervisor, board=board, shard=shard, ws_url=url)
            )

        streams = [stream.mark_stream, "<symbol>@aggTrade for pending CONTRACT_PRICE orders"] if stream else []
        self.stdout.write(
            f"aster_stream {board.holder}: {url} shard {shard}; market: {', '.join(streams) or 'off'}; "
            f"user-data: {'on' if user else 'off'}"
        )
        self.stdout.flush()
        await supervisor.run()
        summary = f"aster_stream {board.holder} stopped"
        if stream is not None:
            c, stats = stream.counters, stream.connection.stats
            summary += (
                f": {c.frames} frames, {c.marks} marks, {c.last_prices} last prices, {c.dropped} dropped, "
                f"{c.reactions} reactions, {c.fills} fills, {stats.reconnects} reconnects, {stats.rollovers} rollovers"
            )
        self.stdout.write(summary)
