"""Shared by the identity, certificate and revocation tests: pinned vectors, fixed office and peer keys,
and builders of signed certificate and revocation bodies (to forge, tamper and mistype them).
"""

from __future__ import annotations

import random
from typing import Any

from peerbackup.core import codec
from peerbackup.core.certs import (
    CERT_VERSION,
    COORDINATOR_ROLES,
    Certificate,
)
from peerbackup.core.identity import (
    SigningKey,
    fingerprint_of,
)

SEED = bytes(range(32))
PUBLIC_KEY_HEX = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
PEER_ID = "4UXQ-57T3-WGAP-YC7K"
FINGERPRINT = "4MFT-ODMT-NPGB-K2YV-TWDG-2OD5-TAAY-XMN3"

OFFICE_KEY = SigningKey(b"\x01" * 32)
OTHER_OFFICE_KEY = SigningKey(b"\x02" * 32)
PEER_KEY = SigningKey(b"\x03" * 32)
OTHER_PEER_KEY = SigningKey(b"\x04" * 32)
NOW = 1_700_000_000


def rand_from(seed: int) -> Any:
    rng = random.Random(seed)
    return rng.randbytes


def signed(office_key: SigningKey, body_obj: dict[str, Any]) -> bytes:
    """A certificate or revocation signed by hand, so its body may say anything yet verify."""
    body = codec.pack(body_obj)
    return codec.pack({"body": body, "sig": office_key.sign(body)})


def cert_body(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": CERT_VERSION, "office": fingerprint_of(OFFICE_KEY.public_key), "id": PEER_KEY.peer_id,
        "key": PEER_KEY.public_key, "name": "reception", "roles": ["agent", "storage"], "rank": 100,
        "issued": NOW, "expires": NOW + 3600,
    }
    obj.update(overrides)
    return obj


def rev_body(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": CERT_VERSION, "office": fingerprint_of(OFFICE_KEY.public_key), "revoked": PEER_KEY.peer_id,
        "at": NOW, "reason": "stolen laptop",
    }
    obj.update(overrides)
    return obj


def replace_in_body(raw: bytes, old: bytes, new: bytes) -> bytes:
    """Edit the signed body in place (same length, so the encoding stays valid), keeping the old signature."""
    outer = codec.unpack_map(raw, "test")
    assert outer["body"].count(old) == 1
    outer["body"] = outer["body"].replace(old, new)
    return codec.pack(outer)


def issue(name: str = "reception", roles: tuple[str, ...] = COORDINATOR_ROLES, rank: int = 100,
          key: SigningKey = PEER_KEY, office_key: SigningKey = OFFICE_KEY, validity: int = 3600) -> Certificate:
    return Certificate.issue(office_key, key.public_key, name, roles, rank, NOW, validity)
