"""The adapter interface: a transport between the execution service and a venue.

Adapters move orders and read state; they do not touch the database's order state.
ExecutionService owns validation, reservation and applying results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from accounts.models import Account
from execution.services.brackets import default_tiers
from execution.services.position_math import MaintenanceTier


@dataclass(frozen=True)
class MarketOrder:
    symbol: str
    side: str  # BUY or SELL
    quantity: Decimal
    client_order_id: str
    leverage: int
    reduce_only: bool = False


@dataclass(frozen=True)
class Fill:
    """What a market order did: executed quantity, average price, fee."""

    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str = "USDT"
    exchange_order_id: str = ""
    realized_pnl: Decimal | None = None  # as the venue reports it, when it does


@dataclass(frozen=True)
class ProtectiveOrderRequest:
    symbol: str
    kind: str  # take_profit or stop_loss
    side: str  # the side that closes the position
    trigger_price: Decimal
    working_type: str
    client_order_id: str
    quantity: Decimal | None = None  # None: close the whole position


@dataclass(frozen=True)
class ProtectiveOrderAck:
    client_order_id: str
    exchange_order_id: str = ""


@dataclass(frozen=True)
class RemotePosition:
    symbol: str
    side: str  # LONG or SHORT
    quantity: Decimal  # absolute
    entry_price: Decimal
    leverage: int
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    liquidation_price: Decimal | None = None
    position_side: str = "BOTH"  # the venue's positionSide: BOTH in one-way mode, LONG/SHORT in hedge mode


@dataclass(frozen=True)
class RemoteOrder:
    """An order as the venue reports it (by client id, or among the open orders)."""

    symbol: str
    client_order_id: str
    exchange_order_id: str
    side: str
    type: str
    status: str  # the venue's: NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, ...
    executed_quantity: Decimal = Decimal("0")
    average_price: Decimal = Decimal("0")
    quote_quantity: Decimal = Decimal("0")
    stop_price: Decimal = Decimal("0")
    close_position: bool = False
    reduce_only: bool = False
    update_time_ms: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def is_protective(self) -> bool:
        """A reduce-only or close-position order: it can only shrink a position."""
        return self.close_position or self.reduce_only


@dataclass(frozen=True)
class RemoteTrade:
    """One execution of the account's, as the venue reports it."""

    symbol: str
    exchange_order_id: str
    side: str
    quantity: Decimal
    price: Decimal
    commission: Decimal


@dataclass(frozen=True)
class PreTradeData:
    """What the risk checks need from the venue, fetched before the reserve transaction.

    available_balance None means: use the paper wallet.
    """

    available_balance: Decimal | None
    tiers: tuple[MaintenanceTier, ...]
    # When the venue's balance was read: the service's fills booked since are not in it yet.
    balance_as_of: datetime | None = None
    # Why the venue account's mode cannot be traded (hedge mode that would not switch to one-way,
    # Multi-Assets mode against isolated margin); None when it can. A policy check refuses on it.
    account_mode_refusal: AccountModeRefusal | None = None


@dataclass(frozen=True)
class AccountModeRefusal:
    """The venue account is in a mode the service does not trade, and could not be switched."""

    message: str
    mode: str  # "hedge" or "multi_assets"
    exchange_code: int | None = None
    exchange_msg: str = ""


class PreparedFill(Protocol):
    """A fill worked out locally from data read beforehand (`ExecutionAdapter.prepare_fill`)."""

    def fill(self, order: MarketOrder) -> Fill:
        """The order's fill; raises ExecutionError (e.g. InsufficientLiquidity) as the adapter would."""
        ...


class ExecutionAdapter(ABC):
    mode: str = ""
    # False: no venue holds orders (paper), so no leg ever rests there to be cancelled after a
    # close, and the order path need not look for one.
    has_venue: bool = True

    def __init__(self, account: Account) -> None:
        self.account = account

    def pre_trade_data(self, symbol: str) -> PreTradeData:
        return PreTradeData(available_balance=None, tiers=default_tiers())

    def prepare_fill(self, *, symbol: str, side: str, quantity: Decimal) -> PreparedFill | None:
        """What a venue-less adapter needs to fill an order of at most `quantity` without a
        network call (paper: the order book), read before any transaction; then the order path
        reserves, fills and books in ONE transaction. None (a venue): the order is sent."""
        return None

    @abstractmethod
    def execute_market_order(self, order: MarketOrder) -> Fill:
        """Execute a market order and report its fill."""

    @abstractmethod
    def place_protective_orders(self, requests: Sequence[ProtectiveOrderRequest]) -> list[ProtectiveOrderAck]:
        """Place TP/SL orders; acks come back in request order."""

    @abstractmethod
    def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        """Cancel one order by client id. Cancelling an order that is already gone is not an error."""

    @abstractmethod
    def lookup_order(self, *, symbol: str, client_order_id: str) -> RemoteOrder | None:
        """The venue's view of one order by client id; None when the venue does not know it."""

    @abstractmethod
    def fill_of(self, order: RemoteOrder) -> Fill | None:
        """What a (settled) order executed, fee included; None when nothing executed."""

    @abstractmethod
    def open_orders(self) -> list[RemoteOrder]:
        """The account's orders resting on the venue."""

    @abstractmethod
    def fetch_positions(self) -> list[RemotePosition]:
        """The venue's open positions for this account."""

    @abstractmethod
    def trades_since(self, symbol: str, *, start_time_ms: int) -> list[RemoteTrade]:
        """The account's executions in `symbol` since a time (oldest first)."""

    @property
    def submission_window_seconds(self) -> float:
        """How long after an order is signed the venue may still accept it (0: no venue)."""
        return 0.0

    @property
    def requests_sent(self) -> int:
        """Requests this adapter has sent to the venue (0 for a venue-less adapter)."""
        return 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} account={self.account.pk}>"
