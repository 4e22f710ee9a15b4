"""Signatures and nonces (ASTER_API.md §7, §8, §9): what the venue accepts and refuses."""

import hashlib
import hmac
import time
from urllib.parse import urlencode

import pytest

from tests.conformance.conftest import V1_KEY, V1_SECRET, eip712_signed, hmac_signed, next_nonce

# Every signed route, by its V1 path; §0.1: the V3 generation serves each under /fapi/v3/.
SIGNED_ROUTES = [
    ("POST", "/fapi/v1/order"),
    ("GET", "/fapi/v1/order"),
    ("DELETE", "/fapi/v1/order"),
    ("GET", "/fapi/v1/openOrder"),
    ("GET", "/fapi/v1/openOrders"),
    ("GET", "/fapi/v1/allOrders"),
    ("DELETE", "/fapi/v1/allOpenOrders"),
    ("POST", "/fapi/v1/batchOrders"),
    ("DELETE", "/fapi/v1/batchOrders"),
    ("POST", "/fapi/v1/countdownCancelAll"),
    ("GET", "/fapi/v2/positionRisk"),
    ("GET", "/fapi/v2/balance"),
    ("GET", "/fapi/v1/userTrades"),
    ("GET", "/fapi/v1/income"),
    ("POST", "/fapi/v1/leverage"),
    ("POST", "/fapi/v1/marginType"),
    ("POST", "/fapi/v1/positionMargin"),
    ("GET", "/fapi/v1/positionSide/dual"),
    ("POST", "/fapi/v1/positionSide/dual"),
    ("GET", "/fapi/v1/multiAssetsMargin"),
    ("POST", "/fapi/v1/multiAssetsMargin"),
    ("GET", "/fapi/v1/leverageBracket"),
    ("GET", "/fapi/v1/commissionRate"),
]


def v3_path(path: str) -> str:
    return "/fapi/v3/" + path.split("/", 3)[3]


def test_the_published_hmac_vector():
    message = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
    digest = hmac.new(V1_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert digest == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"  # §9a


@pytest.mark.parametrize(("method", "path"), SIGNED_ROUTES)
def test_every_signed_route_refuses_an_unsigned_request_on_both_generations(venue, method, path):
    for target in (path, v3_path(path)):
        reply = venue._send(method, target, urlencode([("symbol", "BTCUSDT")]), {"X-MBX-APIKEY": V1_KEY})
        assert reply.status in (400, 401) and reply.code != -1000, (target, reply.body)  # served, and refused


@pytest.mark.parametrize(
    ("method", "path"), [r for r in SIGNED_ROUTES if r[0] == "GET" and "order" not in r[1].lower()]
)
def test_every_signed_read_answers_v1_and_v3(venue, method, path):
    params = {"symbol": "BTCUSDT"} if path.endswith(("userTrades", "commissionRate")) else {}
    assert venue.v1(method, path, **params).status == 200
    assert venue.v3(method, v3_path(path), **params).status == 200


# ---------------------------------------------------------------- V1 (§7a)


def test_v1_bad_signature(venue):
    query = urlencode([("timestamp", str(int(time.time() * 1000)))])
    reply = venue._send("GET", "/fapi/v2/balance", f"{query}&signature={'0' * 64}", {"X-MBX-APIKEY": V1_KEY})
    assert reply.code == -1022


def test_v1_signature_is_case_insensitive(venue):
    signed = hmac_signed([("timestamp", str(int(time.time() * 1000)))])
    query, signature = signed.rsplit("&signature=", 1)
    reply = venue._send("GET", "/fapi/v2/balance", f"{query}&signature={signature.upper()}", {"X-MBX-APIKEY": V1_KEY})
    assert reply.status == 200


def test_v1_signature_over_query_and_body_concatenated(venue):
    """§7a step 3: totalParams = query string + body, with no `&` between them."""
    now = str(int(time.time() * 1000))
    query = "symbol=BTCUSDT&leverage=7"
    body = f"timestamp={now}"
    signature = hmac.new(V1_SECRET.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    response = venue.session.post(
        f"{venue.url}/fapi/v1/leverage?{query}",
        data=f"{body}&signature={signature}",
        headers={"X-MBX-APIKEY": V1_KEY, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["leverage"] == 7


def test_v1_timestamp_rules(venue):
    now = int(time.time() * 1000)
    assert venue.v1("GET", "/fapi/v2/balance", timestamp=now + 2000).code == -1021  # ≥ 1000 ms ahead
    assert venue.v1("GET", "/fapi/v2/balance", timestamp=now - 6000).code == -1021  # outside the 5000 ms default
    assert venue.v1("GET", "/fapi/v2/balance", timestamp=now - 6000, recvWindow=10000).status == 200
    assert venue.v1("GET", "/fapi/v2/balance", recvWindow=60001).status == 400  # "must not exceed 60 seconds"


def test_v1_unknown_api_key(venue):
    signed = hmac_signed([("timestamp", str(int(time.time() * 1000)))])
    reply = venue._send("GET", "/fapi/v2/balance", signed, {"X-MBX-APIKEY": "f" * 64})
    assert reply.code in (-2014, -2015)


# ---------------------------------------------------------------- V3 (§7b)


def test_v3_needs_no_timestamp_and_accepts_the_eip712_signature(venue):
    assert venue.v3("GET", "/fapi/v3/balance").status == 200


def test_v3_signature_by_another_key_is_refused(venue):
    other = "0x" + "11" * 32
    assert venue.v3("GET", "/fapi/v3/balance", key=other).code == -1022


def test_v3_signature_over_other_bytes_is_refused(venue):
    signed = eip712_signed([("nonce", str(next_nonce())), ("signer", "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0")])
    query, signature = signed.rsplit("&signature=", 1)
    tampered = query.replace("nonce=", "nonce=1", 1)
    assert venue._send("GET", "/fapi/v3/balance", f"{tampered}&signature={signature}").status in (400, 401)


@pytest.mark.assumption
def test_v3_nonce_rules(venue):
    """ASSUMPTION: a reused nonce is refused with -4225 like an expired one (the docs say
    "rejected as a duplicate" and show -4225 only for "Nonce Expired")."""
    nonce = next_nonce()
    assert venue.v3("GET", "/fapi/v3/balance", nonce=nonce).status == 200
    assert venue.v3("GET", "/fapi/v3/balance", nonce=nonce).code == -4225  # reused
    now_us = int(time.time() * 1_000_000)
    assert venue.v3("GET", "/fapi/v3/balance", nonce=now_us - 11_000_000).code == -4225  # older than 10 s
    assert venue.v3("GET", "/fapi/v3/balance", nonce=now_us + 11_000_000).code == -4225  # further than 10 s ahead


# ---------------------------------------------------------------- listenKey (ASTER_WS.md §2.1)


def test_v1_listen_key_with_the_api_key_header_only(venue):
    created = venue._send("POST", "/fapi/v1/listenKey", "", {"X-MBX-APIKEY": V1_KEY}).body
    assert isinstance(created["listenKey"], str) and len(created["listenKey"]) == 64
    again = venue._send("POST", "/fapi/v1/listenKey", "", {"X-MBX-APIKEY": V1_KEY}).body
    assert again["listenKey"] == created["listenKey"]  # the active key, extended (§2.2)
    assert venue._send("PUT", "/fapi/v1/listenKey", "", {"X-MBX-APIKEY": V1_KEY}).body == {}


def test_v3_listen_key_is_signed(venue):
    created = venue.v3("POST", "/fapi/v3/listenKey").body
    assert len(created["listenKey"]) == 64
    assert venue.v3("PUT", "/fapi/v3/listenKey").body == {}
    unsigned = venue._send("POST", "/fapi/v3/listenKey", "")
    assert unsigned.status in (400, 401)


def test_closed_listen_key_is_invalid(venue):
    venue.v3("POST", "/fapi/v3/listenKey")
    assert venue.v3("DELETE", "/fapi/v3/listenKey").body == {}
    assert venue.v3("PUT", "/fapi/v3/listenKey").code == -1125
