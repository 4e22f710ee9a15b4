"""Request signing: V1 (API key + HMAC-SHA256) and V3 (API wallet + EIP-712).

Both sign the exact string that is sent (parameters in insertion order, URL-encoded) and
append `signature` last. Secrets are held as `Secret` and never shown in a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from eth_account import Account as EthAccount
from eth_account.messages import SignableMessage, encode_typed_data
from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak

from secret_value import Secret, as_secret

Params = Sequence[tuple[str, str]]

EIP712_DOMAIN_NAME = "AsterSignTransaction"
EIP712_DOMAIN_VERSION = "1"
EIP712_ZERO_CONTRACT = "0x0000000000000000000000000000000000000000"
MESSAGE_TYPEHASH = keccak(text="Message(string msg)")


@dataclass(frozen=True)
class SignedPayload:
    """`payload` is sent as-is (query string or form body), signature included, last."""

    payload: str
    headers: dict[str, str]


def hmac_sha256_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, repr=False)
class V1Credentials:
    api_key: Secret
    api_secret: Secret

    def __repr__(self) -> str:
        return "V1Credentials(api_key=********, api_secret=********)"


@dataclass(frozen=True, repr=False)
class V3Credentials:
    user: str
    signer: str
    private_key: Secret
    chain_id: int = 1666

    def __repr__(self) -> str:
        return f"V3Credentials(user={self.user}, signer={self.signer}, private_key=********, chain_id={self.chain_id})"


class V1Signer:
    """Adds timestamp and recvWindow, signs `query+body` with HMAC-SHA256 (ASTER_API.md 7a)."""

    version = "v1"

    def __init__(self, credentials: V1Credentials, *, recv_window_ms: int, now_ms: Callable[[], int]) -> None:
        self._key = credentials.api_key.reveal()
        self._secret = credentials.api_secret.reveal()
        self._recv_window = str(recv_window_ms)
        self._now_ms = now_ms

    def sign(self, params: Params) -> SignedPayload:
        full = [*params, ("recvWindow", self._recv_window), ("timestamp", str(self._now_ms()))]
        unsigned = urlencode(full)
        signature = hmac_sha256_hex(self._secret, unsigned)
        return SignedPayload(f"{unsigned}&signature={signature}", self.api_key_header())

    def api_key_header(self) -> dict[str, str]:
        """The header of USER_STREAM / MARKET_DATA security: the key alone, nothing signed."""
        return {"X-MBX-APIKEY": self._key}

    def __repr__(self) -> str:
        return "V1Signer(********)"


class MicrosecondNonce:
    """Strictly increasing microsecond nonces, also across threads."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(int(self._clock() * 1_000_000), self._last + 1)
            return self._last


def eip712_domain_separator(chain_id: int) -> bytes:
    """hashStruct(EIP712Domain) for AsterSignTransaction / 1 / chain_id / zero contract."""
    typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(
        typehash
        + keccak(text=EIP712_DOMAIN_NAME)
        + keccak(text=EIP712_DOMAIN_VERSION)
        + chain_id.to_bytes(32, "big")
        + bytes(32)
    )


def typed_data_for(msg: str, chain_id: int) -> dict[str, object]:
    """The full EIP-712 document the official demo signs (used to cross-check the fast path)."""
    return {
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
            "name": EIP712_DOMAIN_NAME,
            "version": EIP712_DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": EIP712_ZERO_CONTRACT,
        },
        "message": {"msg": msg},
    }


def signable_message(msg: str, *, domain_separator: bytes) -> SignableMessage:
    """EIP-712 `Message(string msg)` as eth-account's SignableMessage (version 0x01)."""
    return SignableMessage(
        version=b"\x01",
        header=domain_separator,
        body=keccak(MESSAGE_TYPEHASH + keccak(text=msg)),
    )


def signable_message_via_typed_data(msg: str, chain_id: int) -> SignableMessage:
    return encode_typed_data(full_message=typed_data_for(msg, chain_id))


def eip712_digest(msg: str, *, domain_separator: bytes) -> bytes:
    """keccak256(0x19 0x01 || domainSeparator || hashStruct(Message{msg})): what gets signed."""
    return keccak(b"\x19\x01" + domain_separator + keccak(MESSAGE_TYPEHASH + keccak(text=msg)))


def sign_digest(key: PrivateKey, digest: bytes) -> str:
    """65-byte r||s||v signature, v in {27, 28}, as 0x-hex (what ethers and eth-account produce)."""
    raw = key.sign_msg_hash(digest).to_bytes()
    return "0x" + (raw[:64] + bytes([raw[64] + 27])).hex()


def recover_signer(msg: str, signature: str, chain_id: int) -> str:
    message = signable_message(msg, domain_separator=eip712_domain_separator(chain_id))
    return str(EthAccount.recover_message(message, signature=signature))


@dataclass
class V3Signer:
    """Adds nonce, user and signer, signs the URL-encoded string with EIP-712 (ASTER_API.md 7b)."""

    credentials: V3Credentials
    nonce: Callable[[], int] = field(default_factory=MicrosecondNonce)
    version = "v3"

    def __post_init__(self) -> None:
        # eth-keys (eth-account's own key type, C-backed by coincurve) signs the EIP-712
        # digest directly: the same RFC 6979 signature as Account.sign_message, 3x cheaper.
        self._key = PrivateKey(bytes.fromhex(self.credentials.private_key.reveal().removeprefix("0x")))
        self._domain = eip712_domain_separator(self.credentials.chain_id)

    def sign(self, params: Params) -> SignedPayload:
        full = [
            *params,
            ("nonce", str(self.nonce())),
            ("user", self.credentials.user),
            ("signer", self.credentials.signer),
        ]
        unsigned = urlencode(full)
        signature = sign_digest(self._key, eip712_digest(unsigned, domain_separator=self._domain))
        return SignedPayload(f"{unsigned}&signature={signature}", {})

    def __repr__(self) -> str:
        return f"V3Signer(signer={self.credentials.signer}, private_key=********)"


Credentials = V1Credentials | V3Credentials


def v1_credentials(api_key: str | Secret, api_secret: str | Secret) -> V1Credentials:
    return V1Credentials(api_key=as_secret(api_key), api_secret=as_secret(api_secret))


def v3_credentials(*, user: str, signer: str, private_key: str | Secret, chain_id: int = 1666) -> V3Credentials:
    return V3Credentials(user=user, signer=signer, private_key=as_secret(private_key), chain_id=chain_id)
