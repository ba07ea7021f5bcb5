"""Ed25519 identities: peer ids, office fingerprints, signing and verifying.

A peer id is derived from the public key (as Syncthing's device ids are), short
enough to read aloud: 16 base32 characters in four groups, 80 bits of SHA-256.
It names a peer; it does not authenticate one. What makes a peer trusted is a
certificate signed by the office key binding the id to the full public key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from peerbackup.core.crypto import Random
from peerbackup.errors import FormatError

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64

_ID_RE = re.compile(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}")
_FP_RE = re.compile(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){7}")


def _b32(data: bytes, chars: int) -> str:
    text = base64.b32encode(data).decode("ascii")[:chars]
    return "-".join(text[i:i + 4] for i in range(0, chars, 4))


def peer_id_of(public_key: bytes) -> str:
    """ABCD-EFGH-IJKL-MNOP: 80 bits of SHA-256 of the Ed25519 public key."""
    return _b32(hashlib.sha256(b"peerbackup peer id\0" + public_key).digest(), 16)


def fingerprint_of(office_key: bytes) -> str:
    """The office key's fingerprint: 160 bits, eight groups, printed in invites."""
    return _b32(hashlib.sha256(b"peerbackup office\0" + office_key).digest(), 32)


def normalise_peer_id(text: str) -> str:
    """Accept a peer id typed in lower case or without dashes; FormatError otherwise."""
    raw = text.strip().upper().replace("-", "").replace(" ", "")
    candidate = "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))
    if not _ID_RE.fullmatch(candidate):
        raise FormatError("peer id", f"{text!r} is not a peer id (16 letters A-Z and digits 2-7)")
    return candidate


def is_peer_id(text: object) -> bool:
    return isinstance(text, str) and bool(_ID_RE.fullmatch(text))


def is_fingerprint(text: object) -> bool:
    return isinstance(text, str) and bool(_FP_RE.fullmatch(text))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair kept as its 32-byte seed."""

    seed: bytes = field(repr=False)
    _key: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise FormatError("signing key", "seed must be 32 bytes")
        # Deriving the public key costs as much as a signature: do it once.
        object.__setattr__(self, "_key", nacl.signing.SigningKey(self.seed))

    @classmethod
    def generate(cls, rand: Random) -> SigningKey:
        return cls(rand(SEED_SIZE))

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def open_sealed(self, box: bytes) -> bytes:
        """Open a secret sealed to this peer with seal_to()."""
        try:
            return bytes(nacl.public.SealedBox(self._key.to_curve25519_private_key()).decrypt(box))
        except nacl.exceptions.CryptoError:
            raise FormatError("sealed secret", "it was not sealed to this peer's key or was altered") from None


def x25519_public(public_key: bytes) -> bytes:
    try:
        return bytes(sodium.crypto_sign_ed25519_pk_to_curve25519(public_key))
    except Exception as exc:
        raise FormatError("public key", "not an Ed25519 point") from exc


def seal_to(public_key: bytes, secret: bytes) -> bytes:
    """Seal a secret so that only the holder of the Ed25519 key public_key can open it."""
    box = nacl.public.SealedBox(nacl.public.PublicKey(x25519_public(public_key)))
    return bytes(box.encrypt(secret))
