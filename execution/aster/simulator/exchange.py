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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from execution.aster.simulator.user_events import FillFacts, account_update, order_trade_update

ZERO = Decimal("0")
TAKER_RATE = Decimal("0.00035")
MAKER_RATE = Decimal("0.0001")
CLIENT_ORDER_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
FUNDING_INTERVAL_MS = 8 * 3600 * 1000

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
    liquidation_fee: Decimal = Decimal("0.010000")
    status: str = "TRADING"
    candles: dict[int, list[Decimal]] = field(default_factory=dict)
    mark_candles: dict[int, list[Decimal]] = field(default_factory=dict)
    funding_events: list[tuple[int, Decimal]] = field(default_factory=list)  # explicit history, if set

    def round_tick(self, price: Decimal) -> Decimal:
        return (price / self.tick).to_integral_value(rounding=ROUND_HALF_EVEN) * self.tick

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
    triggered: bool = False  # a STOP_MARKET / TAKE_PROFIT_MARKET whose stop price was reached

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
            "type": self.type,
            "origType": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": self.close_position,
            "side": self.side,
            "positionSide": "BOTH",
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


@dataclass
class SimAccount:
    name: str
    api_key: str = ""
    api_secret: str = ""
    user: str = ""
    signer: str = ""
    balance: Decimal = Decimal("100000")
    hedge_mode: bool = False
    positions: dict[str, SimPosition] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)
    orders: dict[int, SimOrder] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    income: list[dict[str, Any]] = field(default_factory=list)
    nonces: list[int] = field(default_factory=list)
    last_event_ms: int = 0  # user-data events carry strictly increasing `E`
    fill_splits: list[int] = field(default_factory=list)  # the next fills' trade counts

    def position(self, symbol: str) -> SimPosition:
        return self.positions.setdefault(symbol, SimPosition())

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
            next_funding = self.next_funding_time_ms()
            return [PriceSnapshot.of(sym, next_funding) for sym in self.symbols.values()]

    def _emit_prices(self, symbols: list[SimSymbol]) -> None:
        if not self.price_listeners:
            return
        next_funding = self.next_funding_time_ms()
        snapshots = [PriceSnapshot.of(sym, next_funding) for sym in symbols]
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

    def _emit_account_update(self, account: SimAccount, symbol: str) -> None:
        if self.event_listeners:
            position = account.position(symbol)
            event = account_update(
                account,
                reason="ORDER",
                event_ms=self._event_time(account),
                positions={symbol: (position, self.symbols[symbol].mark)},
            )
            for listener in self.event_listeners:
                listener(account.name, event)

    def split_next_fills(self, account_name: str, *, parts: int, fills: int = 1) -> None:
        """The account's next `fills` fills each come as `parts` TRADE events (partial fills)."""
        if parts < 1 or fills < 1:
            raise ValueError(f"parts and fills must be >= 1, got {parts} and {fills}")
        with self.lock:
            self.accounts[account_name].fill_splits.extend([parts] * fills)

    def next_funding_time_ms(self) -> int:
        now = self.now_ms()
        return now - now % FUNDING_INTERVAL_MS + FUNDING_INTERVAL_MS

    # ---------------------------------------------------------------- orders

    def _new_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id

    def place_order(self, account: SimAccount, params: dict[str, str]) -> SimOrder:
        with self.lock:
            order = self._validated_order(account, params)
            if order.type == "MARKET":
                self._check_margin(account, order)
            account.orders[order.order_id] = order
            self._emit_order(account, order, "NEW")
            if order.type == "MARKET":
                self._execute_market(account, order)
            return order

    def _validated_order(self, account: SimAccount, params: dict[str, str]) -> SimOrder:
        sym = self.symbol(params.get("symbol", ""))
        side = params.get("side", "")
        type_ = params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise SimError(-1130, "Invalid side.")
        if type_ not in ("MARKET", "LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise SimError(-1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"sim-{self._next_order_id + 1}"
        if not CLIENT_ORDER_ID_RE.match(client_id):
            raise SimError(-4015, "Client order id is not valid.")
        if any(o.client_order_id == client_id and o.is_open for o in account.orders.values()):
            raise SimError(-4116, "ClientOrderId is duplicated.")
        close_position = params.get("closePosition", "false") == "true"
        reduce_only = params.get("reduceOnly", "false") == "true"
        if close_position and "quantity" in params:
            raise SimError(-4137, "Quantity must be zero with closePosition equals true.")
        if close_position and "reduceOnly" in params:
            raise SimError(-1106, "Parameter 'reduceOnly' sent when not required.")
        quantity = ZERO if close_position else self._quantity(sym, params.get("quantity"))
        price = self._price(sym, params.get("price"), "price") if type_ == "LIMIT" else ZERO
        stop = ZERO
        working = params.get("workingType", "CONTRACT_PRICE")
        if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise SimError(-1130, "Invalid workingType.")
        if type_ in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            stop = self._price(sym, params.get("stopPrice"), "stopPrice")
            if self._triggered(type_, side, stop, self._working_price(sym, working)):
                raise SimError(-2021, "Order would immediately trigger.")
        elif close_position:
            raise SimError(-1106, "Parameter 'closePosition' sent when not required.")
        if type_ == "MARKET" and quantity > sym.market_max_qty:
            raise SimError(-4005, "Quantity greater than max quantity.")
        if type_ == "MARKET" and not reduce_only and quantity * sym.mark < sym.min_notional:
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
            time_in_force=params.get("timeInForce", "GTC"),
            time_ms=now,
            update_time_ms=now,
        )

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
        if type_ == "STOP_MARKET":
            return price >= stop if side == "BUY" else price <= stop
        return price <= stop if side == "BUY" else price >= stop

    def _used_margin(self, account: SimAccount) -> Decimal:
        total = ZERO
        for symbol, pos in account.positions.items():
            if pos.amount:
                total += abs(pos.amount) * pos.entry / account.leverage_for(symbol)
        return total

    def _unrealized(self, account: SimAccount) -> Decimal:
        return sum(
            (pos.amount * (self.symbols[s].mark - pos.entry) for s, pos in account.positions.items() if pos.amount),
            ZERO,
        )

    def _check_margin(self, account: SimAccount, order: SimOrder) -> None:
        pos = account.position(order.symbol)
        signed = order.orig_qty if order.side == "BUY" else -order.orig_qty
        if order.reduce_only:
            if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
                raise SimError(-2022, "ReduceOnly Order is rejected.")
            return
        increase = max(abs(pos.amount + signed) - abs(pos.amount), ZERO)
        if increase == 0:
            return
        sym = self.symbols[order.symbol]
        required = increase * sym.mark / account.leverage_for(order.symbol) + increase * sym.mark * TAKER_RATE
        available = account.balance + self._unrealized(account) - self._used_margin(account)
        if required > available:
            raise SimError(-2019, "Margin is insufficient.")

    def _execute_market(self, account: SimAccount, order: SimOrder) -> None:
        sym = self.symbols[order.symbol]
        pos = account.position(order.symbol)
        quantity = order.orig_qty
        if order.reduce_only:
            closing = (pos.amount > 0 and order.side == "SELL") or (pos.amount < 0 and order.side == "BUY")
            quantity = min(quantity, abs(pos.amount)) if closing else ZERO
            if order.close_position:
                quantity = abs(pos.amount) if closing else ZERO
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
        for index, size in enumerate(sizes):
            last = index == len(sizes) - 1
            part_quote = quote - booked_quote if last else size * price
            booked_quote += part_quote
            fill = self._apply_fill(account, order, size, part_quote)
            order.status = "FILLED" if last and order.executed_qty >= wanted else "PARTIALLY_FILLED"
            self._emit_order(account, order, "TRADE", fill)
            self._emit_account_update(account, order.symbol)

    def _apply_fill(self, account: SimAccount, order: SimOrder, filled: Decimal, quote: Decimal) -> FillFacts:
        sym = self.symbols[order.symbol]
        price = quote / filled
        pos = account.position(order.symbol)
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
                pos.entry = ZERO
            elif (pos.amount > 0) != (direction > 0):
                pos.entry = price  # flipped: the remainder opened at this fill
        pos.realized += realized
        commission = (quote * TAKER_RATE).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
        account.balance += realized - commission
        now = self.now_ms()
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
                "maker": False,
                "orderId": order.order_id,
                "price": fmt(price),
                "qty": fmt(filled),
                "quoteQty": fmt(quote),
                "realizedPnl": fmt(realized),
                "side": order.side,
                "positionSide": "BOTH",
                "symbol": order.symbol,
                "time": now,
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
                if order.type == "LIMIT":
                    continue  # resting limit orders are not matched by this simulator
                if self._triggered(
                    order.type, order.side, order.stop_price, self._working_price(sym, order.working_type)
                ):
                    order.triggered = True
                    self._execute_market(account, order)

    def _check_liquidations(self, sym: SimSymbol) -> None:
        """Liquidate every position on `sym` whose liquidationPrice the mark has crossed."""
        mark = sym.mark
        for account in self.accounts.values():
            pos = account.positions.get(sym.symbol)
            if pos is None or not pos.amount:
                continue
            liquidation = self._liquidation_price(pos, account.leverage_for(sym.symbol))
            if liquidation > 0 and (mark <= liquidation if pos.amount > 0 else mark >= liquidation):
                self._liquidate(account, sym, pos)

    def _liquidate(self, account: SimAccount, sym: SimSymbol, pos: SimPosition) -> None:
        """Close the position at its bankruptcy price (its margin is lost), cancel the account's
        open orders on the symbol first (as the exchange does before it takes the position over)."""
        now = self.now_ms()
        for order in list(account.orders.values()):
            if order.symbol == sym.symbol and order.is_open:
                order.status, order.update_time_ms = "CANCELED", now
                self._emit_order(account, order, "CANCELED")
        leverage = Decimal(account.leverage_for(sym.symbol))
        quantity = abs(pos.amount)
        direction = 1 if pos.amount > 0 else -1
        bankruptcy = sym.round_tick(pos.entry * (1 - direction / leverage))
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
        )
        account.orders[order.order_id] = order
        fill = self._apply_fill(account, order, quantity, quantity * bankruptcy)
        order.status = "FILLED"
        self._emit_order(account, order, "CALCULATED", fill)
        self._emit_account_update(account, sym.symbol)

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

    # ---------------------------------------------------------------- account views

    def position_risk(self, account: SimAccount, symbol: str | None) -> list[dict[str, Any]]:
        rows = []
        for name in [symbol] if symbol else sorted(self.symbols):
            sym = self.symbol(name)
            pos = account.positions.get(name, SimPosition())
            leverage = account.leverage_for(name)
            rows.append(
                {
                    "symbol": name,
                    "positionAmt": fmt(pos.amount),
                    "entryPrice": fmt(pos.entry),
                    "markPrice": fmt(sym.mark),
                    "unRealizedProfit": fmt(pos.amount * (sym.mark - pos.entry)) if pos.amount else "0",
                    "liquidationPrice": fmt(self._liquidation_price(pos, leverage)),
                    "leverage": str(leverage),
                    "maxNotionalValue": "1000000",
                    "marginType": account.margin_type.get(name, "cross").lower().replace("crossed", "cross"),
                    "isolatedMargin": fmt(abs(pos.amount) * pos.entry / leverage) if pos.amount else "0",
                    "isAutoAddMargin": "false",
                    "positionSide": "BOTH",
                    "notional": fmt(pos.amount * sym.mark),
                    "isolatedWallet": "0",
                    "updateTime": self.now_ms(),
                }
            )
        return rows

    @staticmethod
    def _liquidation_price(pos: SimPosition, leverage: int) -> Decimal:
        if not pos.amount:
            return ZERO
        qty, side = abs(pos.amount), (1 if pos.amount > 0 else -1)
        wallet = qty * pos.entry / leverage
        mmr = Decimal("0.004")
        price = (wallet - side * qty * pos.entry) / (qty * mmr - side * qty)
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
            "nextFundingTime": self.next_funding_time_ms(),
            "time": self.now_ms(),
        }

    def klines(
        self, sym: SimSymbol, start: int | None, end: int | None, limit: int, *, mark: bool = False
    ) -> list[list[Any]]:
        candles = sym.mark_candles if mark else sym.candles
        rows = []
        for minute in sorted(candles):
            if (start is not None and minute + 59_999 < start) or (end is not None and minute > end):
                continue
            o, h, low, c, v = candles[minute]
            rows.append([minute, fmt(o), fmt(h), fmt(low), fmt(c), fmt(v), minute + 59_999, "0", 0, "0", "0", "0"])
        return rows[-limit:] if start is None else rows[:limit]

    def funding_history(self, sym: SimSymbol, start: int | None, end: int | None, limit: int) -> list[dict[str, Any]]:
        if sym.funding_events:
            events = sorted(sym.funding_events)
        else:
            last = self.next_funding_time_ms() - FUNDING_INTERVAL_MS
            events = [(last - i * FUNDING_INTERVAL_MS, sym.funding_rate) for i in range(limit)][::-1]
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
