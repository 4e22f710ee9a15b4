"""Review of the market-data stream work (issue 11): defects found, each reproduced here."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execution.streams.market import MarketStream
from execution.streams.process import StreamSupervisor
from execution.streams.status import StatusBoard


def marks_frame(*items: tuple[str, str, int]) -> str:
    data = [{"e": "markPriceUpdate", "E": e, "s": s, "p": p, "i": p, "r": "0.0001", "T": 0} for s, p, e in items]
    return json.dumps({"stream": "!markPrice@arr@1s", "data": data})


def test_a_future_dated_mark_does_not_silence_its_symbol_in_the_stream() -> None:
    """One frame dated far in the future (refused by the cache) must not become the 'newest seen'
    of its symbol: otherwise every real update after it is dropped as out of order, for as long
    as the bogus time lies ahead (here a day), and the symbol's cached price goes stale."""

    async def scenario() -> MarketStream:
        supervisor = StreamSupervisor(threads=1)
        stream = MarketStream(
            supervisor=supervisor, board=StatusBoard(holder="t:1"), url="ws://127.0.0.1:9", mark_seconds=3600
        )
        stream.known_symbols = frozenset({"BTCUSDT"})
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        stream.on_frame(marks_frame(("BTCUSDT", "100", now_ms + 86_400_000)), now)  # a day ahead
        later = now + timedelta(seconds=1)
        stream.on_frame(marks_frame(("BTCUSDT", "90", now_ms + 1000)), later)  # the real next update
        await supervisor.shutdown()
        return stream

    stream = asyncio.run(scenario())
    pending = stream._pending_marks.get("BTCUSDT")
    assert pending is not None and pending.mark_price == Decimal("90")
    assert stream.counters.drop_reasons.get("out of order", 0) == 0
