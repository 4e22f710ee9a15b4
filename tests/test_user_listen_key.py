"""listenKey create / keepalive / close: V1 with the API-key header only, V3 EIP-712 signed;
-1125 is a distinct error; no secret in errors."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from execution.aster.client import AsterClient
from execution.aster.errors import AsterInputError, AsterInvalidListenKey, AsterInvalidRequest, AsterResponseError
from execution.aster.signing import recover_signer, v1_credentials, v3_credentials
from tests.factories import DEMO_V1_API_KEY, DEMO_V1_API_SECRET, DEMO_V3_PRIVATE_KEY, DEMO_V3_SIGNER, DEMO_V3_USER

BASE = "https://fapi.example"
KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


@pytest.fixture
def v1() -> AsterClient:
    return AsterClient(BASE, v1_credentials(DEMO_V1_API_KEY, DEMO_V1_API_SECRET))


@pytest.fixture
def v3() -> AsterClient:
    return AsterClient(BASE, v3_credentials(user=DEMO_V3_USER, signer=DEMO_V3_SIGNER, private_key=DEMO_V3_PRIVATE_KEY))


def body_of(call: responses.Call) -> str:
    body = call.request.body or urlsplit(call.request.url).query
    return body.decode() if isinstance(body, bytes) else body or ""


@responses.activate
@pytest.mark.parametrize(("method", "action"), [("POST", "create"), ("PUT", "keepalive"), ("DELETE", "close")])
def test_v1_sends_the_api_key_header_only(v1: AsterClient, method: str, action: str) -> None:
    reply = {"listenKey": KEY} if method == "POST" else {}
    responses.add(method, f"{BASE}/fapi/v1/listenKey", json=reply)
    result = getattr(v1, f"{action}_listen_key")()
    assert result == (KEY if method == "POST" else None)
    (call,) = responses.calls
    assert call.request.method == method
    assert urlsplit(call.request.url).path == "/fapi/v1/listenKey"
    assert call.request.headers["X-MBX-APIKEY"] == DEMO_V1_API_KEY
    sent = body_of(call)
    assert "signature" not in sent and "timestamp" not in sent and sent == ""


@responses.activate
@pytest.mark.parametrize(("method", "action"), [("POST", "create"), ("PUT", "keepalive"), ("DELETE", "close")])
def test_v3_is_signed_like_every_v3_call(v3: AsterClient, method: str, action: str) -> None:
    reply = {"listenKey": KEY} if method == "POST" else {}
    responses.add(method, f"{BASE}/fapi/v3/listenKey", json=reply)
    getattr(v3, f"{action}_listen_key")()
    (call,) = responses.calls
    assert urlsplit(call.request.url).path == "/fapi/v3/listenKey"
    assert "X-MBX-APIKEY" not in call.request.headers
    sent = body_of(call)
    signed_part, signature = sent.rsplit("&signature=", 1)
    params = dict(parse_qsl(signed_part))
    assert set(params) == {"nonce", "user", "signer"}
    assert params["user"] == DEMO_V3_USER and params["signer"] == DEMO_V3_SIGNER
    assert recover_signer(signed_part, signature, 1666) == DEMO_V3_SIGNER
    if method in ("POST", "PUT"):
        assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"


@responses.activate
@pytest.mark.parametrize("client_name", ["v1", "v3"])
def test_invalid_listen_key_is_a_distinct_error(request: pytest.FixtureRequest, client_name: str, caplog) -> None:
    client: AsterClient = request.getfixturevalue(client_name)
    prefix = "/fapi/v1" if client_name == "v1" else "/fapi/v3"
    responses.put(
        f"{BASE}{prefix}/listenKey", status=400, json={"code": -1125, "msg": "This listenKey does not exist."}
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AsterInvalidListenKey) as caught:
        client.keepalive_listen_key()
    assert isinstance(caught.value, AsterInvalidRequest)
    assert caught.value.code == -1125 and caught.value.code_name == "INVALID_LISTEN_KEY"
    for text in (str(caught.value), repr(caught.value), caplog.text, repr(client)):
        assert DEMO_V1_API_SECRET not in text and DEMO_V1_API_KEY not in text
        assert DEMO_V3_PRIVATE_KEY.removeprefix("0x") not in text


@responses.activate
def test_close_tolerates_a_key_already_gone_but_not_other_refusals(v1: AsterClient) -> None:
    responses.delete(f"{BASE}/fapi/v1/listenKey", status=400, json={"code": -1125, "msg": "gone"})
    v1.close_listen_key()
    responses.replace(responses.DELETE, f"{BASE}/fapi/v1/listenKey", status=401, json={"code": -2015, "msg": "no"})
    with pytest.raises(AsterInvalidRequest) as caught:
        v1.close_listen_key()
    assert not isinstance(caught.value, AsterInvalidListenKey)


@responses.activate
@pytest.mark.parametrize("reply", [{}, {"listenKey": ""}, {"listenKey": "a/b?c"}, [KEY]])
def test_create_refuses_a_reply_without_a_usable_key(v1: AsterClient, reply: object) -> None:
    responses.post(f"{BASE}/fapi/v1/listenKey", json=reply)
    with pytest.raises(AsterResponseError, match="no usable listenKey"):
        v1.create_listen_key()


def test_public_client_has_no_listen_key_and_urls_are_checked(v1: AsterClient) -> None:
    with pytest.raises(AsterInputError, match="credentials"):
        AsterClient(BASE).create_listen_key()
    assert v1.user_stream_url("ws://127.0.0.1:9/", KEY) == f"ws://127.0.0.1:9/ws/{KEY}"
    with pytest.raises(AsterInputError):
        v1.user_stream_url("ws://h", "../etc")
    with pytest.raises(AsterInputError):
        v1.user_stream_url("http://h", KEY)
