"""Typed exchange replies with Decimal fields, parsed tolerantly from the documented shapes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execution.aster.errors import AsterResponseError
from execution.aster.numbers import wire_decimal

ZERO = Decimal("0")


def _get(raw: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in raw and raw[key] is not None:
            return raw[key]
    return default


def _dec(raw: dict[str, Any], *keys: str, default: str | None = None) -> Decimal:
    value = _get(raw, *keys)
    if value is None or value == "":
        if default is None:
            raise AsterResponseError(f"reply is missing {keys[0]}")
        return Decimal(default)
    return wire_decimal(value, field=keys[0])


def _opt_dec(raw: dict[str, Any], *keys: str) -> Decimal | None:
    value = _get(raw, *keys)
    if value is None or value == "":
        return None
    return wire_decimal(value, field=keys[0])


def _int(raw: dict[str, Any], *keys: str, default: int | None = None) -> int:
    value = _get(raw, *keys)
    if value is None:
        if default is None:
            raise AsterResponseError(f"reply is missing {keys[0]}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AsterResponseError(f"{keys[0]}: expected an integer, got {value!r}") from None


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def reply_bool(raw: Any, key: str) -> bool:
    """A documented boolean field of a reply (JSON true/false; "true"/"false" tolerated)."""
    value = _require_dict(raw, key).get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise AsterResponseError(f"{key}: expected a boolean, got {value!r}")


def _require_dict(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise AsterResponseError(f"{what}: expected an object, got {type(raw).__name__}")
    return raw


def _require_list(raw: Any, what: str) -> list[Any]:
    if not isinstance(raw, list):
        raise AsterResponseError(f"{what}: expected an array, got {type(raw).__name__}")
    return raw


@dataclass(frozen=True)
class BookLevel:
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True)
class OrderBook:
    symbol: str
    last_update_id: int
    time_ms: int
    bids: tuple[BookLevel, ...]  # best (highest) first
    asks: tuple[BookLevel, ...]  # best (lowest) first

    @classmethod
    def parse(cls, symbol: str, raw: Any) -> OrderBook:
        data = _require_dict(raw, "depth")
        bids = tuple(sorted(_levels(data.get("bids"), "bids"), key=lambda lvl: lvl.price, reverse=True))
        asks = tuple(sorted(_levels(data.get("asks"), "asks"), key=lambda lvl: lvl.price))
        return cls(
            symbol=symbol,
            last_update_id=_int(data, "lastUpdateId", default=0),
            time_ms=_int(data, "T", "E", default=0),
            bids=bids,
            asks=asks,
        )


def _levels(raw: Any, what: str) -> list[BookLevel]:
    levels = []
    for entry in _require_list(raw, what):
        if not isinstance(entry, list | tuple) or len(entry) < 2:
            raise AsterResponseError(f"{what}: malformed level {entry!r}")
        levels.append(BookLevel(wire_decimal(entry[0], field=what), wire_decimal(entry[1], field=what)))
    return levels


@dataclass(frozen=True)
class TickerPrice:
    symbol: str
    price: Decimal
    time_ms: int

    @classmethod
    def parse(cls, raw: Any) -> TickerPrice:
        data = _require_dict(raw, "ticker/price")
        return cls(symbol=str(data["symbol"]), price=_dec(data, "price"), time_ms=_int(data, "time", default=0))


@dataclass(frozen=True)
class PremiumIndex:
    symbol: str
    mark_price: Decimal
    index_price: Decimal | None
    last_funding_rate: Decimal
    next_funding_time_ms: int
    time_ms: int

    @classmethod
    def parse(cls, raw: Any) -> PremiumIndex:
        data = _require_dict(raw, "premiumIndex")
        return cls(
            symbol=str(data["symbol"]),
            mark_price=_dec(data, "markPrice"),
            index_price=_opt_dec(data, "indexPrice"),
            last_funding_rate=_dec(data, "lastFundingRate", default="0"),
            next_funding_time_ms=_int(data, "nextFundingTime", default=0),
            time_ms=_int(data, "time", default=0),
        )


@dataclass(frozen=True)
class Kline:
    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time_ms: int

    @classmethod
    def parse(cls, raw: Any) -> Kline:
        row = _require_list(raw, "kline")
        if len(row) < 7:
            raise AsterResponseError(f"kline: expected 7+ fields, got {len(row)}")
        return cls(
            open_time_ms=int(row[0]),
            open=wire_decimal(row[1], field="open"),
            high=wire_decimal(row[2], field="high"),
            low=wire_decimal(row[3], field="low"),
            close=wire_decimal(row[4], field="close"),
            volume=wire_decimal(row[5], field="volume"),
            close_time_ms=int(row[6]),
        )


@dataclass(frozen=True)
class FundingRate:
    symbol: str
    funding_rate: Decimal
    funding_time_ms: int

    @classmethod
    def parse(cls, raw: Any) -> FundingRate:
        data = _require_dict(raw, "fundingRate")
        return cls(
            symbol=str(data["symbol"]),
            funding_rate=_dec(data, "fundingRate"),
            funding_time_ms=_int(data, "fundingTime"),
        )


@dataclass(frozen=True)
class OrderResult:
    symbol: str
    order_id: int
    client_order_id: str
    status: str
    side: str
    type: str  # the order's own type: origType first (a triggered STOP_MARKET reports type MARKET)
    orig_qty: Decimal
    executed_qty: Decimal
    avg_price: Decimal
    cum_quote: Decimal
    stop_price: Decimal
    reduce_only: bool
    close_position: bool
    working_type: str
    update_time_ms: int
    current_type: str = ""  # `type` as sent: MARKET/LIMIT once a trigger order has fired
    price: Decimal = ZERO
    time_in_force: str = ""
    position_side: str = "BOTH"
    time_ms: int = 0  # when the order was made (query/cancel replies)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @classmethod
    def parse(cls, raw: Any) -> OrderResult:
        data = _require_dict(raw, "order")
        return cls(
            symbol=str(_get(data, "symbol", default="")),
            order_id=_int(data, "orderId"),
            client_order_id=str(_get(data, "clientOrderId", default="")),
            status=str(_get(data, "status", default="")),
            side=str(_get(data, "side", default="")),
            type=str(_get(data, "origType", "type", default="")),
            orig_qty=_dec(data, "origQty", default="0"),
            executed_qty=_dec(data, "executedQty", default="0"),
            avg_price=_dec(data, "avgPrice", default="0"),
            cum_quote=_dec(data, "cumQuote", default="0"),
            stop_price=_dec(data, "stopPrice", default="0"),
            reduce_only=_bool(data, "reduceOnly"),
            close_position=_bool(data, "closePosition"),
            working_type=str(_get(data, "workingType", default="")),
            update_time_ms=_int(data, "updateTime", "time", default=0),
            current_type=str(_get(data, "type", "origType", default="")),
            price=_dec(data, "price", default="0"),
            time_in_force=str(_get(data, "timeInForce", default="")),
            position_side=str(_get(data, "positionSide", default="BOTH")),
            time_ms=_int(data, "time", default=0),
        )


@dataclass(frozen=True)
class PositionRisk:
    symbol: str
    position_amt: Decimal  # signed: + long, - short
    entry_price: Decimal
    mark_price: Decimal | None
    unrealized_profit: Decimal
    liquidation_price: Decimal | None
    leverage: int
    margin_type: str
    position_side: str
    max_notional: Decimal | None
    isolated_margin: Decimal | None
    update_time_ms: int
    notional: Decimal | None = None  # signed, at mark (absent in the documented schema; ccxt saw it)
    isolated_wallet: Decimal | None = None  # the isolated position's wallet (margin without uPnL)

    @classmethod
    def parse(cls, raw: Any) -> PositionRisk:
        data = _require_dict(raw, "positionRisk")
        return cls(
            symbol=str(data["symbol"]),
            position_amt=_dec(data, "positionAmt"),
            entry_price=_dec(data, "entryPrice", default="0"),
            mark_price=_opt_dec(data, "markPrice"),
            unrealized_profit=_dec(data, "unRealizedProfit", "unrealizedProfit", default="0"),
            liquidation_price=_opt_dec(data, "liquidationPrice"),
            leverage=_int(data, "leverage", default=0),
            margin_type=str(_get(data, "marginType", default="")).lower(),
            position_side=str(_get(data, "positionSide", default="BOTH")),
            max_notional=_opt_dec(data, "maxNotionalValue", "maxNotional"),
            isolated_margin=_opt_dec(data, "isolatedMargin"),
            update_time_ms=_int(data, "updateTime", default=0),
            notional=_opt_dec(data, "notional"),
            isolated_wallet=_opt_dec(data, "isolatedWallet"),
        )


@dataclass(frozen=True)
class Balance:
    asset: str
    balance: Decimal
    available_balance: Decimal
    cross_wallet_balance: Decimal | None
    cross_unrealized_pnl: Decimal | None

    @classmethod
    def parse(cls, raw: Any) -> Balance:
        data = _require_dict(raw, "balance")
        return cls(
            asset=str(data["asset"]),
            balance=_dec(data, "balance", "walletBalance"),
            available_balance=_dec(data, "availableBalance", default="0"),
            cross_wallet_balance=_opt_dec(data, "crossWalletBalance"),
            cross_unrealized_pnl=_opt_dec(data, "crossUnPnl"),
        )


@dataclass(frozen=True)
class UserTrade:
    id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    maker: bool
    time_ms: int

    @classmethod
    def parse(cls, raw: Any) -> UserTrade:
        data = _require_dict(raw, "userTrades")
        return cls(
            id=_int(data, "id"),
            order_id=_int(data, "orderId"),
            symbol=str(data["symbol"]),
            side=str(data.get("side", "")),
            price=_dec(data, "price"),
            qty=_dec(data, "qty"),
            quote_qty=_dec(data, "quoteQty", default="0"),
            commission=_dec(data, "commission", default="0"),
            commission_asset=str(data.get("commissionAsset", "USDT")),
            realized_pnl=_dec(data, "realizedPnl", default="0"),
            maker=_bool(data, "maker"),
            time_ms=_int(data, "time", default=0),
        )


@dataclass(frozen=True)
class LeverageResult:
    symbol: str
    leverage: int
    max_notional: Decimal | None

    @classmethod
    def parse(cls, raw: Any) -> LeverageResult:
        data = _require_dict(raw, "leverage")
        return cls(
            symbol=str(data["symbol"]),
            leverage=_int(data, "leverage"),
            max_notional=_opt_dec(data, "maxNotionalValue", "maxNotional"),
        )


@dataclass(frozen=True)
class Bracket:
    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal

    @classmethod
    def parse(cls, raw: Any) -> Bracket:
        data = _require_dict(raw, "bracket")
        return cls(
            bracket=_int(data, "bracket"),
            initial_leverage=_int(data, "initialLeverage"),
            notional_floor=_dec(data, "notionalFloor", default="0"),
            notional_cap=_dec(data, "notionalCap"),
            maint_margin_ratio=_dec(data, "maintMarginRatio"),
            cum=_dec(data, "cum", default="0"),
        )


@dataclass(frozen=True)
class SymbolBrackets:
    symbol: str
    brackets: tuple[Bracket, ...]

    def for_notional(self, notional: Decimal) -> Bracket:
        """The tier with floor <= notional < cap (the last tier beyond the table)."""
        for bracket in self.brackets:
            if bracket.notional_floor <= notional < bracket.notional_cap:
                return bracket
        return self.brackets[-1]

    @classmethod
    def parse(cls, raw: Any) -> SymbolBrackets:
        data = _require_dict(raw, "leverageBracket")
        brackets = tuple(
            sorted((Bracket.parse(b) for b in _require_list(data.get("brackets"), "brackets")), key=lambda b: b.bracket)
        )
        if not brackets:
            raise AsterResponseError(f"leverageBracket for {data.get('symbol')} has no brackets")
        return cls(symbol=str(data["symbol"]), brackets=brackets)


def parse_list(raw: Any, what: str, parser: Any) -> list[Any]:
    return [parser(item) for item in _require_list(raw, what)]
