"""Peer identities, office certificates and revocations, and the daemon's timings.

Pinned vectors: a peer id or office fingerprint printed today must name the
same key in every later version, so their derivation may never change.
"""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.core.certs import (
    CERT_VERSION,
    COORDINATOR_ROLES,
    DEFAULT_VALIDITY,
    Certificate,
    Office,
    Revocation,
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
from peerbackup.core.settings import Settings, parse_duration
from peerbackup.errors import FormatError, UnsupportedVersion, UsageError
from tests.daemon.harness import FAST

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


# ---- peer ids and fingerprints -----------------------------------------------------------


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


# ---- office --------------------------------------------------------------------------------


def test_office_round_trip() -> None:
    office = Office("Smith & Co", OFFICE_KEY.public_key)
    assert Office.from_wire(office.to_wire()) == office
    assert office.fingerprint == fingerprint_of(OFFICE_KEY.public_key)
    assert Office.from_wire(codec.unpack(codec.pack(office.to_wire()))) == office


@pytest.mark.parametrize("obj", [
    None, [], "office", {"name": "x"}, {"key": b"k" * 32}, {"name": "x", "key": b"k" * 31},
    {"name": "", "key": b"k" * 32}, {"name": 5, "key": b"k" * 32}, {"name": "x", "key": "k" * 32},
])
def test_office_from_wire_refuses(obj: Any) -> None:
    with pytest.raises(FormatError):
        Office.from_wire(obj)


# ---- certificates --------------------------------------------------------------------------


def test_certificate_issue_and_from_bytes_round_trip() -> None:
    cert = issue(name="front desk", roles=("storage", "agent", "admin"), rank=7)
    assert cert.office == fingerprint_of(OFFICE_KEY.public_key)
    assert cert.peer_id == PEER_KEY.peer_id
    assert cert.public_key == PEER_KEY.public_key
    assert cert.name == "front desk"
    assert cert.roles == ("agent", "storage", "admin")
    assert cert.rank == 7
    assert (cert.issued, cert.expires) == (NOW, NOW + 3600)
    again = Certificate.from_bytes(cert.raw, OFFICE_KEY.public_key)
    assert again == cert
    assert again.raw == cert.raw
    assert Certificate.office_of(cert.raw) == cert.office
    assert cert.has_role("admin") and not cert.has_role("coordinator")


def test_certificate_default_validity() -> None:
    cert = Certificate.issue(OFFICE_KEY, PEER_KEY.public_key, "pc", COORDINATOR_ROLES, 100, NOW)
    assert cert.expires == NOW + DEFAULT_VALIDITY


def test_certificate_valid_at_boundaries() -> None:
    cert = issue(validity=1000)
    assert not cert.valid_at(NOW - 301)
    assert cert.valid_at(NOW - 300)  # five minutes of clock skew tolerated
    assert cert.valid_at(NOW)
    assert cert.valid_at(NOW + 999.5)
    assert not cert.valid_at(NOW + 1000)


def test_certificate_refused_under_another_office_key() -> None:
    cert = issue()
    with pytest.raises(FormatError, match="another office"):
        Certificate.from_bytes(cert.raw, OTHER_OFFICE_KEY.public_key)


def test_certificate_claiming_our_office_but_signed_by_another_is_refused() -> None:
    raw = signed(OTHER_OFFICE_KEY, cert_body())
    with pytest.raises(FormatError, match="signature does not verify"):
        Certificate.from_bytes(raw, OFFICE_KEY.public_key)


def test_certificate_with_a_tampered_body_is_refused() -> None:
    cert = issue(name="reception")
    for old, new in ((b"reception", b"receptioN"), (PEER_KEY.public_key[:4], b"\0\0\0\0")):
        tampered = replace_in_body(cert.raw, old, new)
        with pytest.raises(FormatError):
            Certificate.from_bytes(tampered, OFFICE_KEY.public_key)
    tampered = replace_in_body(cert.raw, b"reception", b"receptioN")
    with pytest.raises(FormatError, match="signature does not verify"):
        Certificate.from_bytes(tampered, OFFICE_KEY.public_key)


def test_certificate_with_a_tampered_signature_is_refused() -> None:
    cert = issue()
    outer = codec.unpack_map(cert.raw, "test")
    for sig in (bytes([outer["sig"][0] ^ 0x80]) + outer["sig"][1:], outer["sig"][:-1], b""):
        raw = codec.pack({"body": outer["body"], "sig": sig})
        with pytest.raises(FormatError, match="signature does not verify"):
            Certificate.from_bytes(raw, OFFICE_KEY.public_key)


def test_certificate_whose_peer_id_does_not_match_its_key_is_refused() -> None:
    for body in (cert_body(id=OTHER_PEER_KEY.peer_id), cert_body(key=OTHER_PEER_KEY.public_key),
                 cert_body(id=PEER_KEY.peer_id.lower()), cert_body(key=PEER_KEY.public_key[:31])):
        with pytest.raises(FormatError, match="peer id does not match"):
            Certificate.from_bytes(signed(OFFICE_KEY, body), OFFICE_KEY.public_key)


def test_certificate_with_unknown_role_is_refused() -> None:
    with pytest.raises(FormatError, match="unknown role"):
        issue(roles=("agent", "superuser"))
    with pytest.raises(FormatError, match="unknown role"):
        Certificate.from_bytes(signed(OFFICE_KEY, cert_body(roles=["agent", "superuser"])), OFFICE_KEY.public_key)
    with pytest.raises(FormatError, match="bad roles or rank"):
        Certificate.from_bytes(signed(OFFICE_KEY, cert_body(roles=["agent", 1])), OFFICE_KEY.public_key)


@pytest.mark.parametrize("rank", [-1, 2**32])
def test_certificate_with_bad_rank_is_refused(rank: int) -> None:
    with pytest.raises(FormatError, match="bad roles or rank"):
        Certificate.from_bytes(signed(OFFICE_KEY, cert_body(rank=rank)), OFFICE_KEY.public_key)


@pytest.mark.parametrize("name", ["", " x", "x" * 65, "a\nb"])
def test_certificate_with_bad_name_is_refused(name: str) -> None:
    with pytest.raises(FormatError, match="printable"):
        issue(name=name)
    with pytest.raises(FormatError, match="printable"):
        Certificate.from_bytes(signed(OFFICE_KEY, cert_body(name=name)), OFFICE_KEY.public_key)


@pytest.mark.parametrize("field", ["v", "office", "id", "key", "name", "roles", "rank", "issued", "expires"])
def test_certificate_missing_or_mistyped_field_is_refused(field: str) -> None:
    body = cert_body()
    del body[field]
    with pytest.raises(FormatError):
        Certificate.from_bytes(signed(OFFICE_KEY, body), OFFICE_KEY.public_key)
    body = cert_body(**{field: True})  # a bool is never accepted for an int or anything else
    with pytest.raises(FormatError):
        Certificate.from_bytes(signed(OFFICE_KEY, body), OFFICE_KEY.public_key)


def test_certificate_from_a_newer_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersion):
        Certificate.from_bytes(signed(OFFICE_KEY, cert_body(v=CERT_VERSION + 1)), OFFICE_KEY.public_key)


@pytest.mark.parametrize("raw", [b"", b"\xc1", codec.pack([1, 2]), codec.pack({"body": b"x"}),
                                 codec.pack({"body": "str", "sig": b""}), codec.pack({"body": b"\x93", "sig": b""})])
def test_certificate_garbage_is_a_format_error(raw: bytes) -> None:
    with pytest.raises(FormatError):
        Certificate.from_bytes(raw, OFFICE_KEY.public_key)
    with pytest.raises(FormatError):
        Certificate.office_of(raw)


# ---- revocations ---------------------------------------------------------------------------


def test_revocation_round_trip() -> None:
    rev = Revocation.issue(OFFICE_KEY, PEER_KEY.peer_id, NOW, "left the firm")
    assert (rev.office, rev.peer_id, rev.at, rev.reason) == (
        fingerprint_of(OFFICE_KEY.public_key), PEER_KEY.peer_id, NOW, "left the firm")
    assert Revocation.from_bytes(rev.raw, OFFICE_KEY.public_key) == rev
    assert Revocation.issue(OFFICE_KEY, PEER_KEY.peer_id, NOW, "r" * 500).reason == "r" * 200


def test_revocation_forgeries_are_refused() -> None:
    rev = Revocation.issue(OFFICE_KEY, PEER_KEY.peer_id, NOW)
    with pytest.raises(FormatError, match="another office"):
        Revocation.from_bytes(rev.raw, OTHER_OFFICE_KEY.public_key)
    # Claims our office, signed by someone else (say, a member's own key).
    with pytest.raises(FormatError, match="signature does not verify"):
        Revocation.from_bytes(signed(PEER_KEY, rev_body()), OFFICE_KEY.public_key)
    # Retargeted at another peer after signing.
    forged = replace_in_body(rev.raw, PEER_KEY.peer_id.encode(), OTHER_PEER_KEY.peer_id.encode())
    with pytest.raises(FormatError, match="signature does not verify"):
        Revocation.from_bytes(forged, OFFICE_KEY.public_key)


@pytest.mark.parametrize("body", [
    rev_body(revoked="not a peer id"), rev_body(revoked=PEER_KEY.peer_id.lower()), rev_body(at="now"),
    rev_body(reason=None), rev_body(office=FINGERPRINT),
])
def test_revocation_bad_fields_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Revocation.from_bytes(signed(OFFICE_KEY, body), OFFICE_KEY.public_key)


def test_revocation_from_a_newer_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersion):
        Revocation.from_bytes(signed(OFFICE_KEY, rev_body(v=2)), OFFICE_KEY.public_key)


def test_a_certificate_is_not_a_revocation_and_back() -> None:
    cert = issue()
    rev = Revocation.issue(OFFICE_KEY, PEER_KEY.peer_id, NOW)
    with pytest.raises(FormatError):
        Revocation.from_bytes(cert.raw, OFFICE_KEY.public_key)
    with pytest.raises(FormatError):
        Certificate.from_bytes(rev.raw, OFFICE_KEY.public_key)


# ---- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("1.5", 1.5), ("0", 0.0), ("500ms", 0.5), ("30s", 30.0), ("15m", 900.0), ("1h", 3600.0), ("7d", 604800.0),
    (" 2 s ", 2.0), ("0.25s", 0.25), ("10", 10.0), ("1.5h", 5400.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1", "1x", "1.", ".5", "1e3", "abc", "1 2", "5 minutes", "1S", "ms"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration(text)


def test_settings_defaults_and_nonce_keep() -> None:
    s = Settings()
    assert 0 < s.heartbeat < s.suspect < s.dead
    assert s.nonce_keep == 2 * s.clock_skew


def test_with_overrides_applies_durations() -> None:
    s = Settings().with_overrides(["heartbeat=200ms", "suspect = 1s", "dead=2", "clock-skew=1m",
                                   "request_timeout=500ms"])
    assert (s.heartbeat, s.suspect, s.dead, s.clock_skew, s.request_timeout) == (0.2, 1.0, 2.0, 60.0, 0.5)
    assert s.lease == Settings().lease
    assert Settings().with_overrides([]) == Settings()
    assert Settings().with_overrides(["gc_grace=1d"]).gc_grace == 86400.0


@pytest.mark.parametrize("item", ["heartbeat", "nope=1s", "=1s", "heartbeat=fast", "heartbeat=-1", "nonce_keep=1"])
def test_with_overrides_refuses_bad_items(item: str) -> None:
    with pytest.raises(UsageError):
        Settings().with_overrides([item])


@pytest.mark.parametrize("kwargs", [
    {"heartbeat": 0.0}, {"heartbeat": 8.0}, {"heartbeat": 9.0}, {"suspect": 15.0}, {"suspect": 20.0},
    {"dead": 8.0}, {"dead": 1.0}, {"heartbeat": 1.0, "suspect": 3.0, "dead": 3.0},
    {"clock_skew": 0.0}, {"request_timeout": 0.0}, {"renew": 15.0}, {"renew": 0.0},
])
def test_settings_invariants_are_enforced(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Settings(**kwargs)


def test_with_overrides_checks_the_invariants() -> None:
    with pytest.raises(UsageError, match="heartbeat < suspect < dead"):
        Settings().with_overrides(["suspect=1h"])
    with pytest.raises(UsageError, match="heartbeat < suspect < dead"):
        Settings().with_overrides(["heartbeat=10s"])
    assert Settings(heartbeat=1, suspect=3, dead=6).dead == 6


def test_loaded_timings_leave_a_late_heartbeat_time_to_arrive() -> None:
    """Issue 16, cause 5: a heartbeat answered late (request_timeout) is followed by the next one a heartbeat
    later; suspect must be longer than both, or a slow answer makes a peer suspect. The defaults were 2 + 5 > 6."""
    d = Settings()
    assert d.heartbeat + d.request_timeout < d.suspect
    for items in (["suspect=6s"], ["request_timeout=7s"], ["heartbeat=250ms", "suspect=1s", "request_timeout=1s"]):
        with pytest.raises(UsageError, match=r"heartbeat \+ request_timeout < suspect"):
            Settings().with_overrides(items)
    harness = Settings().with_overrides([f"{k}={v}" for k, v in FAST.items()])  # the daemon tests' timings
    assert harness.heartbeat + harness.request_timeout < harness.suspect


def test_delete_grant_is_the_office_s_word_for_one_peer_node_and_time() -> None:
    from peerbackup.core.certs import DeleteGrant

    g = DeleteGrant.issue(OFFICE_KEY, "accounts", PEER_KEY.peer_id, NOW, 3600)
    again = DeleteGrant.from_bytes(g.raw, OFFICE_KEY.public_key)
    assert again.allows("accounts", PEER_KEY.peer_id, NOW + 10)
    assert not again.allows("design", PEER_KEY.peer_id, NOW + 10)
    assert not again.allows("accounts", OTHER_PEER_KEY.peer_id, NOW + 10)
    assert not again.allows("accounts", PEER_KEY.peer_id, NOW + 3601)
    with pytest.raises(FormatError, match="another office"):
        DeleteGrant.from_bytes(g.raw, OTHER_OFFICE_KEY.public_key)
    forged = DeleteGrant.issue(OTHER_OFFICE_KEY, "accounts", PEER_KEY.peer_id, NOW, 3600)
    outer = codec.unpack_map(forged.raw, "g")
    body = codec.unpack_map(outer["body"], "g")
    body["office"] = again.office  # claims to be ours, signed by another key
    with pytest.raises(FormatError, match="does not verify"):
        DeleteGrant.from_bytes(codec.pack({"body": codec.pack(body), "sig": outer["sig"]}), OFFICE_KEY.public_key)
