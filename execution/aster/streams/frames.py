"""Market-data frames from the wire, parsed into typed updates with Decimal fields.

A frame is one WebSocket text message. Three kinds arrive on a market connection
(ASTER_WS.md §1.3): acks `{"result": .., "id": ..}`, errors `{"code": .., "msg": ..}`, and
data: a bare payload on `/ws/<stream>`, `{"stream": .., "data": ..}` on `/stream?streams=`.
`!markPrice@arr` payloads are JSON arrays of per-symbol objects.

Bad input is never trusted: a malformed frame raises `StreamFrameError`; inside an array, a
bad item is dropped on its own and counted, so one broken symbol cannot hide the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_FRAME_BYTES = 4 * 1024 * 1024  # a whole-market array is ~100 KB; anything far larger is refused


class StreamFrameError(ValueError):
    """A frame that cannot be used: malformed JSON, a wrong shape, or a bad value."""


@dataclass(frozen=True)
class MarkPriceUpdate:
    """`markPriceUpdate`: mark, index, funding rate and next funding time of one symbol."""

    symbol: str
    mark_price: Decimal
    index_price: Decimal | None
    funding_rate: Decimal | None
    next_funding_time_ms: int
    event_time_ms: int


@dataclass(frozen=True)
class LastPriceUpdate:
    """The last traded price of one symbol (from `aggTrade`: `p` at trade time `T`)."""

    symbol: str
    price: Decimal
    event_time_ms: int


@dataclass(frozen=True)
class BookTickerUpdate:
    symbol: str
    bid_price: Decimal
    bid_quantity: Decimal
    ask_price: Decimal
    ask_quantity: Decimal
    event_time_ms: int


@dataclass
class Frame:
    """What one frame carried: updates, an ack or an error reply, and how many items were dropped."""

    stream: str = ""
    marks: list[MarkPriceUpdate] = field(default_factory=list)
    last_prices: list[LastPriceUpdate] = field(default_factory=list)
    book_tickers: list[BookTickerUpdate] = field(default_factory=list)
    ack_id: int | None = None
    error: str = ""
    other: Any = None  # a data payload of another kind (user-data events are parsed elsewhere)
    dropped: int = 0
    drop_reasons: list[str] = field(default_factory=list)


def decode(text: str | bytes) -> Any:
    """The frame's JSON; StreamFrameError when it is not JSON or too large."""
    if len(text) > MAX_FRAME_BYTES:
        raise StreamFrameError(f"frame of {len(text)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StreamFrameError(f"not JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise StreamFrameError(f"non-finite number {name}")


def parse_market_frame(text: str | bytes) -> Frame:
    """One market-data frame, parsed; raises StreamFrameError when the frame as a whole is bad."""
    raw = decode(text)
    frame = Frame()
    if isinstance(raw, dict) and "stream" in raw and "data" in raw:
        if not isinstance(raw["stream"], str):
            raise StreamFrameError("combined frame: 'stream' is not a string")
        frame.stream = raw["stream"]
        raw = raw["data"]
    elif isinstance(raw, dict) and "id" in raw and "result" in raw:
        frame.ack_id = _ack_id(raw["id"])
        return frame
    elif isinstance(raw, dict) and "code" in raw and "msg" in raw and "e" not in raw:
        frame.error = f"{raw['code']}: {raw['msg']}"
        return frame
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        return frame
    for item in items:
        if not isinstance(item, dict):
            _drop(frame, f"item is {type(item).__name__}, not an object")
            continue
        kind = item.get("e")
        try:
            if kind == "markPriceUpdate":
                frame.marks.append(parse_mark_price(item))
            elif kind == "aggTrade":
                frame.last_prices.append(parse_agg_trade(item))
            elif kind == "bookTicker":
                frame.book_tickers.append(parse_book_ticker(item))
            elif isinstance(raw, dict):
                frame.other = raw
            else:
                _drop(frame, f"unknown event {kind!r}")
        except StreamFrameError as exc:
            _drop(frame, str(exc))
    return frame


def _drop(frame: Frame, reason: str) -> None:
    frame.dropped += 1
    if len(frame.drop_reasons) < 5:  # enough to log; a whole bad array must not flood the log
        frame.drop_reasons.append(reason)


def _ack_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_mark_price(item: dict[str, Any]) -> MarkPriceUpdate:
    return MarkPriceUpdate(
        symbol=symbol_of(item),
        mark_price=price(item, "p"),
        index_price=optional_price(item, "i"),
        funding_rate=optional_decimal(item, "r"),
        next_funding_time_ms=time_ms(item, "T", required=False),
        event_time_ms=time_ms(item, "E"),
    )


def parse_agg_trade(item: dict[str, Any]) -> LastPriceUpdate:
    return LastPriceUpdate(
        symbol=symbol_of(item),
        price=price(item, "p"),
        event_time_ms=time_ms(item, "T", required=False) or time_ms(item, "E"),
    )


def parse_book_ticker(item: dict[str, Any]) -> BookTickerUpdate:
    return BookTickerUpdate(
        symbol=symbol_of(item),
        bid_price=price(item, "b"),
        bid_quantity=decimal(item, "B", minimum=Decimal("0")),
        ask_price=price(item, "a"),
        ask_quantity=decimal(item, "A", minimum=Decimal("0")),
        event_time_ms=time_ms(item, "E"),
    )


def symbol_of(item: dict[str, Any]) -> str:
    value = item.get("s")
    if not isinstance(value, str) or not value.isalnum() or not value.isupper() or len(value) > 32:
        raise StreamFrameError(f"bad symbol {value!r}")
    return value


def decimal(item: dict[str, Any], key: str, *, minimum: Decimal | None = None) -> Decimal:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise StreamFrameError(f"{key}: expected a number, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise StreamFrameError(f"{key}: expected a number, got {value!r}") from None
    if not result.is_finite():
        raise StreamFrameError(f"{key}: not finite: {value!r}")
    if minimum is not None and result < minimum:
        raise StreamFrameError(f"{key}: below {minimum}: {value!r}")
    return result


def optional_decimal(item: dict[str, Any], key: str) -> Decimal | None:
    if item.get(key) in (None, ""):
        return None
    return decimal(item, key)


def price(item: dict[str, Any], key: str) -> Decimal:
    result = decimal(item, key)
    if result <= 0:
        raise StreamFrameError(f"{key}: a price must be > 0, got {item.get(key)!r}")
    return result


def optional_price(item: dict[str, Any], key: str) -> Decimal | None:
    if item.get(key) in (None, ""):
        return None
    return price(item, key)


def time_ms(item: dict[str, Any], key: str, *, required: bool = True) -> int:
    value = item.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StreamFrameError(f"{key}: expected a time in ms, got {value!r}")
    return value
