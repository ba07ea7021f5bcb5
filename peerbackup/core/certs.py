"""Membership certificates and revocations, both signed by the office key.

The signed bytes travel verbatim (`body` beside `sig`), so verification never
depends on re-encoding a decoded map the same way twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peerbackup.core import codec
from peerbackup.core.identity import (
    PUBLIC_KEY_SIZE,
    SigningKey,
    fingerprint_of,
    is_fingerprint,
    is_peer_id,
    peer_id_of,
    verify,
)
from peerbackup.errors import FormatError, UnsupportedVersion

CERT_VERSION = 1
ROLES = ("agent", "storage", "coordinator", "admin")
# What an invite gives unless it says otherwise. Not the coordinator role: a coordinator signs act-as tokens,
# and a machine that is both agent and coordinator can sign itself one that deletes (issue 14). It is given on
# purpose, to the machines trusted to run the schedule (`invite --roles agent,storage,coordinator`).
DEFAULT_ROLES = ("agent", "storage")
COORDINATOR_ROLES = ("agent", "storage", "coordinator")
ADMIN_RANK = 0  # the first admin is the preferred coordinator
DEFAULT_RANK = 100
DEFAULT_VALIDITY = 5 * 365 * 24 * 3600
MAX_NAME = 64


def check_name(name: str, what: str = "peer name") -> str:
    if not (1 <= len(name) <= MAX_NAME) or not name.isprintable() or name != name.strip():
        raise FormatError(what, f"{name!r}: 1 to {MAX_NAME} printable characters, no leading or trailing space")
    return name


def check_roles(roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise FormatError("roles", f"unknown role {role!r} (known: {', '.join(ROLES)})")
        if role not in out:
            out.append(role)
    return tuple(sorted(out, key=ROLES.index))


def _signed(body: bytes, sig: bytes) -> bytes:
    return codec.pack({"body": body, "sig": sig})


def _split(data: bytes, what: str) -> tuple[bytes, bytes, dict[Any, Any]]:
    outer = codec.unpack_map(data, what)
    body = codec.field(outer, "body", bytes, what)
    sig = codec.field(outer, "sig", bytes, what)
    inner = codec.unpack_map(body, what)
    version = codec.field(inner, "v", int, what)
    if version > CERT_VERSION:
        raise UnsupportedVersion(what, version, CERT_VERSION)
    if version < 1:
        raise FormatError(what, f"bad version {version}")
    return body, sig, inner


@dataclass(frozen=True)
class Office:
    name: str
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_key)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.public_key}

    @classmethod
    def from_wire(cls, obj: Any) -> Office:
        what = "office"
        if not isinstance(obj, dict):
            raise FormatError(what, "expected a map")
        key = codec.field(obj, "key", bytes, what)
        if len(key) != PUBLIC_KEY_SIZE:
            raise FormatError(what, "bad office key length")
        return cls(name=check_name(codec.field(obj, "name", str, what), "office name"), public_key=key)


@dataclass(frozen=True)
class Certificate:
    office: str  # office fingerprint
    peer_id: str
    public_key: bytes
    name: str
    roles: tuple[str, ...]
    rank: int
    issued: int
    expires: int
    raw: bytes = b""  # the signed encoding, as received or issued

    @classmethod
    def issue(cls, office_key: SigningKey, public_key: bytes, name: str, roles: tuple[str, ...],
              rank: int, now: int, validity: int = DEFAULT_VALIDITY) -> Certificate:
        body = codec.pack({
            "v": CERT_VERSION, "office": fingerprint_of(office_key.public_key), "id": peer_id_of(public_key),
            "key": public_key, "name": check_name(name), "roles": list(check_roles(roles)), "rank": rank,
            "issued": now, "expires": now + validity,
        })
        return cls.from_bytes(_signed(body, office_key.sign(body)), office_key.public_key)

    @classmethod
    def from_bytes(cls, data: bytes, office_key: bytes) -> Certificate:
        """Decode and check a certificate against the office key: FormatError if anything is off."""
        what = "certificate"
        body, sig, obj = _split(data, what)
        key = codec.field(obj, "key", bytes, what)
        peer_id = codec.field(obj, "id", str, what)
        office = codec.field(obj, "office", str, what)
        roles = codec.field(obj, "roles", list, what)
        rank = codec.field(obj, "rank", int, what)
        if len(key) != PUBLIC_KEY_SIZE or not is_peer_id(peer_id) or peer_id != peer_id_of(key):
            raise FormatError(what, "the peer id does not match the public key")
        if not is_fingerprint(office) or office != fingerprint_of(office_key):
            raise FormatError(what, f"issued by another office ({office!r})")
        if not all(isinstance(r, str) for r in roles) or not 0 <= rank < 2**32:
            raise FormatError(what, "bad roles or rank")
        if not verify(office_key, body, sig):
            raise FormatError(what, "the office signature does not verify")
        return cls(
            office=office, peer_id=peer_id, public_key=key,
            name=check_name(codec.field(obj, "name", str, what)), roles=check_roles(roles), rank=rank,
            issued=codec.field(obj, "issued", int, what), expires=codec.field(obj, "expires", int, what),
            raw=bytes(data),
        )

    @staticmethod
    def office_of(data: bytes) -> str:
        """The office fingerprint a certificate claims, before it is checked (to say "foreign office")."""
        _, _, obj = _split(data, "certificate")
        return str(codec.field(obj, "office", str, "certificate"))

    def valid_at(self, now: float) -> bool:
        return self.issued - 300 <= now < self.expires

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Revocation:
    """An office-signed removal of a member. `cutoff` is the removed writer's last accepted seq in each log,
    as the removing admin held them: signed with the rest, so nobody who relays the revocation can lower it
    and have the removed writer's earlier events (its member.adds, the node keys it sealed) dropped. None in a
    revocation of an older version, which carried the cutoff in its event only."""

    office: str
    peer_id: str
    at: int
    reason: str
    raw: bytes = b""
    cutoff: dict[str, int] | None = None

    @classmethod
    def issue(cls, office_key: SigningKey, peer_id: str, now: int, reason: str = "",
              cutoff: dict[str, int] | None = None) -> Revocation:
        body = codec.pack({
            "v": CERT_VERSION, "office": fingerprint_of(office_key.public_key), "revoked": peer_id,
            "at": now, "reason": reason[:200], **({"cutoff": dict(cutoff)} if cutoff is not None else {}),
        })
        return cls.from_bytes(_signed(body, office_key.sign(body)), office_key.public_key)

    @classmethod
    def from_bytes(cls, data: bytes, office_key: bytes) -> Revocation:
        what = "revocation"
        obj, office, peer_id = _office_signed(data, office_key, what, "revoked")
        cutoff = obj.get("cutoff")
        if cutoff is not None and not valid_cutoff(cutoff):
            raise FormatError(what, "bad cutoff")
        return cls(office=office, peer_id=peer_id, at=codec.field(obj, "at", int, what),
                   reason=codec.field(obj, "reason", str, what), raw=bytes(data), cutoff=cutoff)


MAX_SEQ = 2**63 - 1


def valid_cutoff(cutoff: Any) -> bool:
    """{log name: seq}: a removed writer's last accepted seq per log, within the bounds of a seq."""
    return isinstance(cutoff, dict) and len(cutoff) <= 100_000 and all(
        isinstance(k, str) and 0 < len(k) <= 80 and isinstance(v, int) and not isinstance(v, bool)
        and 0 <= v <= MAX_SEQ for k, v in cutoff.items())


def _office_signed(data: bytes, office_key: bytes, what: str, peer_field: str) -> tuple[dict[Any, Any], str, str]:
    """(fields, office fingerprint, the peer id it names) of a statement signed by this office's key."""
    body, sig, obj = _split(data, what)
    office = codec.field(obj, "office", str, what)
    peer_id = codec.field(obj, peer_field, str, what)
    if office != fingerprint_of(office_key):
        raise FormatError(what, "issued by another office")
    if not is_peer_id(peer_id):
        raise FormatError(what, "bad peer id")
    if not verify(office_key, body, sig):
        raise FormatError(what, "the office signature does not verify")
    return obj, office, peer_id


@dataclass(frozen=True)
class DeleteGrant:
    """The separate, logged capability to delete from a backup node's store (prune, forget).

    Signed by the office key for one holder of the node's keys and a short time: a
    storage peer deletes only for the peer it names (the request's signer), so the
    ordinary write capability stays append-only and a copied grant is useless to others.
    """

    office: str
    node: str
    holder: str
    issued: int
    expires: int
    raw: bytes = b""

    @classmethod
    def issue(cls, office_key: SigningKey, node: str, holder: str, now: int, valid_for: int) -> DeleteGrant:
        body = codec.pack({
            "v": CERT_VERSION, "office": fingerprint_of(office_key.public_key), "delete-node": node,
            "holder": holder, "issued": now, "expires": now + valid_for,
        })
        return cls.from_bytes(_signed(body, office_key.sign(body)), office_key.public_key)

    @classmethod
    def from_bytes(cls, data: bytes, office_key: bytes) -> DeleteGrant:
        what = "delete grant"
        obj, office, holder = _office_signed(data, office_key, what, "holder")
        return cls(office=office, node=codec.field(obj, "delete-node", str, what), holder=holder,
                   issued=codec.field(obj, "issued", int, what), expires=codec.field(obj, "expires", int, what),
                   raw=bytes(data))

    def allows(self, node: str, peer_id: str, now: float) -> bool:
        return self.node == node and self.holder == peer_id and self.issued - 120 <= now <= self.expires
