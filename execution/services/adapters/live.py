"""Live trading: signed AsterDEX orders through AsterClient.

Exchange errors become service errors that say what happened:
- ExchangeRejected: the exchange refused the order (nothing executed), with its code;
- OrderOutcomeUnknown: the submission may have executed (timeout, HTTP 503, -1007);
- ProtectionFailed: a TP/SL leg was refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.utils import timezone

from accounts.models import Account, MarginType
from execution.aster.client import AsterClient
from execution.aster.errors import (
    AsterError,
    AsterInputError,
    AsterInvalidRequest,
    AsterOutcomeUnknown,
    AsterRateLimited,
)
from execution.aster.replies import OrderResult
from execution.exceptions import ExchangeRejected, ExecutionError, OrderOutcomeUnknown, ProtectionFailed
from execution.models import PendingOrderKind
from execution.services.adapters.base import (
    AccountModeRefusal,
    ExecutionAdapter,
    Fill,
    MarketOrder,
    PreTradeData,
    ProtectiveOrderAck,
    ProtectiveOrderRequest,
    RemoteOrder,
    RemotePosition,
    RemoteTrade,
)
from execution.services.brackets import DEFAULT_TIERS, tiers_from_exchange
from execution.services.exchange import client_for_account
from execution.services.parity.market_orders import shadowed
from execution.services.position_math import MaintenanceTier, q
from execution.services.setup_cache import BUSY, OK, SETUP, SYMBOL_SETUP, SetupClaim, setup_value

logger = logging.getLogger(__name__)
SETUP_TTL = 3600
GONE_CODES = frozenset({-2011, -2013})
# The exchange will not change margin type while positions or orders exist; the account then
# trades with what it has (and the log says so) instead of failing every order.
SETUP_BLOCKED_CODES = frozenset({-4047, -4048})
# Hedge mode will not switch to one-way while orders (-4067) or positions (-4068) exist: the
# service does not trade such an account (POSITION_MODE) and asks again after this many seconds.
POSITION_MODE_BLOCKED_CODES = frozenset({-4067, -4068})
MODE_RETRY_SECONDS = 30
# A refused order whose code says the account's set-up is not what this process remembers
# (position side, leverage, margin type): its set-up flags are forgotten and checked again.
SETUP_DRIFT_CODES = frozenset({-4060, -4061, -4062, -2027, -2028, -4047, -4048})
MODE_OK = "one-way, single-asset or cross"
# An order that wants another margin type or leverage than an order in flight on the symbol
# waits this long between looks, this many times (3 s), then is refused SETUP_BUSY, unsent.
SETUP_BUSY_WAIT = 0.02
SETUP_BUSY_TRIES = 150
FILL_POLLS = (0.2, 0.5, 1.0)
RATE_LIMIT_TRIES = 3
T = TypeVar("T")
V3_NONCE_WINDOW_SECONDS = 30.0


def _brackets_key(symbol: str) -> str:
    return f"live:brackets:{symbol}"


def exchange_error(exc: AsterError, *, what: str) -> ExecutionError:
    """The service error for an exchange error on a request that was not an ambiguous submission."""
    if isinstance(exc, AsterOutcomeUnknown):
        return OrderOutcomeUnknown(f"{what}: {exc}", details={"client_order_id": exc.client_order_id})
    if isinstance(exc, AsterInputError):
        return ExecutionError(f"{what}: {exc.message}", code="INVALID_INPUT")
    code = f"EXCHANGE_{exc.code}" if exc.code is not None else "EXCHANGE_ERROR"
    if isinstance(exc, AsterRateLimited):
        code = "RATE_LIMITED"
    return ExchangeRejected(f"{what}: {exc}", code=code, details={"exchange_code": exc.code})


class LiveExecutionAdapter(ExecutionAdapter):
    mode = "live"

    def __init__(
        self,
        account: Account,
        *,
        client: AsterClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(account)
        self.client = client or client_for_account(account)
        self._sleep = sleep

    # ------------------------------------------------------------------ before the reserve step

    def pre_trade_data(self, symbol: str) -> PreTradeData:
        """The exchange's available balance (reused for LIVE_BALANCE_CACHE_SECONDS), the
        symbol's leverage brackets (cached an hour) and whether the account's position and
        margin modes can be traded (an hour when they can, MODE_RETRY_SECONDS when not)."""
        # Held in this process (setup_cache): no cache round trip on the order path.
        refusal = self._account_modes(SETUP.get(self._modes_key()))
        available, as_of = self._available_balance(SETUP.get(self._balance_key()))
        return PreTradeData(
            available_balance=available,
            tiers=self._tiers(symbol, SETUP.get(_brackets_key(symbol))),
            balance_as_of=as_of,
            account_mode_refusal=refusal,
        )

    # ------------------------------------------------------------------ position and margin modes

    def _modes_key(self) -> str:
        return f"live:setup:{self.account.pk}:modes:{self.account.margin_type}"

    def _account_modes(self, cached: str | AccountModeRefusal | None) -> AccountModeRefusal | None:
        """Read the position mode (and, for isolated margin, Multi-Assets mode) and switch the
        account to one-way / Single-Asset when it is not; a refusal when the exchange will not.

        Runs before the reserve step, so a refused account writes no intent and sends no order.
        A refusal is cached briefly, so an account fixed by its owner trades again soon."""
        if isinstance(cached, AccountModeRefusal):
            return cached
        if cached == MODE_OK:
            return None
        try:
            refusal = self._one_way_refusal() or self._multi_assets_refusal()
        except AsterError as exc:
            raise exchange_error(exc, what="account position mode") from exc
        if refusal is None:
            SETUP.set(self._modes_key(), MODE_OK, ttl=SETUP_TTL)
        else:
            logger.warning("account %s: %s", self.account.pk, refusal.message)
            SETUP.set(self._modes_key(), refusal, ttl=MODE_RETRY_SECONDS)
        return refusal

    def _one_way_refusal(self) -> AccountModeRefusal | None:
        if not self.client.position_mode_is_hedge():
            return None
        try:
            self.client.set_position_mode(hedge=False)
        except AsterInvalidRequest as exc:
            if exc.code not in POSITION_MODE_BLOCKED_CODES:
                raise
            return AccountModeRefusal(
                message=(
                    "the exchange account is in hedge mode and cannot switch to one-way mode while it has "
                    f"open orders or positions ({exc}); close them on the exchange or switch it by hand"
                ),
                mode="hedge",
                exchange_code=exc.code,
                exchange_msg=exc.message,
            )
        logger.info("account %s: switched the exchange account from hedge to one-way mode", self.account.pk)
        return None

    def _multi_assets_refusal(self) -> AccountModeRefusal | None:
        """Isolated margin and Multi-Assets mode conflict (Binance -4168; Aster documents neither
        the rule nor a code): the account is switched to Single-Asset mode, or refused with the
        exchange's own code and message."""
        if self.account.margin_type != MarginType.ISOLATED or not self.client.multi_assets_mode():
            return None
        try:
            self.client.set_multi_assets_mode(enabled=False)
        except AsterInvalidRequest as exc:
            return AccountModeRefusal(
                message=(
                    "the exchange account is in Multi-Assets mode, which conflicts with this account's isolated "
                    f"margin, and the exchange refused Single-Asset mode ({exc})"
                ),
                mode="multi_assets",
                exchange_code=exc.code,
                exchange_msg=exc.message,
            )
        logger.info("account %s: switched the exchange account to Single-Asset mode", self.account.pk)
        return None

    def _available_balance(self, cached: tuple[Decimal, datetime] | None) -> tuple[Decimal, datetime]:
        """The USDT availableBalance and when it was read.

        Why a cached balance cannot let two orders spend the same margin: it is cached together
        with `as_of`, the moment before it was requested, and the reserve step (under the account
        lock) subtracts every intent still in flight and every fill booked since `as_of`
        (`risk_context.reserved_margin`), whichever process placed them. So an order judged on a
        balance read 2 s ago sees all margin this service committed in those 2 s, exactly as it
        would with a balance read just now. Counting errs only on the safe side (a fill the
        exchange had already taken out but this service booked after `as_of` counts twice; a
        close that freed margin is not credited). What the cache can miss is margin used outside
        this service (manual trades, transfers) for at most the lifetime; the exchange refuses
        such an order itself (insufficient margin), and that refusal drops the cached balance.
        """
        lifetime: float = settings.LIVE_BALANCE_CACHE_SECONDS
        if cached is not None and lifetime:
            return cached
        as_of = timezone.now()  # before the request: a fill booked from here on may be missing from it
        try:
            balances = self.client.balances()
        except AsterError as exc:
            raise exchange_error(exc, what="balance") from exc
        usdt = next((b for b in balances if b.asset == "USDT"), None)
        value = (usdt.available_balance if usdt else Decimal("0"), as_of)
        if lifetime:
            SETUP.set(self._balance_key(), value, ttl=lifetime)
        return value

    def _balance_key(self) -> str:
        return f"live:balance:{self.account.pk}"

    def forget_balance(self) -> None:
        """The next order reads the balance again (after a refusal that may be about margin)."""
        SETUP.delete(self._balance_key())

    def forget_setup(self, symbol: str) -> None:
        """The next order checks the account's modes, and `symbol`'s margin type and leverage, again."""
        SETUP.delete_prefix(f"live:setup:{self.account.pk}:")
        SYMBOL_SETUP.forget(self._symbol_setup_key(symbol))

    def _tiers(self, symbol: str, tiers: tuple[MaintenanceTier, ...] | None) -> tuple[MaintenanceTier, ...]:
        """The symbol's leverage brackets (`tiers`: the cached ones, if any), cached an hour."""
        key = _brackets_key(symbol)
        if tiers is None:
            try:
                brackets = self.client.leverage_brackets(symbol)
                tiers = tiers_from_exchange(brackets[0]) if brackets else DEFAULT_TIERS
            except AsterError as exc:
                logger.warning("leverageBracket for %s unavailable (%s): using the default table", symbol, exc)
                return DEFAULT_TIERS
            SETUP.set(key, tiers, ttl=SETUP_TTL)
        return tuple(tiers)

    # ------------------------------------------------------------------ account set-up

    def _symbol_setup_key(self, symbol: str) -> str:
        return f"live:setup:{self.account.pk}:{symbol}"

    def ensure_setup(self, symbol: str, leverage: int) -> SetupClaim:
        """The account's margin type and the order's leverage on `symbol`, each set unless the
        venue already holds it, and held there until the order is answered (`release_setup`).

        What the venue holds is shared by every process (SYMBOL_SETUP: one round trip): a value
        another worker set since this one's last order is seen, never a stale memory of this
        process; and while this order is in flight on a value, no other worker changes it (an
        order that wants another value waits, then is refused SETUP_BUSY with nothing sent). The
        position mode is settled before the reserve step (pre_trade_data)."""
        key = self._symbol_setup_key(symbol)
        margin_type = str(self.account.margin_type)
        wanted = setup_value(margin_type, leverage)
        for _ in range(SETUP_BUSY_TRIES):
            claim = SYMBOL_SETUP.claim(key, wanted)
            if claim.status != BUSY:
                break
            self._sleep(SETUP_BUSY_WAIT)
        else:
            raise ExecutionError(
                f"{symbol}: another order is in flight at another margin type or leverage; not sent",
                code="SETUP_BUSY",
            )
        if claim.status == OK:
            return claim
        held_margin, _, held_leverage = claim.held.partition(":")
        try:
            if held_margin != margin_type:
                self._setup_step(lambda: self.client.set_margin_type(symbol, margin_type), what=f"{symbol} margin type")
            if held_leverage != str(leverage):
                self.client.set_leverage(symbol, leverage)
        except AsterError as exc:
            SYMBOL_SETUP.abandon(key)
            raise exchange_error(exc, what=f"account set-up for {symbol}") from exc
        except BaseException:
            SYMBOL_SETUP.abandon(key)
            raise
        SYMBOL_SETUP.settle(key, claim, wanted)
        return claim

    def release_setup(self, symbol: str, claim: SetupClaim) -> None:
        """After the answer: a failure to release must not hide the order's outcome (a fill not
        booked would leave the position unprotected); an unreleased claim lapses by itself."""
        try:
            SYMBOL_SETUP.release(self._symbol_setup_key(symbol), claim)
        except Exception:
            logger.warning(
                "account %s: %s set-up claim not released; it lapses", self.account.pk, symbol, exc_info=True
            )

    def _setup_step(self, step: Callable[[], None], *, what: str) -> None:
        try:
            step()
        except AsterInvalidRequest as exc:
            if exc.code not in SETUP_BLOCKED_CODES:
                raise
            logger.warning("account %s: %s left as it is (%s)", self.account.pk, what, exc)

    # ------------------------------------------------------------------ orders

    def execute_market_order(self, order: MarketOrder) -> Fill:
        claims: list[SetupClaim] = []

        def prepare() -> None:
            claims.append(self.ensure_setup(order.symbol, order.leverage))

        try:
            # Parity: paper's shadow of this fill, its book read started before the set-up and the
            # send (never fails the order; recorded after the protection, by the order service).
            fill = shadowed(self.account, order, self._send_market_order, now_ms=self.client.now_ms, prepare=prepare)
        except OrderOutcomeUnknown:
            # It may still execute at the venue on this set-up: the claim is left to lapse
            # (IN_FLIGHT_TTL) instead of letting another order change the leverage under it.
            raise
        except BaseException:
            for claim in claims:
                self.release_setup(order.symbol, claim)
            raise
        for claim in claims:
            self.release_setup(order.symbol, claim)
        return fill

    def _send_market_order(self, order: MarketOrder) -> Fill:
        def send() -> OrderResult:
            return self.client.new_order(
                symbol=order.symbol,
                side=order.side,
                type="MARKET",
                quantity=order.quantity,
                client_order_id=order.client_order_id,
                reduce_only=True if order.reduce_only else None,
                response_type="RESULT",
            )

        try:
            # A close (reduce-only) waits out a short rate limit; an entry is refused at once.
            result = self._waiting_out_short_limits(send) if order.reduce_only else send()
        except AsterError as exc:
            self.forget_balance()
            if exc.code in SETUP_DRIFT_CODES:  # the venue account is not set up as remembered
                self.forget_setup(order.symbol)
            raise exchange_error(exc, what=f"MARKET {order.side} {order.quantity} {order.symbol}") from exc
        settled = self._settled(remote_order(result))
        if settled.is_open:
            # Accepted and not settled yet: it may still fill. Not a rejection: resolve by client id.
            raise OrderOutcomeUnknown(
                f"{order.client_order_id} was accepted ({settled.status}) but has not settled",
                details={"client_order_id": order.client_order_id, "status": settled.status},
            )
        fill = self.fill_of(settled)
        if fill is None:
            raise ExchangeRejected(
                f"the exchange did not fill {order.client_order_id} (status {settled.status})",
                code="EXCHANGE_NOT_FILLED",
                details={"status": settled.status},
            )
        return fill

    def _settled(self, order: RemoteOrder) -> RemoteOrder:
        """A MARKET order answered NEW (ACK semantics) is polled until it settles."""
        for delay in FILL_POLLS:
            if not order.is_open:
                return order
            self._sleep(delay)
            try:
                order = remote_order(self.client.query_order(order.symbol, client_order_id=order.client_order_id))
            except AsterError as exc:  # the venue accepted it: a failed poll leaves its outcome unknown
                raise OrderOutcomeUnknown(
                    f"{order.client_order_id} was accepted; polling it failed: {exc}",
                    details={"client_order_id": order.client_order_id},
                ) from exc
        return order

    def fill_of(self, order: RemoteOrder) -> Fill | None:
        """The fill an exchange order reports (None when nothing executed)."""
        if order.executed_quantity <= 0:
            return None
        price = order.average_price if order.average_price > 0 else order.quote_quantity / order.executed_quantity
        return Fill(
            quantity=order.executed_quantity,
            price=price,
            fee=self._commission(order, price),
            exchange_order_id=order.exchange_order_id,
        )

    def _commission(self, order: RemoteOrder, price: Decimal) -> Decimal:
        """The order's commission from userTrades; an estimate at the taker rate if unavailable."""
        try:
            start = max(order.update_time_ms - 60_000, 0) if order.update_time_ms else None
            trades = self.client.user_trades(order.symbol, start_time_ms=start, limit=100)
        except AsterError as exc:
            logger.warning("userTrades unavailable for order %s (%s): fee estimated", order.exchange_order_id, exc)
            trades = []
        mine = [t for t in trades if str(t.order_id) == order.exchange_order_id]
        if mine:
            return q(sum((abs(t.commission) for t in mine), Decimal("0")))
        return q(order.executed_quantity * price * settings.PAPER_TAKER_FEE_RATE)

    def lookup_order(self, *, symbol: str, client_order_id: str) -> RemoteOrder | None:
        """The exchange's view of an order by client id; None when it does not know it."""
        try:
            return remote_order(self.client.query_order(symbol, client_order_id=client_order_id))
        except AsterInvalidRequest as exc:
            if exc.code in GONE_CODES:
                return None
            raise exchange_error(exc, what="order query") from exc
        except AsterError as exc:
            raise exchange_error(exc, what="order query") from exc

    # ------------------------------------------------------------------ protective orders

    def _waiting_out_short_limits(self, call: Callable[[], T]) -> T:
        """Protection and its rollback must not give up on a short rate limit: wait until the
        venue's Retry-After (at most EXECUTION_RATE_LIMIT_MAX_WAIT_SECONDS in all, and a few
        tries) and send the same request again. A 429/418 means it was not processed, so the
        same client order id goes again; a longer ban is raised to the caller."""
        deadline = time.time() + settings.EXECUTION_RATE_LIMIT_MAX_WAIT_SECONDS
        for attempt in range(RATE_LIMIT_TRIES):
            try:
                return call()
            except AsterRateLimited as exc:
                if attempt + 1 == RATE_LIMIT_TRIES or exc.retry_at > deadline:
                    raise
                logger.warning("account %s: rate limited (%s); waiting until the venue allows it", self.account.pk, exc)
                self._sleep(max(exc.retry_at - time.time(), 0.05))
        raise AssertionError("unreachable")

    def place_protective_orders(self, requests: Sequence[ProtectiveOrderRequest]) -> list[ProtectiveOrderAck]:
        """Every leg is sent, in order, even after one is refused (a refused take-profit must not
        cost the stop); then ProtectionFailed names what was placed and what was refused."""
        acks: list[ProtectiveOrderAck] = []
        refused: list[tuple[ProtectiveOrderRequest, AsterError]] = []
        for request in requests:
            try:
                result = self._waiting_out_short_limits(
                    lambda request=request: self.client.new_order(  # type: ignore[misc]
                        symbol=request.symbol,
                        side=request.side,
                        type="TAKE_PROFIT_MARKET" if request.kind == PendingOrderKind.TAKE_PROFIT else "STOP_MARKET",
                        stop_price=request.trigger_price,
                        close_position=True if request.quantity is None else None,
                        quantity=request.quantity,
                        reduce_only=True if request.quantity is not None else None,
                        working_type=request.working_type,
                        client_order_id=request.client_order_id,
                        response_type="ACK",
                    )
                )
            except AsterError as exc:
                refused.append((request, exc))
                continue
            acks.append(
                ProtectiveOrderAck(client_order_id=request.client_order_id, exchange_order_id=str(result.order_id))
            )
        if refused:
            first, first_error = refused[0]
            raise ProtectionFailed(
                "; ".join(f"{r.kind} at {r.trigger_price} refused: {e}" for r, e in refused),
                details={
                    "placed": [a.client_order_id for a in acks],
                    "acks": {a.client_order_id: a.exchange_order_id for a in acks},
                    "failed": first.client_order_id,
                    "refused": {r.client_order_id: e.code for r, e in refused},
                    "exchange_code": first_error.code,
                    "unknown": any(isinstance(e, AsterOutcomeUnknown) for _, e in refused),
                    "unknown_ids": [r.client_order_id for r, e in refused if isinstance(e, AsterOutcomeUnknown)],
                },
            ) from first_error
        return acks

    def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        try:
            self._waiting_out_short_limits(lambda: self.client.cancel_order(symbol, client_order_id=client_order_id))
        except AsterInvalidRequest as exc:
            if exc.code not in GONE_CODES:  # already filled, cancelled or expired: nothing to cancel
                raise exchange_error(exc, what=f"cancel {client_order_id}") from exc
        except AsterError as exc:
            raise exchange_error(exc, what=f"cancel {client_order_id}") from exc

    def open_orders(self) -> list[RemoteOrder]:
        try:
            return [remote_order(result) for result in self.client.open_orders()]
        except AsterError as exc:
            raise exchange_error(exc, what="open orders") from exc

    def fetch_positions(self) -> list[RemotePosition]:
        try:
            rows = self.client.position_risk()
        except AsterError as exc:
            raise exchange_error(exc, what="positionRisk") from exc
        return [
            RemotePosition(
                symbol=row.symbol,
                side="LONG" if row.position_amt > 0 else "SHORT",
                quantity=abs(row.position_amt),
                entry_price=row.entry_price,
                leverage=row.leverage,
                mark_price=row.mark_price,
                unrealized_pnl=row.unrealized_profit,
                liquidation_price=row.liquidation_price or None,
                position_side=row.position_side,
            )
            for row in rows
            if row.position_amt != 0
        ]

    def trades_since(self, symbol: str, *, start_time_ms: int) -> list[RemoteTrade]:
        try:
            trades = self.client.user_trades(symbol, start_time_ms=start_time_ms, limit=1000)
        except AsterError as exc:
            raise exchange_error(exc, what="userTrades") from exc
        return [
            RemoteTrade(
                symbol=t.symbol,
                exchange_order_id=str(t.order_id),
                side=t.side,
                quantity=t.qty,
                price=t.price,
                commission=abs(t.commission),
            )
            for t in trades
        ]

    @property
    def requests_sent(self) -> int:
        return self.client.requests_sent

    @property
    def submission_window_seconds(self) -> float:
        """V1: recvWindow plus the second a timestamp may run ahead; V3: the nonce's freshness,
        10 s by the API reference, 30 s by another page of the docs (the larger is taken)."""
        if self.account.api_version == "v1":
            return float(settings.ASTER_RECV_WINDOW_MS) / 1000 + 1.0
        return V3_NONCE_WINDOW_SECONDS


def remote_order(result: OrderResult) -> RemoteOrder:
    return RemoteOrder(
        symbol=result.symbol,
        client_order_id=result.client_order_id,
        exchange_order_id=str(result.order_id),
        side=result.side,
        type=result.type,
        status=result.status,
        executed_quantity=result.executed_qty,
        average_price=result.avg_price,
        quote_quantity=result.cum_quote,
        stop_price=result.stop_price,
        close_position=result.close_position,
        reduce_only=result.reduce_only,
        update_time_ms=result.update_time_ms,
    )
