"""The simulated exchange: symbols, prices, order books, accounts, orders and positions.

A test double built from ASTER_API.md (one-way mode, USDT-margined linear perpetuals).
All state changes hold `self.lock`; the HTTP layer (server.py) only parses and formats.
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

    def position(self, symbol: str) -> SimPosition:
        return self.positions.setdefault(symbol, SimPosition())

    def leverage_for(self, symbol: str) -> int:
        return self.leverage.get(symbol, 20)


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
            self._check_triggers(sym)

    def step(self) -> None:
        """One random-walk step for every symbol, then the trigger checks."""
        with self.lock:
            for sym in self.symbols.values():
                factor = Decimal(str(math.exp(self.random.gauss(0, sym.volatility))))
                sym.price = max(sym.round_tick(sym.price * factor), sym.tick)
                sym.record_candle(self.now_ms())
                self._check_triggers(sym)

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
                self._execute_market(account, order)
            else:
                account.orders[order.order_id] = order
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
            order.status, order.update_time_ms = "EXPIRED", self.now_ms()
            return
        filled, quote = sym.walk(order.side, quantity)
        if filled <= 0:
            order.status, order.update_time_ms = "EXPIRED", self.now_ms()
            return
        self._apply_fill(account, order, filled, quote)
        order.status = "FILLED" if filled >= quantity else "EXPIRED"

    def _apply_fill(self, account: SimAccount, order: SimOrder, filled: Decimal, quote: Decimal) -> None:
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
                    self._execute_market(account, order)

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
