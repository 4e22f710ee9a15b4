"""User-data frames from the wire (`/ws/<listenKey>`), parsed into typed events with Decimal fields.

ASTER_WS.md §2: `ORDER_TRADE_UPDATE` (§2.3), `ACCOUNT_UPDATE` (§2.4), `ACCOUNT_CONFIG_UPDATE`
(§2.5), `MARGIN_CALL` (§2.6) and `listenKeyExpired` (§2.2). Any other event type (V3's
announcements, which carry no `E`), and the acks or error replies a socket may send, parse to
None: they are ignored, never an error. A frame that claims to be one of the events above but
is malformed raises `StreamFrameError` (the one of `frames.py`) and must write nothing.

Events are not guaranteed in order (§2.2): callers order them by `event_time_ms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execution.aster.streams.frames import StreamFrameError, decimal, decode, optional_decimal, symbol_of, time_ms

ZERO = Decimal("0")
SIDES = frozenset({"BUY", "SELL"})
EXECUTION_TYPES = frozenset({"NEW", "CANCELED", "CALCULATED", "EXPIRED", "TRADE", "AMENDMENT"})
ORDER_STATUSES = frozenset(
    {"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "NEW_INSURANCE", "NEW_ADL", "REJECTED"}
)
POSITION_SIDES = frozenset({"BOTH", "LONG", "SHORT"})
LIQUIDATION_PREFIX = "autoclose-"
ADL_PREFIX = "adl_autoclose"
MAX_ROWS = 1000  # balances or positions in one event; far more than any account holds


@dataclass(frozen=True)
class OrderTradeUpdate:
    """One order's change: created, (partly) filled, cancelled or expired (§2.3)."""

    event_time_ms: int  # E
    transaction_time_ms: int  # T (top)
    symbol: str  # s
    client_order_id: str  # c
    side: str  # S
    order_type: str  # o: the current type (MARKET once a conditional order fired)
    original_type: str  # ot: the type it was placed as (STOP_MARKET, TAKE_PROFIT_MARKET, ...)
    time_in_force: str  # f
    quantity: Decimal  # q
    price: Decimal  # p ("0" for market types)
    average_price: Decimal  # ap
    stop_price: Decimal  # sp
    execution_type: str  # x: what this event is
    status: str  # X: the order's status after it
    order_id: str  # i
    last_quantity: Decimal  # l
    cumulative_quantity: Decimal  # z
    last_price: Decimal  # L
    commission_asset: str  # N ("" when omitted: no commission)
    commission: Decimal  # n (0 when omitted)
    trade_time_ms: int  # T (inner)
    trade_id: int  # t (0: no trade)
    maker: bool  # m
    reduce_only: bool  # R
    working_type: str  # wt
    position_side: str  # ps
    close_position: bool  # cp
    realized_pnl: Decimal | None  # rp (None when absent)

    @property
    def is_fill(self) -> bool:
        """This event carries an execution (a trade, or a liquidation's CALCULATED one)."""
        return self.execution_type in ("TRADE", "CALCULATED") and self.last_quantity > 0

    @property
    def is_liquidation(self) -> bool:
        return (
            self.client_order_id.startswith(LIQUIDATION_PREFIX)
            or "LIQUIDATION" in (self.order_type, self.original_type)
            or self.execution_type == "CALCULATED"
            or self.status == "NEW_INSURANCE"
        )

    @property
    def is_adl(self) -> bool:
        return self.client_order_id.startswith(ADL_PREFIX) or self.status == "NEW_ADL"

    @property
    def is_final(self) -> bool:
        return self.status in ("FILLED", "CANCELED", "EXPIRED", "REJECTED")


@dataclass(frozen=True)
class BalanceRow:
    asset: str  # a
    wallet_balance: Decimal  # wb
    cross_wallet_balance: Decimal | None  # cw
    balance_change: Decimal | None  # bc


@dataclass(frozen=True)
class PositionRow:
    symbol: str  # s
    amount: Decimal  # pa (signed; "0": the position closed)
    entry_price: Decimal  # ep
    accumulated_realized: Decimal | None  # cr
    unrealized_pnl: Decimal | None  # up
    margin_type: str  # mt
    isolated_wallet: Decimal | None  # iw
    position_side: str  # ps


@dataclass(frozen=True)
class AccountUpdate:
    """Balances and positions that changed (§2.4). A position absent from `positions` is unchanged."""

    event_time_ms: int
    transaction_time_ms: int
    reason: str  # a.m: ORDER, FUNDING_FEE, DEPOSIT, ...
    balances: tuple[BalanceRow, ...]
    positions: tuple[PositionRow, ...]

    def balance(self, asset: str) -> BalanceRow | None:
        return next((row for row in self.balances if row.asset == asset), None)


@dataclass(frozen=True)
class AccountConfigUpdate:
    """Leverage of one symbol (`ac`) or account-level settings (`ai`) changed (§2.5)."""

    event_time_ms: int
    transaction_time_ms: int
    symbol: str | None
    leverage: int | None
    multi_assets: bool | None
    fee_token: bool | None
    hedge_mode: bool | None


@dataclass(frozen=True)
class MarginCallRow:
    symbol: str
    position_side: str
    amount: Decimal
    margin_type: str
    isolated_wallet: Decimal | None
    mark_price: Decimal | None
    unrealized_pnl: Decimal | None
    maintenance_margin: Decimal | None


@dataclass(frozen=True)
class MarginCall:
    """Advisory (§2.6): liquidation may already be under way."""

    event_time_ms: int
    cross_wallet_balance: Decimal | None
    positions: tuple[MarginCallRow, ...]


@dataclass(frozen=True)
class ListenKeyExpired:
    """The socket's listenKey lapsed: no further events arrive on it (§2.2)."""

    event_time_ms: int


UserEvent = OrderTradeUpdate | AccountUpdate | AccountConfigUpdate | MarginCall | ListenKeyExpired


def parse_user_frame(text: str | bytes) -> UserEvent | None:
    """One user-data frame; None for an event type this service does not use (or an ack/error
    reply); StreamFrameError when the frame is malformed."""
    raw = decode(text)
    if isinstance(raw, dict) and "stream" in raw and "data" in raw:  # tolerated: a combined-stream wrapper
        raw = raw["data"]
    if not isinstance(raw, dict):
        raise StreamFrameError(f"user-data frame is {type(raw).__name__}, not an object")
    return parse_user_event(raw)


def parse_user_event(item: dict[str, Any]) -> UserEvent | None:
    kind = item.get("e")
    parser = PARSERS.get(kind) if isinstance(kind, str) else None
    return parser(item) if parser is not None else None


def parse_order_trade_update(item: dict[str, Any]) -> OrderTradeUpdate:
    order = _object(item, "o")
    side = _choice(order, "S", SIDES)
    quantity = decimal(order, "q", minimum=ZERO)
    last_quantity = decimal(order, "l", minimum=ZERO)
    cumulative = decimal(order, "z", minimum=ZERO)
    execution_type = _choice(order, "x", EXECUTION_TYPES)
    last_price = decimal(order, "L", minimum=ZERO)
    if execution_type in ("TRADE", "CALCULATED") and last_quantity > 0 and last_price <= 0:
        raise StreamFrameError(f"o.L: a fill's price must be > 0, got {order.get('L')!r}")
    commission = optional_decimal(order, "n")
    return OrderTradeUpdate(
        event_time_ms=time_ms(item, "E"),
        transaction_time_ms=time_ms(item, "T", required=False),
        symbol=symbol_of(order),
        client_order_id=_text(order, "c", max_length=64),
        side=side,
        order_type=_text(order, "o"),
        original_type=_text(order, "ot", required=False) or _text(order, "o"),
        time_in_force=_text(order, "f", required=False),
        quantity=quantity,
        price=decimal(order, "p", minimum=ZERO) if "p" in order else ZERO,
        average_price=decimal(order, "ap", minimum=ZERO) if "ap" in order else ZERO,
        stop_price=decimal(order, "sp", minimum=ZERO) if "sp" in order else ZERO,
        execution_type=execution_type,
        status=_choice(order, "X", ORDER_STATUSES),
        order_id=str(_id(order, "i")),
        last_quantity=last_quantity,
        cumulative_quantity=cumulative,
        last_price=last_price,
        commission_asset=_text(order, "N", required=False),
        commission=abs(commission) if commission is not None else ZERO,
        trade_time_ms=time_ms(order, "T", required=False),
        trade_id=_id(order, "t", required=False),
        maker=_flag(order, "m"),
        reduce_only=_flag(order, "R"),
        working_type=_text(order, "wt", required=False),
        position_side=_choice(order, "ps", POSITION_SIDES, default="BOTH"),
        close_position=_flag(order, "cp"),
        realized_pnl=optional_decimal(order, "rp"),
    )


def parse_account_update(item: dict[str, Any]) -> AccountUpdate:
    body = _object(item, "a")
    return AccountUpdate(
        event_time_ms=time_ms(item, "E"),
        transaction_time_ms=time_ms(item, "T", required=False),
        reason=_text(body, "m", required=False),
        balances=tuple(_balance_row(row) for row in _rows(body, "B")),
        positions=tuple(_position_row(row) for row in _rows(body, "P")),
    )


def _balance_row(row: dict[str, Any]) -> BalanceRow:
    return BalanceRow(
        asset=_text(row, "a", max_length=16),
        wallet_balance=decimal(row, "wb"),
        cross_wallet_balance=optional_decimal(row, "cw"),
        balance_change=optional_decimal(row, "bc"),
    )


def _position_row(row: dict[str, Any]) -> PositionRow:
    return PositionRow(
        symbol=symbol_of(row),
        amount=decimal(row, "pa"),
        entry_price=decimal(row, "ep", minimum=ZERO),
        accumulated_realized=optional_decimal(row, "cr"),
        unrealized_pnl=optional_decimal(row, "up"),
        margin_type=_text(row, "mt", required=False),
        isolated_wallet=optional_decimal(row, "iw"),
        position_side=_choice(row, "ps", POSITION_SIDES, default="BOTH"),
    )


def parse_account_config_update(item: dict[str, Any]) -> AccountConfigUpdate:
    symbol_config = item.get("ac")
    account_config = item.get("ai")
    if not isinstance(symbol_config, dict) and not isinstance(account_config, dict):
        raise StreamFrameError("ACCOUNT_CONFIG_UPDATE: neither 'ac' nor 'ai' is an object")
    symbol = leverage = None
    if isinstance(symbol_config, dict):
        symbol = symbol_of(symbol_config)
        leverage = _id(symbol_config, "l")
    settings = account_config if isinstance(account_config, dict) else {}
    return AccountConfigUpdate(
        event_time_ms=time_ms(item, "E"),
        transaction_time_ms=time_ms(item, "T", required=False),
        symbol=symbol,
        leverage=leverage,
        multi_assets=_optional_flag(settings, "j"),
        fee_token=_optional_flag(settings, "f"),
        hedge_mode=_optional_flag(settings, "d"),
    )


def parse_margin_call(item: dict[str, Any]) -> MarginCall:
    return MarginCall(
        event_time_ms=time_ms(item, "E"),
        cross_wallet_balance=optional_decimal(item, "cw"),
        positions=tuple(
            MarginCallRow(
                symbol=symbol_of(row),
                position_side=_choice(row, "ps", POSITION_SIDES, default="BOTH"),
                amount=decimal(row, "pa"),
                margin_type=_text(row, "mt", required=False),
                isolated_wallet=optional_decimal(row, "iw"),
                mark_price=optional_decimal(row, "mp"),
                unrealized_pnl=optional_decimal(row, "up"),
                maintenance_margin=optional_decimal(row, "mm"),
            )
            for row in _rows(item, "p")
        ),
    )


def parse_listen_key_expired(item: dict[str, Any]) -> ListenKeyExpired:
    return ListenKeyExpired(event_time_ms=time_ms(item, "E"))


PARSERS: dict[str, Callable[[dict[str, Any]], UserEvent]] = {
    "ORDER_TRADE_UPDATE": parse_order_trade_update,
    "ACCOUNT_UPDATE": parse_account_update,
    "ACCOUNT_CONFIG_UPDATE": parse_account_config_update,
    "MARGIN_CALL": parse_margin_call,
    "listenKeyExpired": parse_listen_key_expired,
}


# --------------------------------------------------------------------------- field readers


def _object(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    if not isinstance(value, dict):
        raise StreamFrameError(f"{key}: expected an object, got {type(value).__name__}")
    return value


def _rows(item: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = item.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ROWS:
        raise StreamFrameError(f"{key}: expected a list of at most {MAX_ROWS} objects")
    if not all(isinstance(row, dict) for row in value):
        raise StreamFrameError(f"{key}: every row must be an object")
    return value


def _text(item: dict[str, Any], key: str, *, required: bool = True, max_length: int = 40) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > max_length:
        raise StreamFrameError(f"{key}: expected a string of at most {max_length} characters, got {value!r}"[:160])
    return value


def _choice(item: dict[str, Any], key: str, allowed: frozenset[str], *, default: str | None = None) -> str:
    value = item.get(key)
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise StreamFrameError(f"{key}: expected one of {', '.join(sorted(allowed))}, got {value!r}"[:200])
    return str(value)


def _id(item: dict[str, Any], key: str, *, required: bool = True) -> int:
    value = item.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StreamFrameError(f"{key}: expected a non-negative integer id, got {value!r}"[:160])
    return value


def _flag(item: dict[str, Any], key: str) -> bool:
    return bool(_optional_flag(item, key))


def _optional_flag(item: dict[str, Any], key: str) -> bool | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise StreamFrameError(f"{key}: expected true or false, got {value!r}"[:160])
    return value
