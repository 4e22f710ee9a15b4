"""The simulator's faults: switches that hit every request, and rules aimed at one endpoint.

Switches (`Faults` fields) apply to whatever request comes next. Rules (`Faults.aim`, or
`POST /_sim/faults {"aim": {...}}`) hit only the requests they match: an HTTP method and a path,
and for requests about one order (placing, cancelling or querying it) optionally the order's
type, reduce-only / close-position flags and client id. Each rule hits `count` matching requests,
then is removed.

Kinds of rules:
- `503_after_accept`: the request is carried out, the reply is HTTP 503 -1007 (outcome unknown);
- `drop_after_accept`: the request is carried out, then the connection is closed with no reply;
- `read_timeout`: the request is carried out, the reply waits `seconds` (longer than the client's
  read timeout) before it is sent;
- `429`: refused, rate limited, with `Retry-After: seconds`;
- `418`: refused, the IP banned for `seconds` ("IP banned until <ms>"): every request until then
  gets 418 too;
- `-1021`, `-2019`, `-1111`, `-4164`, `-2021`: refused with that error (HTTP 400), nothing done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from typing import Any

AFTER_ACCEPT_KINDS = ("503_after_accept", "drop_after_accept", "read_timeout")
RATE_LIMIT_KINDS = ("429", "418")
ERROR_REPLIES: dict[str, tuple[int, str]] = {
    "-1021": (-1021, "Timestamp for this request is outside of the recvWindow."),
    "-2019": (-2019, "Margin is insufficient."),
    "-1111": (-1111, "Precision is over the maximum defined for this asset."),
    "-4164": (-4164, "Order's notional must be no smaller than 5.0 (unless you choose reduce only)"),
    "-2021": (-2021, "Order would immediately trigger."),
}
FAULT_KINDS = (*AFTER_ACCEPT_KINDS, *RATE_LIMIT_KINDS, *ERROR_REPLIES)
METHODS = ("GET", "POST", "PUT", "DELETE", "*")
ORDER_TYPES = ("MARKET", "LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET")
DEFAULT_BAN_SECONDS = 1.0
DEFAULT_READ_TIMEOUT_SECONDS = 12.0  # longer than the client's default read timeout (10 s)


@dataclass(frozen=True)
class OrderFacts:
    """What a request says about the order it is about (placed, or named by id for a cancel/query)."""

    type: str | None = None
    reduce_only: bool | None = None
    close_position: bool | None = None
    client_order_id: str | None = None


@dataclass
class FaultRule:
    """One aimed fault. `path` is "*" (any path), an exact path ("/fapi/v1/order"), or an endpoint
    name without the API version ("order": /fapi/v1/order and /fapi/v3/order). `seconds`: the
    read_timeout's wait, the 429's Retry-After or the 418's ban (defaults: see Faults)."""

    kind: str
    method: str = "POST"
    path: str = "order"
    order_type: str | None = None
    reduce_only: bool | None = None
    close_position: bool | None = None
    client_order_id: str | None = None  # a glob: "*-sl"
    count: int = 1
    seconds: float | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        self.kind = str(self.kind)
        self.method = str(self.method).upper()
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; one of {', '.join(METHODS)}")
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise ValueError(f"count must be a positive integer, got {self.count!r}")
        if self.order_type is not None and self.order_type not in ORDER_TYPES:
            raise ValueError(f"unknown order type {self.order_type!r}; one of {', '.join(ORDER_TYPES)}")
        for name in ("reduce_only", "close_position"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"{name} must be true, false or null")
        if self.seconds is not None:
            self.seconds = float(self.seconds)
            if self.seconds < 0:
                raise ValueError(f"seconds must be >= 0, got {self.seconds}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        names = {f.name for f in fields(cls)} - {"hits"}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("a fault rule needs a kind")
        return cls(**data)

    @property
    def filters_orders(self) -> bool:
        filters = (self.order_type, self.reduce_only, self.close_position, self.client_order_id)
        return any(value is not None for value in filters)

    def matches(self, method: str, path: str, order: OrderFacts | None) -> bool:
        if self.method not in ("*", method) or not _path_matches(self.path, path):
            return False
        if not self.filters_orders:
            return True
        if order is None:
            return False
        return (
            (self.order_type is None or order.type == self.order_type)
            and (self.reduce_only is None or bool(order.reduce_only) == self.reduce_only)
            and (self.close_position is None or bool(order.close_position) == self.close_position)
            and (
                self.client_order_id is None
                or (order.client_order_id is not None and fnmatchcase(order.client_order_id, self.client_order_id))
            )
        )


def _path_matches(pattern: str, path: str) -> bool:
    if pattern in ("*", path):
        return True
    if pattern.startswith("/"):
        return False
    # "/fapi/v1/order" -> "order"; "/fapi/v2/positionRisk" -> "positionRisk"
    parts = path.split("/", 3)
    return len(parts) == 4 and parts[1] == "fapi" and parts[3] == pattern


@dataclass
class Faults:
    """Switchable at run time (POST /_sim/faults or attribute assignment). Counters count down.

    The switches hit every request; `rules` (see `aim`) hit the requests they are aimed at."""

    latency_ms: int = 0
    order_503_after_accept: int = 0
    order_drop_after_accept: int = 0
    rate_limit_next: int = 0
    drop_next: int = 0
    ban_seconds: float = 0.0
    retry_after_seconds: int = 1
    cancel_error: int = 0  # the next cancels answer HTTP 500 (-1001) and cancel nothing
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS  # a read_timeout rule's wait, unless it sets one
    rules: list[FaultRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rules_lock = threading.Lock()  # not a field: asdict() leaves it out

    def take(self, name: str, lock: threading.Lock) -> bool:
        with lock:
            value = getattr(self, name)
            if value > 0:
                setattr(self, name, value - 1)
                return True
            return False

    def aim(
        self,
        kind: str,
        *,
        method: str = "POST",
        path: str = "order",
        order_type: str | None = None,
        reduce_only: bool | None = None,
        close_position: bool | None = None,
        client_order_id: str | None = None,
        count: int = 1,
        seconds: float | None = None,
    ) -> FaultRule:
        """Add a rule: `kind` hits the next `count` requests that match the rest."""
        return self.add_rule(
            FaultRule(
                kind=kind,
                method=method,
                path=path,
                order_type=order_type,
                reduce_only=reduce_only,
                close_position=close_position,
                client_order_id=client_order_id,
                count=count,
                seconds=seconds,
            )
        )

    def add_rule(self, rule: FaultRule) -> FaultRule:
        with self._rules_lock:
            self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._rules_lock:
            self.rules.clear()

    def take_rule(self, method: str, path: str, order: OrderFacts | None) -> FaultRule | None:
        """The first rule that matches this request, counted down (and removed when spent)."""
        with self._rules_lock:
            for rule in self.rules:
                if rule.count > 0 and rule.matches(method, path, order):
                    rule.count -= 1
                    rule.hits += 1
                    if rule.count == 0:
                        self.rules.remove(rule)
                    return rule
        return None

    def needs_order_facts(self, method: str, path: str) -> bool:
        """Whether some rule for this request filters on the order (worth looking the order up)."""
        with self._rules_lock:
            return any(
                rule.filters_orders and rule.method in ("*", method) and _path_matches(rule.path, path)
                for rule in self.rules
            )

    def has_rules(self) -> bool:
        return bool(self.rules)
