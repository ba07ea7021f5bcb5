"""Peer identities (core/identity.py): peer ids and fingerprints, signing and sealing, names and roles.

Pinned vectors: a peer id or office fingerprint printed today must name the
same key in every later version, so their derivation may never change.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from peerbackup.core.certs import (
    check_name,
    check_roles,
)
from peerbackup.core.identity import (
    SigningKey,
    fingerprint_of,
    is_fingerprint,
    is_peer_id,
    normalise_peer_id,
    peer_id_of,
    seal_to,
    verify,
)
from peerbackup.errors import FormatError
from tests.core._identity import FINGERPRINT, OTHER_PEER_KEY, PEER_ID, PEER_KEY, PUBLIC_KEY_HEX, SEED, rand_from


def test_peer_id_and_fingerprint_vectors_are_stable() -> None:
    key = SigningKey(SEED)
    assert key.public_key.hex() == PUBLIC_KEY_HEX
    assert key.peer_id == PEER_ID
    assert peer_id_of(key.public_key) == PEER_ID
    assert fingerprint_of(key.public_key) == FINGERPRINT


def test_peer_id_derivation_is_the_documented_hash() -> None:
    pub = bytes.fromhex(PUBLIC_KEY_HEX)
    digest = hashlib.sha256(b"peerbackup peer id\0" + pub).digest()
    text = base64.b32encode(digest).decode()[:16]
    assert peer_id_of(pub) == "-".join(text[i:i + 4] for i in range(0, 16, 4))
    fp_digest = hashlib.sha256(b"peerbackup office\0" + pub).digest()
    fp_text = base64.b32encode(fp_digest).decode()[:32]
    assert fingerprint_of(pub) == "-".join(fp_text[i:i + 4] for i in range(0, 32, 4))


def test_peer_id_and_fingerprint_differ_per_key_and_purpose() -> None:
    ids = {SigningKey(bytes([i]) * 32).peer_id for i in range(20)}
    assert len(ids) == 20
    assert all(is_peer_id(i) for i in ids)
    # The domain-separated hashes do not share a prefix for the same key.
    assert not FINGERPRINT.startswith(PEER_ID)
    assert is_fingerprint(FINGERPRINT)
    assert not is_fingerprint(PEER_ID)
    assert not is_peer_id(FINGERPRINT)


@pytest.mark.parametrize("text", [
    PEER_ID, PEER_ID.lower(), PEER_ID.replace("-", ""), PEER_ID.replace("-", "").lower(),
    f"  {PEER_ID}  ", PEER_ID.replace("-", " "), "4uxq57t3-wgap-yc7k", f"{PEER_ID}\n",
    f"{PEER_ID}-", "4U-XQ57-T3WGAPYC7K",  # dashes are ignored wherever they are
])
def test_normalise_peer_id_accepts_typed_forms(text: str) -> None:
    assert normalise_peer_id(text) == PEER_ID


@pytest.mark.parametrize("text", [
    "", "-", "4UXQ-57T3-WGAP", "4UXQ-57T3-WGAP-YC7KA", "4UXQ-57T3-WGAP-YC71",
    "4UXQ-57T3-WGAP-YC78", "4UXQ-57T3-WGAP-YC7!", "4UXQ_57T3_WGAP_YC7K", FINGERPRINT, "0000-0000-0000-0000",
    "4UXQ-57T3-WGAP-YC7\n", "x" * 1000,
])
def test_normalise_peer_id_rejects_garbage(text: str) -> None:
    with pytest.raises(FormatError, match="not a peer id"):
        normalise_peer_id(text)


@pytest.mark.parametrize("text", [None, 42, b"4UXQ-57T3-WGAP-YC7K", "4uxq-57t3-wgap-yc7k", "4UXQ57T3WGAPYC7K", ""])
def test_is_peer_id_is_strict(text: object) -> None:
    assert not is_peer_id(text)


def test_is_peer_id_refuses_a_trailing_newline() -> None:
    assert not is_peer_id(PEER_ID + "\n")
    assert not is_fingerprint(FINGERPRINT + "\n")


# ---- signing and sealing -----------------------------------------------------------------


def test_signing_key_needs_a_32_byte_seed() -> None:
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(FormatError):
            SigningKey(bad)


def test_signing_key_generate_uses_the_random_source() -> None:
    assert SigningKey.generate(rand_from(5)) == SigningKey.generate(rand_from(5))
    assert SigningKey.generate(rand_from(5)).peer_id != SigningKey.generate(rand_from(6)).peer_id
    assert SigningKey.generate(lambda n: SEED[:n]).peer_id == PEER_ID


def test_signing_key_repr_hides_the_seed() -> None:
    assert SEED.hex() not in repr(SigningKey(SEED))
    assert repr(SEED) not in repr(SigningKey(SEED))


def test_sign_and_verify() -> None:
    key = SigningKey(SEED)
    sig = key.sign(b"message")
    assert len(sig) == 64
    assert key.sign(b"message") == sig  # Ed25519 is deterministic
    assert verify(key.public_key, b"message", sig)
    assert not verify(key.public_key, b"messagE", sig)
    assert not verify(PEER_KEY.public_key, b"message", sig)
    assert not verify(key.public_key, b"message", sig[:-1])
    assert not verify(key.public_key, b"message", sig + b"\0")
    assert not verify(key.public_key[:-1], b"message", sig)
    assert not verify(b"\0" * 32, b"message", sig)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(key.public_key, b"message", flipped)


def test_seal_to_and_open_sealed_round_trip() -> None:
    secret = bytes(range(32))
    box = seal_to(PEER_KEY.public_key, secret)
    assert secret not in box
    assert PEER_KEY.open_sealed(box) == secret
    assert seal_to(PEER_KEY.public_key, secret) != box  # ephemeral sender key each time
    assert PEER_KEY.open_sealed(seal_to(PEER_KEY.public_key, b"")) == b""


def test_open_sealed_refuses_other_key_and_tampering() -> None:
    box = seal_to(PEER_KEY.public_key, b"office key")
    with pytest.raises(FormatError, match="not sealed to this peer"):
        OTHER_PEER_KEY.open_sealed(box)
    for pos in (0, len(box) // 2, len(box) - 1):
        tampered = bytearray(box)
        tampered[pos] ^= 0x01
        with pytest.raises(FormatError):
            PEER_KEY.open_sealed(bytes(tampered))
    for bad in (b"", box[:-1], box[:10]):
        with pytest.raises(FormatError):
            PEER_KEY.open_sealed(bad)


@pytest.mark.parametrize("key", [b"", b"\x01" * 31, b"\x00" * 32, b"\xff" * 32])
def test_seal_to_refuses_keys_that_are_not_points(key: bytes) -> None:
    with pytest.raises(FormatError, match="public key"):
        seal_to(key, b"secret")


# ---- names and roles ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "reception", "Büro 2", "x" * 64, "laptop (old)"])
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", " lead", "trail ", "x" * 65, "a\nb", "tab\there", "\x00", "bell\x07"])
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(FormatError, match="printable"):
        check_name(name)


def test_check_roles_dedups_and_orders() -> None:
    assert check_roles(["admin", "agent", "admin", "storage"]) == ("agent", "storage", "admin")
    assert check_roles(()) == ()
    assert check_roles(("coordinator", "agent")) == ("agent", "coordinator")


@pytest.mark.parametrize("roles", [["root"], ["agent", "Admin"], [""], ["agent", "agent "]])
def test_check_roles_refuses_unknown(roles: list[str]) -> None:
    with pytest.raises(FormatError, match="unknown role"):
        check_roles(roles)
