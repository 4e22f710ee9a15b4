"""Accounts the simulator registers for demos: the credentials published in the AsterDEX docs.

These keys are public test vectors (ASTER_API.md section 9), never real credentials.
"""

DEMO_V1 = {
    "name": "demo-v1",
    "api_key": "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83",
    "api_secret": "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
}
DEMO_V3 = {
    "name": "demo-v3",
    "user": "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e",
    "signer": "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
}
DEMO_V3_PRIVATE_KEY = "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1"
