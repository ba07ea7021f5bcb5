"""What the office key signs (core/certs.py): the office itself, certificates, revocations and delete
grants, each round-tripped, and every forgery, tampering and bad field refused.
"""

from __future__ import annotations

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
)
from peerbackup.core.identity import (
    fingerprint_of,
)
from peerbackup.errors import FormatError, UnsupportedVersion
from tests.core._identity import (
    FINGERPRINT,
    NOW,
    OFFICE_KEY,
    OTHER_OFFICE_KEY,
    OTHER_PEER_KEY,
    PEER_KEY,
    cert_body,
    issue,
    replace_in_body,
    rev_body,
    signed,
)


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
