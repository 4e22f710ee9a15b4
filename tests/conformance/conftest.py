"""The conformance suite: the simulator measured against ../shared/ASTER_API.md and ASTER_WS.md.

Written from the documents, not from the simulator's code: requests are built and signed here as
the documents say (V1: HMAC-SHA256 over the exact query string, §7a; V3: EIP-712 over the query
string with nonce/user/signer, §7b), and replies are checked for the documented field names and
JSON types. Where the documents leave a behaviour open, the test says so in a line starting
"ASSUMPTION:" and carries the `assumption` marker.

One simulator serves the whole suite (no database): it runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_typed_data

from execution.aster.simulator.server import AsterSimulator

# The credentials the documents publish (ASTER_API.md §9a and §9b): public test vectors.
V1_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
V1_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
V3_USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"
V3_SIGNER = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0"
V3_KEY = "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1"
CHAIN_ID = 1666


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> int | str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


_NONCES = itertools.count(int(time.time() * 1_000_000))


def hmac_signed(params: list[tuple[str, str]], secret: str = V1_SECRET) -> str:
    """§7a: timestamp added, HMAC-SHA256 of the query string, `signature` appended last."""
    query = urlencode(params)
    return f"{query}&signature={hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()}"


def eip712_signed(params: list[tuple[str, str]], key: str = V3_KEY) -> str:
    """§7b: nonce (µs), user and signer added; EIP-712 Message(string msg) over the query string."""
    query = urlencode(params)
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Message": [{"name": "msg", "type": "string"}],
        },
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": CHAIN_ID,
            "verifyingContract": "0x0000000000000000000000000000000000000000",
        },
        "message": {"msg": query},
    }
    signature = Account.sign_message(encode_typed_data(full_message=typed), private_key=key).signature.hex()
    return f"{query}&signature={signature if signature.startswith('0x') else '0x' + signature}"


class Venue:
    """Raw HTTP to the simulator: public, V1-signed and V3-signed requests, built per the docs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def _send(self, method: str, path: str, query: str, headers: dict[str, str] | None = None) -> Reply:
        # GET/DELETE: the query string; POST/PUT: a form body (§1 "Param encoding").
        if method in ("POST", "PUT"):
            headers = {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
            response = self.session.request(method, self.url + path, data=query, headers=headers, timeout=10)
        else:
            target = f"{self.url}{path}?{query}" if query else self.url + path
            response = self.session.request(method, target, headers=headers, timeout=10)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Reply(response.status_code, body, dict(response.headers))

    def public(self, method: str, path: str, **params: Any) -> Reply:
        return self._send(method, path, urlencode([(k, str(v)) for k, v in params.items()]))

    def v1(
        self, method: str, path: str, *, timestamp: int | None = None, secret: str = V1_SECRET, **params: Any
    ) -> Reply:
        pairs = [(k, _wire(v)) for k, v in params.items()]
        pairs.append(("timestamp", str(timestamp if timestamp is not None else int(time.time() * 1000))))
        return self._send(method, path, hmac_signed(pairs, secret), {"X-MBX-APIKEY": V1_KEY})

    def v3(self, method: str, path: str, *, nonce: int | None = None, key: str = V3_KEY, **params: Any) -> Reply:
        pairs = [(k, _wire(v)) for k, v in params.items()]
        pairs += [
            ("nonce", str(nonce if nonce is not None else next_nonce())),
            ("user", V3_USER),
            ("signer", V3_SIGNER),
        ]
        return self._send(method, path, eip712_signed(pairs, key))

    def signed(self, version: str, method: str, path: str, **params: Any) -> Reply:
        """`path` without its prefix, e.g. "order": V1 under /fapi/v1 (v2 for positionRisk and
        balance, §4), V3 under /fapi/v3."""
        if version == "v3":
            return self.v3(method, f"/fapi/v3/{path}", **params)
        prefix = "v2" if path in ("positionRisk", "balance") else "v1"
        return self.v1(method, f"/fapi/{prefix}/{path}", **params)


def next_nonce() -> int:
    """Strictly increasing microseconds, never behind the clock (§7b step 2)."""
    global _NONCES
    candidate = next(_NONCES)
    now = int(time.time() * 1_000_000)
    if candidate < now:
        _NONCES = itertools.count(now + 1)
        return now
    return candidate


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@pytest.fixture(scope="session")
def simulator() -> Iterator[AsterSimulator]:
    from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3

    with AsterSimulator(seed=13) as sim:
        sim.exchange.add_account(**DEMO_V1)
        sim.exchange.add_account(**DEMO_V3)
        yield sim


@pytest.fixture(scope="session")
def venue(simulator: AsterSimulator) -> Venue:
    return Venue(simulator.url)


@pytest.fixture(params=["v1", "v3"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def flat(simulator: AsterSimulator) -> Iterator[None]:
    """Both demo accounts flat, one-way, single-asset, no open orders, before and after a test."""

    def reset() -> None:
        with simulator.exchange.lock:
            for account in simulator.exchange.accounts.values():
                account.positions.clear()
                account.hedge_positions.clear()
                account.hedge_mode = account.multi_assets = False
                account.countdowns.clear()
                account.margin_type.clear()
                for order in account.orders.values():
                    if order.is_open:
                        order.status = "CANCELED"
            for symbol, price in (("BTCUSDT", "65000"), ("ETHUSDT", "3500")):
                simulator.exchange.set_price(symbol, Decimal(price))

    reset()
    yield
    reset()


# ---------------------------------------------------------------- shape assertions


def is_decimal_string(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        float(value)
    except ValueError:
        return False
    return "e" not in value.lower()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def assert_shape(
    obj: Any,
    *,
    strings: tuple[str, ...] = (),
    decimals: tuple[str, ...] = (),
    ints: tuple[str, ...] = (),
    bools: tuple[str, ...] = (),
    numbers: tuple[str, ...] = (),
) -> None:
    """Every named field is present with its documented JSON type."""
    assert isinstance(obj, dict), obj
    for name in strings:
        assert isinstance(obj.get(name), str), (name, obj.get(name))
    for name in decimals:
        assert is_decimal_string(obj.get(name)), (name, obj.get(name))
    for name in ints:
        assert is_int(obj.get(name)), (name, obj.get(name))
    for name in bools:
        assert isinstance(obj.get(name), bool), (name, obj.get(name))
    for name in numbers:
        assert isinstance(obj.get(name), int | float) and not isinstance(obj.get(name), bool), (name, obj.get(name))
