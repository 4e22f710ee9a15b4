"""Signing: the published HMAC vectors, and V3 EIP-712 recovered from what is actually sent."""

import threading
from urllib.parse import parse_qsl

import pytest
import responses
from eth_account import Account as EthAccount

from execution.aster.client import AsterClient
from execution.aster.signing import (
    MESSAGE_TYPEHASH,
    MicrosecondNonce,
    V1Signer,
    V3Signer,
    eip712_domain_separator,
    hmac_sha256_hex,
    recover_signer,
    signable_message,
    signable_message_via_typed_data,
    v1_credentials,
    v3_credentials,
)
from tests import aster_payloads as P
from tests.factories import DEMO_V1_API_KEY, DEMO_V1_API_SECRET, DEMO_V3_PRIVATE_KEY, DEMO_V3_SIGNER, DEMO_V3_USER

VECTOR_MESSAGE = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
)


@pytest.mark.parametrize(
    ("message", "signature"),
    [
        (VECTOR_MESSAGE, "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=9000&recvWindow=5000&timestamp= 1591702613943",
            "f9d0ae5e813ef6ccf15c2b5a434047a0181cb5a342b903b367ca6d27a66e36f2",
        ),
        (
            "symbol=BTCUSDT&origClientOrderId=test-001&recvWindow=5000&timestamp=1591702613943",
            "b7ad9ab782a6e0feacc6d5483d9aa8803c89313906f2d3b613468c36edd53977",
        ),
        ("timestamp=1591702613943", "84901bbeed96ffa9adf9995c40fcadcb0a9ddad37c2605ce82491f2c771077a6"),
    ],
)
def test_published_hmac_vectors(message, signature):
    assert hmac_sha256_hex(DEMO_V1_API_SECRET, message) == signature


def test_v1_signer_reproduces_the_published_request_byte_for_byte():
    signer = V1Signer(
        v1_credentials(DEMO_V1_API_KEY, DEMO_V1_API_SECRET), recv_window_ms=5000, now_ms=lambda: 1591702613943
    )
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("quantity", "1"),
        ("price", "9000"),
        ("timeInForce", "GTC"),
    ]
    signed = signer.sign(params)
    assert (
        signed.payload == VECTOR_MESSAGE + "&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    )
    assert signed.headers == {"X-MBX-APIKEY": DEMO_V1_API_KEY}


def test_eip712_constants_match_the_documented_values():
    assert eip712_domain_separator(1666).hex() == "a95d0a7a6f3f17fcebb0c2336645385ce79cde7523f71ab147fdb7f15e9f37f9"
    assert MESSAGE_TYPEHASH.hex() == "c4cfb57eea370ef2a92403a7e865b2de262d7ca272333665b54ad7e6a602ef68"


@pytest.mark.parametrize("chain_id", [1666, 714])
def test_fast_signable_message_equals_eth_account_typed_data_encoding(chain_id):
    msg = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&nonce=1748310859508867&signer=0xabc"
    fast = signable_message(msg, domain_separator=eip712_domain_separator(chain_id))
    reference = signable_message_via_typed_data(msg, chain_id)
    assert (fast.version, fast.header, fast.body) == (reference.version, reference.header, reference.body)


def test_v3_signature_equals_eth_account_sign_message_over_the_typed_data():
    signer = V3Signer(
        v3_credentials(user=DEMO_V3_USER, signer=DEMO_V3_SIGNER, private_key=DEMO_V3_PRIVATE_KEY),
        nonce=lambda: 1748310859508867,
    )
    payload = signer.sign([("symbol", "ASTERUSDT"), ("type", "LIMIT"), ("side", "BUY"), ("quantity", "20")]).payload
    msg, signature = payload.rsplit("&signature=", 1)
    assert msg == (
        "symbol=ASTERUSDT&type=LIMIT&side=BUY&quantity=20&nonce=1748310859508867"
        f"&user={DEMO_V3_USER}&signer={DEMO_V3_SIGNER}"
    )
    reference = EthAccount.sign_message(signable_message_via_typed_data(msg, 1666), private_key=DEMO_V3_PRIVATE_KEY)
    assert signature == "0x" + bytes(reference.signature).hex()


def test_demo_key_is_the_demo_signer():
    assert EthAccount.from_key(DEMO_V3_PRIVATE_KEY).address == DEMO_V3_SIGNER


def test_v3_request_as_sent_recovers_to_the_signer():
    credentials = v3_credentials(user=DEMO_V3_USER, signer=DEMO_V3_SIGNER, private_key=DEMO_V3_PRIVATE_KEY)
    client = AsterClient("http://aster.test", credentials)
    with responses.RequestsMock() as rsps:
        rsps.get("http://aster.test/fapi/v1/exchangeInfo", json=P.EXCHANGE_INFO)
        rsps.post("http://aster.test/fapi/v3/order", json=P.ORDER_FILLED)
        client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="entry-1")
        body = rsps.calls[1].request.body
    body = body.decode() if isinstance(body, bytes) else body
    signed_part, signature = body.rsplit("&signature=", 1)
    assert body.endswith(signature) and signature.startswith("0x") and len(signature) == 132
    params = parse_qsl(signed_part)
    assert [k for k, _ in params][-3:] == ["nonce", "user", "signer"]
    assert dict(params)["user"] == DEMO_V3_USER
    # The signature covers exactly the bytes that were sent before "&signature=".
    assert recover_signer(signed_part, signature, 1666) == DEMO_V3_SIGNER
    assert recover_signer(signed_part + "&x=1", signature, 1666) != DEMO_V3_SIGNER
    assert recover_signer(signed_part, signature, 714) != DEMO_V3_SIGNER


def test_v3_signer_on_testnet_chain_id():
    signer = V3Signer(
        v3_credentials(user=DEMO_V3_USER, signer=DEMO_V3_SIGNER, private_key=DEMO_V3_PRIVATE_KEY, chain_id=714)
    )
    payload = signer.sign([("symbol", "BTCUSDT")]).payload
    msg, signature = payload.rsplit("&signature=", 1)
    assert recover_signer(msg, signature, 714) == DEMO_V3_SIGNER


def test_nonces_strictly_increase_across_threads_even_with_a_frozen_clock():
    nonce = MicrosecondNonce(clock=lambda: 1_700_000_000.0)
    results: list[list[int]] = [[] for _ in range(8)]

    def draw(slot: int) -> None:
        for _ in range(500):
            results[slot].append(nonce())

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [n for chunk in results for n in chunk]
    assert len(set(flat)) == len(flat) == 4000
    assert all(chunk == sorted(chunk) for chunk in results)
    assert min(flat) == 1_700_000_000_000_000


def test_credentials_and_signers_never_show_secrets():
    v1 = v1_credentials(DEMO_V1_API_KEY, DEMO_V1_API_SECRET)
    v3 = v3_credentials(user=DEMO_V3_USER, signer=DEMO_V3_SIGNER, private_key=DEMO_V3_PRIVATE_KEY)
    texts = [
        repr(v1),
        str(v1),
        repr(v3),
        str(v3),
        repr(V3Signer(v3)),
        repr(V1Signer(v1, recv_window_ms=5000, now_ms=lambda: 0)),
    ]
    for text in texts:
        assert DEMO_V1_API_SECRET not in text and DEMO_V1_API_KEY not in text
        assert DEMO_V3_PRIVATE_KEY[2:] not in text
