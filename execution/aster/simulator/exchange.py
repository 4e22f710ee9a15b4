"""The simulated exchange: symbols, prices, order books, accounts, orders and positions.

A test double built from ASTER_API.md (one-way mode, USDT-margined linear perpetuals).
All state changes hold `self.lock`; the HTTP layer (server.py) only parses and formats.

Listeners (the WebSocket server, streams.py) hear about changes while the lock is held:
`price_listeners` get a `PriceSnapshot` per symbol whose price moved, `event_listeners` get
(account name, user-data event) in the order the changes happened (ASTER_WS.md §2.3-2.4).
A listener must return at once (hand the work to another thread); it never does I/O here.

Order events: NEW at placement (every type); a market order's fill as TRADE events
(PARTIALLY_FILLED..FILLED; `split_next_fills` makes one fill several trades); a triggered
STOP_MARKET / TAKE_PROFIT_MARKET fills the same way with `o`="MARKET" and `ot` its own type;
CANCELED on a cancel; EXPIRED when a reduce-only / closePosition leg triggers with no position
left to reduce (the leg rests until then, as on the real exchange, where a TP/SL outlives the
position it protected) or a market order finds no book. Liquidation: when the mark crosses a
position's liquidationPrice (the one positionRisk shows), the position is closed at the
bankruptcy price (the position's margin is lost) by an `autoclose-<n>` LIQUIDATION order
(`x`="CALCULATED", ASTER_WS.md §2.3's liquidation execution, `X`="FILLED"), and the account's
open orders on that symbol are CANCELED. Every fill is followed by an ACCOUNT_UPDATE (`m`="ORDER").
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from execution.aster.simulator.user_events import FillFacts, account_update, order_trade_update

ZERO = Decimal("0")
TAKER_RATE = Decimal("0.00035")
MAKER_RATE = Decimal("0.0001")
CLIENT_ORDER_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
FUNDING_INTERVAL_MS = 8 * 3600 * 1000  # the default; each symbol has its own (funding_interval_hours)
ORDER_TYPES = ("MARKET", "LIMIT", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")
TRIGGER_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")
LIMIT_PRICED_TYPES = ("LIMIT", "STOP", "TAKE_PROFIT")  # carry a limit price
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "HIDDEN")
POSITION_SIDES = ("BOTH", "LONG", "SHORT")

# Binance's historical BTCUSDT table (ASTER_API.md section 5), used for every symbol.
BRACKETS = [
    (1, 125, 0, 50_000, "0.004", "0"),
    (2, 100, 50_000, 250_000, "0.005", "50"),
    (3, 50, 250_000, 1_000_000, "0.01", "1300"),
    (4, 20, 1_000_000, 10_000_000, "0.025", "16300"),
    (5, 10, 10_000_000, 20_000_000, "0.05", "266300"),
    (6, 5, 20_000_000, 50_000_000, "0.10", "1266300"),
    (7, 4, 50_000_000, 100_000_000, "0.125", "2516300"),
    (8, 3, 100_000_000, 200_000_000, "0.15", "5016300"),
    (9, 2, 200_000_000, 300_000_000, "0.25", "25016300"),
    (10, 1, 300_000_000, 500_000_000, "0.50", "100016300"),
]


def bracket_for(notional: Decimal) -> tuple[int, int, int, int, str, str]:
    """The bracket whose [floor, cap) holds `notional` (the last one beyond the table)."""
    return next((b for b in BRACKETS if notional < b[3]), BRACKETS[-1])


def maintenance_margin(notional: Decimal) -> Decimal:
    _, _, _, _, mmr, cum = bracket_for(notional)
    return notional * Decimal(mmr) - Decimal(cum)


def max_notional(leverage: int) -> int:
    """The largest position notional allowed at `leverage`: the cap of the last bracket that
    still allows it (POST leverage's and positionRisk's maxNotionalValue)."""
    return max((cap for _, lev, _, cap, _, _ in BRACKETS if lev >= leverage), default=BRACKETS[0][3])


def flag(params: dict[str, str], name: str) -> bool:
    """A boolean parameter as the exchange parses it: absent is false; `true` or `false` only."""
    raw = params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise SimError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return raw == "true"


class SimError(Exception):
    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.http_status = http_status


def fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def decimals_of(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


@dataclass
class SimSymbol:
    symbol: str
    price: Decimal
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal = Decimal("5")
    level_qty: Decimal = Decimal("1")
    half_spread_ticks: int = 5
    level_gap_ticks: int = 10
    depth_levels: int = 200
    volatility: float = 0.0005
    mark_premium: Decimal = ZERO
    funding_rate: Decimal = Decimal("0.0001")
    funding_interval_hours: int = 8
    liquidation_fee: Decimal = Decimal("0.010000")
    status: str = "TRADING"
    candles: dict[int, list[Decimal]] = field(default_factory=dict)
    mark_candles: dict[int, list[Decimal]] = field(default_factory=dict)
    funding_events: list[tuple[int, Decimal]] = field(default_factory=list)  # explicit history, if set
    recent_trades: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))  # GET trades

    def round_tick(self, price: Decimal) -> Decimal:
        return (price / self.tick).to_integral_value(rounding=ROUND_HALF_EVEN) * self.tick

    @property
    def funding_interval_ms(self) -> int:
        return self.funding_interval_hours * 3600 * 1000

    def next_funding_ms(self, now_ms: int) -> int:
        return now_ms - now_ms % self.funding_interval_ms + self.funding_interval_ms

    @property
    def mark(self) -> Decimal:
        return self.round_tick(self.price * (1 + self.mark_premium))

    def level_price(self, side: str, index: int) -> Decimal:
        offset = (self.half_spread_ticks + index * self.level_gap_ticks) * self.tick
        return self.price + offset if side == "ask" else self.price - offset

    def level_quantity(self, index: int) -> Decimal:
        return self.level_qty * (1 + Decimal(index % 4) / 2)

    def book(self, limit: int) -> tuple[list[list[str]], list[list[str]]]:
        levels = min(limit, self.depth_levels)
        bids = [
            [fmt(self.level_price("bid", i)), fmt(self.level_quantity(i))]
            for i in range(levels)
            if self.level_price("bid", i) > 0
        ]
        asks = [[fmt(self.level_price("ask", i)), fmt(self.level_quantity(i))] for i in range(levels)]
        return bids, asks

    def walk(self, side: str, quantity: Decimal) -> tuple[Decimal, Decimal]:
        """Fill `quantity` against the book (BUY takes asks). Returns (filled, quote)."""
        remaining, quote, filled = quantity, ZERO, ZERO
        book_side = "ask" if side == "BUY" else "bid"
        for index in range(self.depth_levels):
            if remaining <= 0:
                break
            price = self.level_price(book_side, index)
            if price <= 0:
                break
            take = min(remaining, self.level_quantity(index))
            quote += take * price
            filled += take
            remaining -= take
        return filled, quote

    def record_candle(self, now_ms: int, volume: Decimal = ZERO) -> None:
        """Update the 1-minute candles of the last price and of the mark price."""
        _update_candle(self.candles, now_ms, self.price, volume)
        _update_candle(self.mark_candles, now_ms, self.mark, ZERO)


def _update_candle(candles: dict[int, list[Decimal]], now_ms: int, price: Decimal, volume: Decimal) -> None:
    minute = now_ms - now_ms % 60_000
    candle = candles.get(minute)
    if candle is None:
        candles[minute] = [price, price, price, price, volume]
        if len(candles) > 2000:
            del candles[min(candles)]
        return
    candle[1] = max(candle[1], price)
    candle[2] = min(candle[2], price)
    candle[3] = price
    candle[4] += volume


@dataclass
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    reduce_only: bool
    close_position: bool
    working_type: str
    time_in_force: str
    time_ms: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time_ms: int = 0
    triggered: bool = False  # a trigger order (STOP*, TAKE_PROFIT*) whose stop price was reached
    position_side: str = "BOTH"

    @property
    def current_type(self) -> str:
        """`type` as the exchange reports it: a triggered STOP_MARKET / TAKE_PROFIT_MARKET is a
        MARKET order, a triggered STOP / TAKE_PROFIT a LIMIT order; `origType` keeps the type sent."""
        if not self.triggered:
            return self.type
        return "MARKET" if self.type.endswith("_MARKET") else "LIMIT"

    @property
    def rests_as_limit(self) -> bool:
        return self.type == "LIMIT" or (self.triggered and self.type in ("STOP", "TAKE_PROFIT"))

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    def as_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "avgPrice": fmt(self.avg_price.quantize(Decimal("0.00001"))) if self.executed_qty else "0.00000",
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cumQty": fmt(self.executed_qty),
            "cumQuote": fmt(self.cum_quote),
            "timeInForce": self.time_in_force,
            "type": self.current_type,
            "origType": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": self.close_position,
            "side": self.side,
            "positionSide": self.position_side,
            "stopPrice": fmt(self.stop_price),
            "workingType": self.working_type,
            "priceProtect": False,
            "time": self.time_ms,
            "updateTime": self.update_time_ms or self.time_ms,
        }


@dataclass
class SimPosition:
    amount: Decimal = ZERO  # signed
    entry: Decimal = ZERO
    realized: Decimal = ZERO  # accumulated realized PnL (ACCOUNT_UPDATE `cr`)
    margin_added: Decimal = ZERO  # isolated margin added (+) or removed (-) by positionMargin
    update_time_ms: int = 0  # the last change (positionRisk `updateTime`; 0: never held)


@dataclass
class SimAccount:
    name: str
    api_key: str = ""
    api_secret: str = ""
    user: str = ""
    signer: str = ""
    balance: Decimal = Decimal("100000")
    hedge_mode: bool = False
    multi_assets: bool = False
    positions: dict[str, SimPosition] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)
    orders: dict[int, SimOrder] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    income: list[dict[str, Any]] = field(default_factory=list)
    nonces: list[int] = field(default_factory=list)
    last_event_ms: int = 0  # user-data events carry strictly increasing `E`
    fill_splits: list[int] = field(default_factory=list)  # the next fills' trade counts
    # Hedge mode: the LONG and SHORT positions, by (symbol, positionSide); `positions` holds BOTH.
    hedge_positions: dict[tuple[str, str], SimPosition] = field(default_factory=dict)
    countdowns: dict[str, tuple[int, int]] = field(default_factory=dict)  # symbol -> (countdown ms, deadline ms)

    def position(self, symbol: str, side: str = "BOTH") -> SimPosition:
        if side == "BOTH":
            return self.positions.setdefault(symbol, SimPosition())
        return self.hedge_positions.setdefault((symbol, side), SimPosition())

    def peek(self, symbol: str, side: str = "BOTH") -> SimPosition:
        """The position, or an empty one (not stored)."""
        found = self.positions.get(symbol) if side == "BOTH" else self.hedge_positions.get((symbol, side))
        return found if found is not None else SimPosition()

    def held(self) -> list[tuple[str, str, SimPosition]]:
        """Every non-zero position as (symbol, positionSide, position)."""
        rows = [(symbol, "BOTH", pos) for symbol, pos in self.positions.items() if pos.amount]
        rows += [(symbol, side, pos) for (symbol, side), pos in self.hedge_positions.items() if pos.amount]
        return rows

    def is_isolated(self, symbol: str) -> bool:
        return self.margin_type.get(symbol, "CROSSED") == "ISOLATED"

    def leverage_for(self, symbol: str) -> int:
        return self.leverage.get(symbol, 20)


@dataclass(frozen=True)
class PriceSnapshot:
    """One symbol's prices right after a change, for the market streams (read outside the lock)."""

    symbol: str
    price: Decimal
    mark: Decimal
    funding_rate: Decimal
    next_funding_ms: int
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    min_qty: Decimal

    @classmethod
    def of(cls, sym: SimSymbol, next_funding_ms: int) -> PriceSnapshot:
        return cls(
            symbol=sym.symbol,
            price=sym.price,
            mark=sym.mark,
            funding_rate=sym.funding_rate,
            next_funding_ms=next_funding_ms,
            bid=sym.level_price("bid", 0),
            bid_qty=sym.level_quantity(0),
            ask=sym.level_price("ask", 0),
            ask_qty=sym.level_quantity(0),
            min_qty=sym.min_qty,
        )


PriceListener = Callable[[list[PriceSnapshot]], None]
EventListener = Callable[[str, dict[str, Any]], None]


def default_symbols(extra: int = 0) -> list[SimSymbol]:
    symbols = [
        SimSymbol(
            "BTCUSDT",
            Decimal("65000"),
            Decimal("0.1"),
            Decimal("0.001"),
            Decimal("0.001"),
            Decimal("1000"),
            Decimal("120"),
            level_qty=Decimal("0.5"),
        ),
        SimSymbol(
            "ETHUSDT",
            Decimal("3500"),
            Decimal("0.01"),
            Decimal("0.001"),
            Decimal("0.001"),
            Decimal("10000"),
            Decimal("2000"),
            level_qty=Decimal("5"),
        ),
        SimSymbol(
            "SOLUSDT",
            Decimal("150"),
            Decimal("0.01"),
            Decimal("0.01"),
            Decimal("0.01"),
            Decimal("100000"),
            Decimal("20000"),
            level_qty=Decimal("50"),
        ),
        SimSymbol(
            "ASTERUSDT",
            Decimal("1.2"),
            Decimal("0.0001"),
            Decimal("1"),
            Decimal("1"),
            Decimal("10000000"),
            Decimal("1000000"),
            level_qty=Decimal("5000"),
            funding_interval_hours=4,  # ASTER_API.md §6: 4 h on some symbols, ASTERUSDT among them
        ),
    ]
    for index in range(extra):
        price = Decimal(10 + index)
        symbols.append(
            SimSymbol(
                f"SIM{index:03d}USDT",
                price,
                Decimal("0.001"),
                Decimal("0.1"),
                Decimal("0.1"),
                Decimal("1000000"),
                Decimal("100000"),
                level_qty=Decimal("100"),
            )
        )
    return symbols


class SimExchange:
    def __init__(
        self,
        *,
        seed: int = 0,
        symbols: Iterable[SimSymbol] | None = None,
        clock: Callable[[], float] = time.time,
        chain_id: int = 1666,
    ) -> None:
        self.lock = threading.RLock()
        self.random = random.Random(seed)  # noqa: S311 - a price walk, not cryptography
        self.clock = clock
        self.chain_id = chain_id
        self.symbols = {s.symbol: s for s in (symbols if symbols is not None else default_symbols())}
        self.accounts: dict[str, SimAccount] = {}
        self._next_order_id = 1000
        self._next_trade_id = 5000
        self._next_liquidation = 0
        # Called under self.lock; see the module docstring.
        self.price_listeners: list[PriceListener] = []
        self.event_listeners: list[EventListener] = []
        now = self.now_ms()
        for sym in self.symbols.values():
            sym.record_candle(now)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---------------------------------------------------------------- accounts

    def add_account(self, name: str, **fields: Any) -> SimAccount:
        with self.lock:
            account = SimAccount(name=name, **fields)
            self.accounts[name] = account
            return account

    def account_by_api_key(self, api_key: str) -> SimAccount | None:
        return next((a for a in self.accounts.values() if a.api_key and a.api_key == api_key), None)

    def account_by_signer(self, signer: str) -> SimAccount | None:
        signer = signer.lower()
        return next((a for a in self.accounts.values() if a.signer and a.signer.lower() == signer), None)

    # ---------------------------------------------------------------- prices

    def symbol(self, symbol: str) -> SimSymbol:
        try:
            return self.symbols[symbol]
        except KeyError:
            raise SimError(-1121, "Invalid symbol.") from None

    def set_price(self, symbol: str, price: Decimal, *, mark_premium: Decimal | None = None) -> None:
        with self.lock:
            sym = self.symbol(symbol)
            sym.price = sym.round_tick(price)
            if mark_premium is not None:
                sym.mark_premium = mark_premium
            sym.record_candle(self.now_ms())
            self._emit_prices([sym])
            self._check_triggers(sym)
            self._check_liquidations(sym)

    def step(self) -> None:
        """One random-walk step for every symbol, then the trigger checks."""
        with self.lock:
            for sym in self.symbols.values():
                factor = Decimal(str(math.exp(self.random.gauss(0, sym.volatility))))
                sym.price = max(sym.round_tick(sym.price * factor), sym.tick)
                sym.record_candle(self.now_ms())
            # One batch for the whole step: the streams build one whole-market array from it.
            self._emit_prices(list(self.symbols.values()))
            for sym in self.symbols.values():
                self._check_triggers(sym)
                self._check_liquidations(sym)

    def price_snapshots(self) -> list[PriceSnapshot]:
        with self.lock:
            now = self.now_ms()
            return [PriceSnapshot.of(sym, sym.next_funding_ms(now)) for sym in self.symbols.values()]

    def _emit_prices(self, symbols: list[SimSymbol]) -> None:
        if not self.price_listeners:
            return
        now = self.now_ms()
        snapshots = [PriceSnapshot.of(sym, sym.next_funding_ms(now)) for sym in symbols]
        for listener in self.price_listeners:
            listener(snapshots)

    # ---------------------------------------------------------------- user-data events

    def _event_time(self, account: SimAccount) -> int:
        """Now, but strictly after the account's previous event: events are ordered by `E`."""
        account.last_event_ms = max(self.now_ms(), account.last_event_ms + 1)
        return account.last_event_ms

    def _emit_order(self, account: SimAccount, order: SimOrder, execution: str, fill: FillFacts | None = None) -> None:
        if self.event_listeners:
            event = order_trade_update(order, execution, event_ms=self._event_time(account), fill=fill)
            for listener in self.event_listeners:
                listener(account.name, event)

    def _emit_account_update(self, account: SimAccount, symbol: str, side: str = "BOTH") -> None:
        if self.event_listeners:
            position = account.position(symbol, side)
            event = account_update(
                account,
                reason="ORDER",
                event_ms=self._event_time(account),
                positions={symbol: (position, self.symbols[symbol].mark)},
                position_side=side,
            )
            for listener in self.event_listeners:
                listener(account.name, event)

    def split_next_fills(self, account_name: str, *, parts: int, fills: int = 1) -> None:
        """The account's next `fills` fills each come as `parts` TRADE events (partial fills)."""
        if parts < 1 or fills < 1:
            raise ValueError(f"parts and fills must be >= 1, got {parts} and {fills}")
        with self.lock:
            self.accounts[account_name].fill_splits.extend([parts] * fills)

    def next_funding_time_ms(self, symbol: str | None = None) -> int:
        """The next funding time of `symbol` (its own interval), or of the default 8-hour interval."""
        now = self.now_ms()
        if symbol is not None:
            return self.symbol(symbol).next_funding_ms(now)
        return now - now % FUNDING_INTERVAL_MS + FUNDING_INTERVAL_MS

    # ---------------------------------------------------------------- orders

    def _new_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id

    def place_order(self, account: SimAccount, params: dict[str, str]) -> SimOrder:
        with self.lock:
            order = self._validated_order(account, params)
            if order.type in ("MARKET", "LIMIT"):
                self._check_margin(account, order)
            account.orders[order.order_id] = order
            self._emit_order(account, order, "NEW")
            if order.type == "MARKET":
                self._execute_market(account, order)
            elif order.type == "LIMIT":
                self._match_new_limit(account, order)
            return order

    def _validated_order(self, account: SimAccount, params: dict[str, str]) -> SimOrder:
        sym = self.symbol(params.get("symbol", ""))
        side = params.get("side", "")
        type_ = params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise SimError(-1130, "Invalid side.")
        if type_ not in ORDER_TYPES:
            raise SimError(-1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"sim-{self._next_order_id + 1}"
        if not CLIENT_ORDER_ID_RE.match(client_id):
            raise SimError(-4015, "Client order id is not valid.")
        if any(o.client_order_id == client_id and o.is_open for o in account.orders.values()):
            raise SimError(-4116, "ClientOrderId is duplicated.")
        close_position = flag(params, "closePosition")
        reduce_only = flag(params, "reduceOnly")
        position_side = self._position_side(account, params, side=side, close_position=close_position)
        if close_position and "quantity" in params:
            raise SimError(-4137, "Quantity must be zero with closePosition equals true.")
        if close_position and "reduceOnly" in params:
            raise SimError(-1106, "Parameter 'reduceOnly' sent when not required.")
        quantity = ZERO if close_position else self._quantity(sym, params.get("quantity"))
        price = self._price(sym, params.get("price"), "price") if type_ in LIMIT_PRICED_TYPES else ZERO
        time_in_force = params.get("timeInForce", "GTC")
        if time_in_force not in TIME_IN_FORCE:
            raise SimError(-1130, "Invalid timeInForce.")
        working = params.get("workingType", "CONTRACT_PRICE")
        if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise SimError(-1130, "Invalid workingType.")
        if "priceProtect" in params and params["priceProtect"].lower() not in ("true", "false"):
            raise SimError(-1130, "Data sent for parameter 'priceProtect' is not valid.")  # documented "TRUE"/"FALSE"
        stop = ZERO
        if type_ in TRIGGER_TYPES:
            stop = self._price(sym, params.get("stopPrice"), "stopPrice")
            if self._triggered(type_, side, stop, self._working_price(sym, working)):
                raise SimError(-2021, "Order would immediately trigger.")
        if close_position and type_ not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise SimError(-1106, "Parameter 'closePosition' sent when not required.")
        if type_ == "MARKET" and quantity > sym.market_max_qty:
            raise SimError(-4005, "Quantity greater than max quantity.")
        notional_price = sym.mark if type_ == "MARKET" else price
        if type_ in ("MARKET", "LIMIT") and not reduce_only and quantity * notional_price < sym.min_notional:
            raise SimError(
                -4164,
                f"Order's notional must be no smaller than {fmt(sym.min_notional)} (unless you choose reduce only)",
            )
        now = self.now_ms()
        return SimOrder(
            order_id=self._new_order_id(),
            client_order_id=client_id,
            symbol=sym.symbol,
            side=side,
            type=type_,
            orig_qty=quantity,
            price=price,
            stop_price=stop,
            reduce_only=reduce_only or close_position,
            close_position=close_position,
            working_type=working,
            time_in_force=time_in_force,
            time_ms=now,
            update_time_ms=now,
            position_side=position_side,
        )

    @staticmethod
    def _position_side(account: SimAccount, params: dict[str, str], *, side: str, close_position: bool) -> str:
        """positionSide against the account's mode (ASTER_WS.md §3.1): BOTH (or absent) in one-way
        mode; LONG or SHORT, and no reduceOnly, in hedge mode."""
        raw = params.get("positionSide")
        if raw is not None and raw not in POSITION_SIDES:
            raise SimError(-4060, "Invalid position side.")
        if not account.hedge_mode:
            if raw not in (None, "BOTH"):
                raise SimError(-4061, "Order's position side does not match user's setting.")
            return "BOTH"
        if raw not in ("LONG", "SHORT"):
            raise SimError(-4061, "Order's position side does not match user's setting.")
        if "reduceOnly" in params:
            raise SimError(-4062, "Invalid or improper reduceOnly value.")
        if close_position and (side, raw) in (("BUY", "LONG"), ("SELL", "SHORT")):
            # ASSUMPTION: Aster documents the rule but not its code; Binance answers -4061.
            raise SimError(-4061, "Order's position side does not match user's setting.")
        return raw

    @staticmethod
    def _quantity(sym: SimSymbol, raw: str | None) -> Decimal:
        if raw is None:
            raise SimError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        value = _decimal(raw, "quantity")
        if value <= 0:
            raise SimError(-4003, "Quantity less than or equal to zero.")
        if decimals_of(value) > decimals_of(sym.step):
            raise SimError(-1111, "Precision is over the maximum defined for this asset.")
        if (value - sym.min_qty) % sym.step != 0:
            raise SimError(-4023, "Quantity not increased by step size.")
        if value < sym.min_qty:
            raise SimError(-4004, "Quantity less than min quantity.")
        if value > sym.max_qty:
            raise SimError(-4005, "Quantity greater than max quantity.")
        return value

    @staticmethod
    def _price(sym: SimSymbol, raw: str | None, name: str) -> Decimal:
        if raw is None:
            raise SimError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        value = _decimal(raw, name)
        if value <= 0:
            raise SimError(-4013, "Price less than min price.")
        if decimals_of(value) > decimals_of(sym.tick):
            raise SimError(-1111, "Precision is over the maximum defined for this asset.")
        if value % sym.tick != 0:
            raise SimError(-4014, "Price not increased by tick size.")
        return value

    @staticmethod
    def _working_price(sym: SimSymbol, working_type: str) -> Decimal:
        return sym.mark if working_type == "MARK_PRICE" else sym.price

    @staticmethod
    def _triggered(type_: str, side: str, stop: Decimal, price: Decimal) -> bool:
        if type_ in ("STOP", "STOP_MARKET"):
            return price >= stop if side == "BUY" else price <= stop
        return price <= stop if side == "BUY" else price >= stop

    def _used_margin(self, account: SimAccount) -> Decimal:
        return sum(
            (abs(pos.amount) * pos.entry / account.leverage_for(symbol) for symbol, _, pos in account.held()), ZERO
        )

    def _unrealized(self, account: SimAccount) -> Decimal:
        return sum((pos.amount * (self.symbols[s].mark - pos.entry) for s, _, pos in account.held()), ZERO)

    def _order_position(self, account: SimAccount, order: SimOrder) -> SimPosition:
        return account.position(order.symbol, order.position_side)

    def _closes(self, order: SimOrder, pos: SimPosition) -> bool:
        """The order reduces `pos`: the opposite side of a one-way position, or in hedge mode
        SELL on LONG / BUY on SHORT."""
        if order.position_side == "LONG":
            return order.side == "SELL"
        if order.position_side == "SHORT":
            return order.side == "BUY"
        return (pos.amount > 0 and order.side == "SELL") or (pos.amount < 0 and order.side == "BUY")

    def _check_margin(self, account: SimAccount, order: SimOrder) -> None:
        pos = self._order_position(account, order)
        signed = order.orig_qty if order.side == "BUY" else -order.orig_qty
        hedge_close = order.position_side != "BOTH" and self._closes(order, pos)
        if order.reduce_only or hedge_close:
            if pos.amount == 0 or not self._closes(order, pos) or (hedge_close and order.orig_qty > abs(pos.amount)):
                raise SimError(-2022, "ReduceOnly Order is rejected.")
            return
        increase = max(abs(pos.amount + signed) - abs(pos.amount), ZERO)
        if increase == 0:
            return
        sym = self.symbols[order.symbol]
        price = sym.mark if order.type == "MARKET" else order.price
        required = increase * price / account.leverage_for(order.symbol) + increase * price * TAKER_RATE
        available = account.balance + self._unrealized(account) - self._used_margin(account)
        if required > available:
            raise SimError(-2019, "Margin is insufficient.")
        leverage = account.leverage_for(order.symbol)
        if abs(pos.amount + signed) * price > max_notional(leverage):
            raise SimError(-2027, "Exceeded the maximum allowable position at current leverage.")

    def _closing_quantity(self, order: SimOrder, pos: SimPosition, quantity: Decimal) -> Decimal:
        """What a reduce-only / closePosition order may still fill: no more than the position."""
        closing = self._closes(order, pos) and pos.amount != 0
        if order.close_position:
            return abs(pos.amount) if closing else ZERO
        return min(quantity, abs(pos.amount)) if closing else ZERO

    def _execute_market(self, account: SimAccount, order: SimOrder) -> None:
        sym = self.symbols[order.symbol]
        pos = self._order_position(account, order)
        quantity = order.orig_qty
        if order.reduce_only or (order.position_side != "BOTH" and self._closes(order, pos)):
            quantity = self._closing_quantity(order, pos, quantity)
        if quantity <= 0:
            self._expire(account, order)
            return
        filled, quote = sym.walk(order.side, quantity)
        if filled <= 0:
            self._expire(account, order)
            return
        self._fill_in_parts(account, order, filled, quote, wanted=quantity)
        if filled < quantity:  # the book ran out: the rest expires
            self._expire(account, order)

    # ---------------------------------------------------------------- limit orders

    def _crosses(self, sym: SimSymbol, order: SimOrder) -> bool:
        """A BUY limit at or above the best ask, a SELL at or below the best bid: it takes liquidity."""
        if order.side == "BUY":
            return order.price >= sym.level_price("ask", 0)
        return order.price <= sym.level_price("bid", 0)

    def _match_new_limit(self, account: SimAccount, order: SimOrder) -> None:
        """A LIMIT order (or a triggered STOP / TAKE_PROFIT) on arrival: GTX that would take is
        expired (post-only); one that crosses fills as a taker up to its price; the rest rests
        (GTC, GTX) or expires (IOC, FOK; FOK fills all or nothing)."""
        sym = self.symbols[order.symbol]
        wanted = order.orig_qty - order.executed_qty
        if order.reduce_only:
            wanted = self._closing_quantity(order, self._order_position(account, order), wanted)
            if wanted <= 0:
                self._expire(account, order)
                return
        if self._crosses(sym, order):
            if order.time_in_force == "GTX":
                self._expire(account, order)
                return
            filled, quote = self._walk_to(sym, order.side, wanted, order.price)
            if order.time_in_force == "FOK" and filled < wanted:
                self._expire(account, order)
                return
            if filled > 0:
                self._fill_in_parts(account, order, filled, quote, wanted=wanted)
                wanted -= filled
        if wanted > 0 and order.time_in_force in ("IOC", "FOK"):
            self._expire(account, order)

    @staticmethod
    def _walk_to(sym: SimSymbol, side: str, quantity: Decimal, limit: Decimal) -> tuple[Decimal, Decimal]:
        """Fill against the book, no level beyond `limit`. Returns (filled, quote)."""
        remaining, quote, filled = quantity, ZERO, ZERO
        book_side = "ask" if side == "BUY" else "bid"
        for index in range(sym.depth_levels):
            price = sym.level_price(book_side, index)
            if remaining <= 0 or price <= 0 or (price > limit if side == "BUY" else price < limit):
                break
            take = min(remaining, sym.level_quantity(index))
            quote, filled, remaining = quote + take * price, filled + take, remaining - take
        return filled, quote

    def _fill_resting(self, account: SimAccount, order: SimOrder) -> None:
        """A resting limit the last price has crossed fills at its own price, as a maker."""
        pos = self._order_position(account, order)
        wanted = order.orig_qty - order.executed_qty
        if order.reduce_only or (order.position_side != "BOTH" and self._closes(order, pos)):
            wanted = self._closing_quantity(order, pos, wanted)
        if wanted <= 0:
            self._expire(account, order)
            return
        fill = self._apply_fill(account, order, wanted, wanted * order.price, maker=True)
        order.status = "FILLED" if order.executed_qty >= order.orig_qty or order.reduce_only else "PARTIALLY_FILLED"
        self._emit_order(account, order, "TRADE", fill)
        self._emit_account_update(account, order.symbol, order.position_side)

    def _expire(self, account: SimAccount, order: SimOrder) -> None:
        order.status, order.update_time_ms = "EXPIRED", self.now_ms()
        self._emit_order(account, order, "EXPIRED")

    def _fill_in_parts(
        self, account: SimAccount, order: SimOrder, filled: Decimal, quote: Decimal, *, wanted: Decimal
    ) -> None:
        """Book `filled` at the average price `quote / filled` as one or more trades (see
        split_next_fills), each a TRADE event followed by an ACCOUNT_UPDATE. The order is FILLED
        with its last trade once `wanted` is filled (a reduce-only order wants no more than the
        position), unless the book ran out first (then _execute_market expires it)."""
        step = self.symbols[order.symbol].step
        parts = account.fill_splits.pop(0) if account.fill_splits else 1
        chunk = (filled / parts / step).to_integral_value(rounding=ROUND_DOWN) * step
        sizes = [chunk] * (parts - 1) + [filled - chunk * (parts - 1)] if chunk > 0 else [filled]
        price = quote / filled
        booked_quote = ZERO
        before = order.executed_qty
        for index, size in enumerate(sizes):
            last = index == len(sizes) - 1
            part_quote = quote - booked_quote if last else size * price
            booked_quote += part_quote
            fill = self._apply_fill(account, order, size, part_quote)
            order.status = "FILLED" if last and order.executed_qty - before >= wanted else "PARTIALLY_FILLED"
            self._emit_order(account, order, "TRADE", fill)
            self._emit_account_update(account, order.symbol, order.position_side)

    def _apply_fill(
        self, account: SimAccount, order: SimOrder, filled: Decimal, quote: Decimal, *, maker: bool = False
    ) -> FillFacts:
        sym = self.symbols[order.symbol]
        price = quote / filled
        pos = self._order_position(account, order)
        signed = filled if order.side == "BUY" else -filled
        realized = ZERO
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            total = abs(pos.amount) + filled
            pos.entry = (abs(pos.amount) * pos.entry + filled * price) / total
            pos.amount += signed
        else:
            closing = min(filled, abs(pos.amount))
            direction = 1 if pos.amount > 0 else -1
            realized = closing * (price - pos.entry) * direction
            pos.amount += signed
            if pos.amount == 0:
                pos.entry, pos.margin_added = ZERO, ZERO
            elif (pos.amount > 0) != (direction > 0):
                pos.entry = price  # flipped: the remainder opened at this fill
        pos.realized += realized
        rate = MAKER_RATE if maker else TAKER_RATE
        commission = (quote * rate).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
        account.balance += realized - commission
        now = self.now_ms()
        pos.update_time_ms = now
        order.executed_qty += filled
        order.cum_quote += quote
        order.update_time_ms = now
        sym.record_candle(now, filled)
        self._next_trade_id += 1
        account.trades.append(
            {
                "buyer": order.side == "BUY",
                "commission": fmt(commission),
                "commissionAsset": "USDT",
                "id": self._next_trade_id,
                "maker": maker,
                "orderId": order.order_id,
                "price": fmt(price),
                "qty": fmt(filled),
                "quoteQty": fmt(quote),
                "realizedPnl": fmt(realized),
                "side": order.side,
                "positionSide": order.position_side,
                "symbol": order.symbol,
                "time": now,
            }
        )
        sym.recent_trades.append(
            {
                "id": self._next_trade_id,
                "price": fmt(price),
                "qty": fmt(filled),
                "quoteQty": fmt(quote),
                "time": now,
                "isBuyerMaker": order.side == "SELL",
            }
        )
        for income_type, amount in (("REALIZED_PNL", realized), ("COMMISSION", -commission)):
            if amount:
                account.income.append(
                    {
                        "symbol": order.symbol,
                        "incomeType": income_type,
                        "income": fmt(amount),
                        "asset": "USDT",
                        "info": "",
                        "time": now,
                        "tranId": self._next_trade_id,
                        "tradeId": str(self._next_trade_id),
                    }
                )
        return FillFacts(
            trade_id=self._next_trade_id, quantity=filled, price=price, commission=commission, realized=realized
        )

    def _check_triggers(self, sym: SimSymbol) -> None:
        for account in self.accounts.values():
            for order in list(account.orders.values()):
                if order.symbol != sym.symbol or not order.is_open or order.type == "MARKET":
                    continue
                if order.rests_as_limit:
                    if sym.price <= order.price if order.side == "BUY" else sym.price >= order.price:
                        self._fill_resting(account, order)
                    continue
                if self._triggered(
                    order.type, order.side, order.stop_price, self._working_price(sym, order.working_type)
                ):
                    order.triggered = True
                    if order.type in ("STOP", "TAKE_PROFIT"):
                        self._match_new_limit(account, order)  # now a LIMIT order at its price
                    else:
                        self._execute_market(account, order)

    def _check_liquidations(self, sym: SimSymbol) -> None:
        """Liquidate every position on `sym` whose liquidationPrice the mark has crossed."""
        mark = sym.mark
        for account in self.accounts.values():
            for symbol, side, pos in account.held():
                if symbol != sym.symbol:
                    continue
                liquidation = self._liquidation_price(account, symbol, pos)
                if liquidation > 0 and (mark <= liquidation if pos.amount > 0 else mark >= liquidation):
                    self._liquidate(account, sym, pos, side)

    def _liquidate(self, account: SimAccount, sym: SimSymbol, pos: SimPosition, side: str = "BOTH") -> None:
        """Close the position at its bankruptcy price (its margin is lost: the isolated wallet, or
        for cross margin what the cross wallet can spare), cancel the account's open orders on the
        symbol first (as the exchange does before it takes the position over)."""
        now = self.now_ms()
        for order in list(account.orders.values()):
            if order.symbol == sym.symbol and order.is_open:
                order.status, order.update_time_ms = "CANCELED", now
                self._emit_order(account, order, "CANCELED")
        quantity = abs(pos.amount)
        direction = 1 if pos.amount > 0 else -1
        wallet = self._position_wallet(account, sym.symbol, pos)
        bankruptcy = max(sym.round_tick(pos.entry - direction * wallet / quantity), sym.tick)
        self._next_liquidation += 1
        order = SimOrder(
            order_id=self._new_order_id(),
            client_order_id=f"autoclose-{self._next_liquidation}",
            symbol=sym.symbol,
            side="SELL" if direction > 0 else "BUY",
            type="LIQUIDATION",
            orig_qty=quantity,
            price=bankruptcy,
            stop_price=ZERO,
            reduce_only=True,
            close_position=False,
            working_type="CONTRACT_PRICE",
            time_in_force="IOC",
            time_ms=now,
            update_time_ms=now,
            position_side=side,
        )
        account.orders[order.order_id] = order
        fill = self._apply_fill(account, order, quantity, quantity * bankruptcy)
        order.status = "FILLED"
        self._emit_order(account, order, "CALCULATED", fill)
        self._emit_account_update(account, sym.symbol, side)

    def find_order(self, account: SimAccount, *, order_id: str | None, client_order_id: str | None) -> SimOrder:
        for order in reversed(list(account.orders.values())):
            if order_id is not None and str(order.order_id) == order_id:
                return order
            if client_order_id is not None and order.client_order_id == client_order_id:
                return order
        raise SimError(-2013, "Order does not exist.")

    def cancel_order(self, account: SimAccount, *, order_id: str | None, client_order_id: str | None) -> SimOrder:
        with self.lock:
            try:
                order = self.find_order(account, order_id=order_id, client_order_id=client_order_id)
            except SimError:
                raise SimError(-2011, "Unknown order sent.") from None
            if not order.is_open:
                raise SimError(-2011, "Unknown order sent.")
            order.status, order.update_time_ms = "CANCELED", self.now_ms()
            self._emit_order(account, order, "CANCELED")
            return order

    def cancel_all(self, account: SimAccount, symbol: str) -> list[SimOrder]:
        with self.lock:
            self.symbol(symbol)
            cancelled = [o for o in account.orders.values() if o.symbol == symbol and o.is_open]
            for order in cancelled:
                order.status, order.update_time_ms = "CANCELED", self.now_ms()
                self._emit_order(account, order, "CANCELED")
            return cancelled

    def check_countdowns(self) -> None:
        """The dead-man switch: cancel a symbol's open orders once its countdown has run out."""
        now = self.now_ms()
        with self.lock:
            for account in self.accounts.values():
                for symbol, (_, deadline) in list(account.countdowns.items()):
                    if now >= deadline:
                        del account.countdowns[symbol]
                        self.cancel_all(account, symbol)

    def adjust_margin(self, account: SimAccount, *, symbol: str, side: str, amount: Decimal, add: bool) -> None:
        """positionMargin: add to or take from an isolated position's wallet."""
        with self.lock:
            self.symbol(symbol)
            pos = account.position(symbol, side)
            if not account.is_isolated(symbol):
                raise SimError(-4049, "Add margin only support for isolated position.")
            if not pos.amount:
                raise SimError(-4054, "Cannot add position margin: position is 0.")
            wallet = self._position_wallet(account, symbol, pos)
            if add and amount > account.balance + self._unrealized(account) - self._used_margin(account):
                raise SimError(-4051, "Isolated balance insufficient.")
            if not add and amount >= wallet - abs(pos.amount) * pos.entry / account.leverage_for(symbol) / 2:
                raise SimError(-4051, "Isolated balance insufficient.")
            pos.margin_added += amount if add else -amount
            pos.update_time_ms = self.now_ms()

    # ---------------------------------------------------------------- account views

    def position_risk(self, account: SimAccount, symbol: str | None) -> list[dict[str, Any]]:
        """One BOTH row per symbol in one-way mode; a LONG and a SHORT row in hedge mode."""
        rows = []
        sides = ("LONG", "SHORT") if account.hedge_mode else ("BOTH",)
        for name in [symbol] if symbol else sorted(self.symbols):
            sym = self.symbol(name)
            for side in sides:
                pos = account.peek(name, side)
                rows.append(self._risk_row(account, sym, pos, side))
        return rows

    def _risk_row(self, account: SimAccount, sym: SimSymbol, pos: SimPosition, side: str) -> dict[str, Any]:
        leverage = account.leverage_for(sym.symbol)
        isolated = account.is_isolated(sym.symbol)
        unrealized = pos.amount * (sym.mark - pos.entry) if pos.amount else ZERO
        wallet = self._position_wallet(account, sym.symbol, pos) if isolated and pos.amount else ZERO
        return {
            "symbol": sym.symbol,
            "positionAmt": fmt(pos.amount),
            "entryPrice": fmt(pos.entry),
            "markPrice": fmt(sym.mark),
            "unRealizedProfit": fmt(unrealized),
            "liquidationPrice": fmt(self._liquidation_price(account, sym.symbol, pos)),
            "leverage": str(leverage),
            "maxNotionalValue": str(max_notional(leverage)),
            "marginType": "isolated" if isolated else "cross",
            "isolatedMargin": fmt(wallet + unrealized) if wallet else "0",  # 0 for cross positions
            "isAutoAddMargin": "false",
            "positionSide": side,
            "notional": fmt(pos.amount * sym.mark),
            "isolatedWallet": fmt(wallet),
            "updateTime": pos.update_time_ms,
        }

    def _position_wallet(self, account: SimAccount, symbol: str, pos: SimPosition) -> Decimal:
        """The margin that stands behind `pos`: its isolated wallet, or for cross margin the
        cross wallet less the other positions' maintenance margin, plus their unrealized PnL."""
        leverage = account.leverage_for(symbol)
        if account.is_isolated(symbol):
            return abs(pos.amount) * pos.entry / leverage + pos.margin_added
        others = [(s, p) for s, _, p in account.held() if p is not pos]
        maintenance = sum((maintenance_margin(abs(p.amount) * self.symbols[s].mark) for s, p in others), ZERO)
        unrealized = sum((p.amount * (self.symbols[s].mark - p.entry) for s, p in others), ZERO)
        return account.balance - maintenance + unrealized

    def _liquidation_price(self, account: SimAccount, symbol: str, pos: SimPosition) -> Decimal:
        """ASTER_API.md §6 (the one-way USD-M formula): LP = (WB + cum - side*Q*EP) / (Q*MMR - side*Q),
        WB the position's wallet (isolated) or the cross wallet less the others' MM plus their uPnL."""
        if not pos.amount:
            return ZERO
        qty, side = abs(pos.amount), (1 if pos.amount > 0 else -1)
        mmr, cum = bracket_for(qty * pos.entry)[4:6]
        wallet = self._position_wallet(account, symbol, pos)
        price = (wallet + Decimal(cum) - side * qty * pos.entry) / (qty * Decimal(mmr) - side * qty)
        return max(price, ZERO).quantize(Decimal("0.01"))

    def balances(self, account: SimAccount) -> list[dict[str, Any]]:
        available = account.balance + self._unrealized(account) - self._used_margin(account)
        return [
            {
                "accountAlias": account.name,
                "asset": "USDT",
                "balance": fmt(account.balance),
                "crossWalletBalance": fmt(account.balance),
                "crossUnPnl": fmt(self._unrealized(account)),
                "availableBalance": fmt(available),
                "maxWithdrawAmount": fmt(max(available, ZERO)),
                "marginAvailable": True,
                "updateTime": self.now_ms(),
            }
        ]

    def brackets(self, symbol: str | None) -> Any:
        def entry(name: str) -> dict[str, Any]:
            return {
                "symbol": name,
                "brackets": [
                    {
                        "bracket": b,
                        "initialLeverage": lev,
                        "notionalCap": cap,
                        "notionalFloor": floor,
                        "maintMarginRatio": float(mmr),
                        "cum": float(cum),
                    }
                    for b, lev, floor, cap, mmr, cum in BRACKETS
                ],
            }

        if symbol:
            self.symbol(symbol)
            return entry(symbol)
        return [entry(name) for name in sorted(self.symbols)]

    def exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": [self._symbol_info(sym) for sym in self.symbols.values()],
        }

    @staticmethod
    def _symbol_info(sym: SimSymbol) -> dict[str, Any]:
        return {
            "symbol": sym.symbol,
            "pair": sym.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1598252400000,
            "status": sym.status,
            "baseAsset": sym.symbol.removesuffix("USDT"),
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": decimals_of(sym.tick),
            "quantityPrecision": decimals_of(sym.step),
            "triggerProtect": "0.0500",
            "liquidationFee": fmt(sym.liquidation_fee),
            "marketTakeBound": "0.30",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(sym.tick),
                    "maxPrice": "10000000",
                    "tickSize": fmt(sym.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(sym.min_qty),
                    "maxQty": fmt(sym.max_qty),
                    "stepSize": fmt(sym.step),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": fmt(sym.min_qty),
                    "maxQty": fmt(sym.market_max_qty),
                    "stepSize": fmt(sym.step),
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 100},
                {"filterType": "MIN_NOTIONAL", "notional": fmt(sym.min_notional)},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.1500",
                    "multiplierDown": "0.8500",
                    "multiplierDecimal": 4,
                },
            ],
            "OrderType": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }

    def premium_index(self, sym: SimSymbol) -> dict[str, Any]:
        return {
            "symbol": sym.symbol,
            "markPrice": fmt(sym.mark),
            "indexPrice": fmt(sym.price),
            "estimatedSettlePrice": fmt(sym.mark),
            "lastFundingRate": fmt(sym.funding_rate),
            "interestRate": "0.00010000",
            "nextFundingTime": sym.next_funding_ms(self.now_ms()),
            "time": self.now_ms(),
        }

    def klines(
        self,
        sym: SimSymbol,
        start: int | None,
        end: int | None,
        limit: int,
        *,
        mark: bool = False,
        interval_ms: int = 60_000,
    ) -> list[list[Any]]:
        """Candles of `interval_ms` (1m..1d), built from the 1-minute candles, aligned on UTC."""
        candles = sym.mark_candles if mark else sym.candles
        buckets: dict[int, list[Decimal]] = {}
        for minute in sorted(candles):
            o, h, low, c, v = candles[minute]
            opened = minute - minute % interval_ms
            bucket = buckets.get(opened)
            if bucket is None:
                buckets[opened] = [o, h, low, c, v]
            else:
                bucket[1], bucket[2], bucket[3], bucket[4] = max(bucket[1], h), min(bucket[2], low), c, bucket[4] + v
        rows = []
        for opened, (o, h, low, c, v) in buckets.items():
            closes = opened + interval_ms - 1
            if (start is not None and closes < start) or (end is not None and opened > end):
                continue
            quote = fmt((v * c).quantize(Decimal("0.00000001")))
            rows.append([opened, fmt(o), fmt(h), fmt(low), fmt(c), fmt(v), closes, quote, 0, "0", "0", "0"])
        return rows[-limit:] if start is None else rows[:limit]

    def ticker_24hr(self, sym: SimSymbol) -> dict[str, Any]:
        """24-hour statistics from the 1-minute candles of the last day."""
        now = self.now_ms()
        day = [sym.candles[m] for m in sorted(sym.candles) if m > now - 86_400_000]
        open_price = day[0][0] if day else sym.price
        volume = sum((c[4] for c in day), ZERO)
        change = sym.price - open_price
        trades = [t for t in sym.recent_trades if t["time"] > now - 86_400_000]
        return {
            "symbol": sym.symbol,
            "priceChange": fmt(change),
            "priceChangePercent": fmt((change / open_price * 100).quantize(Decimal("0.001"))),
            "weightedAvgPrice": fmt(sym.price),
            "lastPrice": fmt(sym.price),
            "lastQty": trades[-1]["qty"] if trades else "0",
            "openPrice": fmt(open_price),
            "highPrice": fmt(max((c[1] for c in day), default=sym.price)),
            "lowPrice": fmt(min((c[2] for c in day), default=sym.price)),
            "volume": fmt(volume),
            "quoteVolume": fmt((volume * sym.price).quantize(Decimal("0.00000001"))),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": trades[0]["id"] if trades else -1,
            "lastId": trades[-1]["id"] if trades else -1,
            "count": len(trades),
        }

    def book_ticker(self, sym: SimSymbol) -> dict[str, Any]:
        return {
            "symbol": sym.symbol,
            "bidPrice": fmt(sym.level_price("bid", 0)),
            "bidQty": fmt(sym.level_quantity(0)),
            "askPrice": fmt(sym.level_price("ask", 0)),
            "askQty": fmt(sym.level_quantity(0)),
            "time": self.now_ms(),
        }

    def funding_info(self, sym: SimSymbol) -> dict[str, Any]:
        return {
            "symbol": sym.symbol,
            "interestRate": "0.00010000",
            "time": self.now_ms(),
            "fundingIntervalHours": sym.funding_interval_hours,
            "fundingFeeCap": 0.03,  # numbers, not strings (ASTER_API.md §2)
            "fundingFeeFloor": -0.03,
        }

    def funding_history(self, sym: SimSymbol, start: int | None, end: int | None, limit: int) -> list[dict[str, Any]]:
        if sym.funding_events:
            events = sorted(sym.funding_events)
        else:
            interval = sym.funding_interval_ms
            last = sym.next_funding_ms(self.now_ms()) - interval
            events = [(last - i * interval, sym.funding_rate) for i in range(limit)][::-1]
        rows = [
            {"symbol": sym.symbol, "fundingRate": fmt(rate), "fundingTime": t}
            for t, rate in events
            if (start is None or t >= start) and (end is None or t <= end)
        ]
        return rows[:limit]


def _decimal(raw: str, name: str) -> Decimal:
    try:
        value = Decimal(raw)
    except Exception:
        raise SimError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
    if not value.is_finite() or "e" in raw.lower():
        raise SimError(-1111, "Precision is over the maximum defined for this asset.")
    return value
