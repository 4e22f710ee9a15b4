"""AsterClient overhead per signed request against the simulator, next to a bare requests.post
of the same bytes over the same connection; and the signing cost per request, V1 and V3.

    .venv/bin/python bench/aster_client.py [--requests 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import setup_django, simulator_process, summary

setup_django()

from execution.aster.client import AsterClient  # noqa: E402
from execution.aster.signing import SignedPayload, V1Signer, V3Signer, v1_credentials, v3_credentials  # noqa: E402
from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3, DEMO_V3_PRIVATE_KEY  # noqa: E402

PARAMS = [("symbol", "BTCUSDT"), ("leverage", "5")]
ORDER = [
    ("symbol", "BTCUSDT"),
    ("side", "BUY"),
    ("type", "MARKET"),
    ("quantity", "0.01"),
    ("newClientOrderId", "bench-000001"),
    ("newOrderRespType", "RESULT"),
]


def credentials(version: str):
    if version == "v1":
        return v1_credentials(DEMO_V1["api_key"], DEMO_V1["api_secret"])
    return v3_credentials(user=DEMO_V3["user"], signer=DEMO_V3["signer"], private_key=DEMO_V3_PRIVATE_KEY)


def one_client_call(client: AsterClient) -> float:
    started = time.perf_counter()
    client.set_leverage("BTCUSDT", 5)
    return time.perf_counter() - started


def one_bare_call(client: AsterClient, url: str, signed: SignedPayload) -> float:
    """The same signed bytes, pre-built, posted with the client's own session (same connection)."""
    headers = {**signed.headers, "Content-Type": "application/x-www-form-urlencoded"}
    started = time.perf_counter()
    response = client.session.post(url, data=signed.payload, headers=headers, timeout=client.timeout)
    response.json()
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def compare(client: AsterClient, n: int) -> tuple[list[float], list[float]]:
    """Interleaved, so that drift on a busy machine hits both series alike."""
    signer = client._signer
    assert signer is not None
    url = f"{client.base_url}/fapi/{'v1' if client.api_version == 'v1' else 'v3'}/leverage"
    bare, wrapped = [], []
    for _ in range(n):
        bare.append(one_bare_call(client, url, signer.sign(PARAMS)))
        wrapped.append(one_client_call(client))
    return bare, wrapped


def signing_cost(version: str, n: int) -> float:
    creds = credentials(version)
    signer = (
        V1Signer(creds, recv_window_ms=5000, now_ms=lambda: int(time.time() * 1000))
        if version == "v1"
        else V3Signer(creds)
    )
    started = time.perf_counter()
    for _ in range(n):
        signer.sign(ORDER)
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    n = args.requests
    print(f"AsterClient vs bare requests.post, {n} signed POST /leverage each, simulator in its own process")
    with simulator_process() as url:
        for version in ("v1", "v3"):
            client = AsterClient(url, credentials(version))
            client.sync_time()
            compare(client, 20)  # warm the connection
            bare, wrapped = compare(client, n)
            ratio = statistics.median(wrapped) / statistics.median(bare)
            print(f"  {version} bare   {summary(bare)}")
            print(f"  {version} client {summary(wrapped)}")
            print(f"  {version} client/bare median ratio {ratio:.2f}x (target <= 1.3x, signing included)")
    for version in ("v1", "v3"):
        cost = signing_cost(version, 2000 if version == "v1" else 300)
        print(f"signing cost {version}: {cost * 1e6:8.1f} us per request")


if __name__ == "__main__":
    main()
