"""join: a new machine redeems a one-time invite for a certificate.

The token (printed by `peerbackup invite`) holds the office fingerprint, the
inviter's addresses and a 32-byte secret. The joiner never sends the secret:
it sends the token id (a hash of it) and an HMAC under it over its new public
key and name, so an eavesdropper can neither reuse the token nor substitute
its own key. The inviter's reply is signed by a member whose certificate
checks against the fingerprint in the token, so the joiner knows it reached
the right office.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from peerbackup.core import codec
from peerbackup.core.identity import PUBLIC_KEY_SIZE, is_fingerprint
from peerbackup.errors import BadToken, FormatError, Malformed
from peerbackup.net.proto import _wire
from peerbackup.net.proto.hello import PeerHint

PATH = "/v1/join"
TOKEN_PREFIX = "pbinvite1-"
SECRET_SIZE = 32


def token_id(secret: bytes) -> bytes:
    return hashlib.sha256(b"peerbackup invite id\0" + secret).digest()[:16]


def join_proof(secret: bytes, public_key: bytes, name: str) -> bytes:
    return hmac.new(secret, b"peerbackup join\0" + public_key + name.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class InviteToken:
    office: str  # fingerprint
    addresses: tuple[str, ...]
    secret: bytes
    expires: int

    def encode(self) -> str:
        raw = codec.pack({"o": self.office, "a": list(self.addresses), "s": self.secret, "e": self.expires})
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> InviteToken:
        text = "".join(text.split())
        if not text.startswith(TOKEN_PREFIX):
            raise BadToken(f"not an invite token (an invite token starts with {TOKEN_PREFIX!r})")
        body = text[len(TOKEN_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            obj = codec.unpack_map(raw, "invite token")
            office = codec.field(obj, "o", str, "invite token")
            addrs = codec.field(obj, "a", list, "invite token")
            secret = codec.field(obj, "s", bytes, "invite token")
            expires = codec.field(obj, "e", int, "invite token")
        except (ValueError, FormatError):
            raise BadToken("the invite token is damaged or cut short: copy it again, in full") from None
        if not is_fingerprint(office) or len(secret) != SECRET_SIZE or len(addrs) > 64 or \
                not all(isinstance(a, str) and len(a) <= 300 and a.isprintable() for a in addrs):
            raise BadToken("the invite token is damaged or cut short: copy it again, in full")
        return cls(office=office, addresses=tuple(addrs), secret=secret, expires=expires)


@dataclass(frozen=True)
class JoinRequest:
    token_id: bytes
    public_key: bytes
    name: str
    proof: bytes

    def to_wire(self) -> bytes:
        return _wire.encode({"tid": self.token_id, "key": self.public_key, "name": self.name, "proof": self.proof})

    @classmethod
    def from_wire(cls, data: bytes) -> JoinRequest:
        what = "join request"
        obj = _wire.decode(data, what)
        req = cls(token_id=_wire.get(obj, "tid", bytes, what), public_key=_wire.get(obj, "key", bytes, what),
                  name=_wire.get(obj, "name", str, what), proof=_wire.get(obj, "proof", bytes, what))
        if len(req.token_id) != 16 or len(req.public_key) != PUBLIC_KEY_SIZE or len(req.proof) != 32:
            raise Malformed(f"{what}: bad field length")
        if not 1 <= len(req.name) <= 64:
            raise Malformed(f"{what}: bad name")
        return req


@dataclass(frozen=True)
class JoinReply:
    office: dict[str, object]  # Office.to_wire()
    certificate: bytes  # the joiner's new certificate
    inviter_certificate: bytes
    revocations: tuple[bytes, ...]
    peers: tuple[PeerHint, ...]
    office_key_box: bytes  # the office key sealed to the joiner, when invited as an admin

    def to_wire(self) -> bytes:
        return _wire.encode({
            "office": self.office, "cert": self.certificate, "inviter": self.inviter_certificate,
            "revoked": list(self.revocations), "okey": self.office_key_box,
            "peers": [{"id": p.peer_id, "addrs": list(p.addresses)} for p in self.peers],
        })

    @classmethod
    def from_wire(cls, data: bytes) -> JoinReply:
        what = "join reply"
        obj = _wire.decode(data, what)
        hints = tuple(PeerHint(p, a) for p, a in _wire.hints(obj, "peers", what))
        return cls(office=_wire.get(obj, "office", dict, what), certificate=_wire.get(obj, "cert", bytes, what),
                   inviter_certificate=_wire.get(obj, "inviter", bytes, what),
                   revocations=tuple(_wire.items(obj, "revoked", bytes, what)), peers=hints,
                   office_key_box=_wire.get(obj, "okey", bytes, what))
