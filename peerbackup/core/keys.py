"""Repository key material and passphrase-wrapped key files.

A KeySet holds the id key (keys chunk ids; never changes, so deduplication
survives key rotation) and data keys by epoch (every object names the epoch it
was sealed under). The engine only ever sees a KeySet: a standalone repository
unwraps it from a key file with a passphrase, the office mode will hand it a
backup node's keys instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import codec
from peerbackup.core.crypto import (
    KEY_SIZE,
    NONCE_SIZE,
    SALT_SIZE,
    KdfParams,
    Random,
    derive_key,
    seal,
    unseal,
)
from peerbackup.errors import FormatError, UnsupportedVersion, WrongPassword

KEYFILE_VERSION = 1
MAX_OPSLIMIT = 64
MAX_MEMLIMIT = 4 * 1024 * 1024 * 1024
MAX_EPOCH = 2**32 - 1  # the envelope stores the epoch in 32 bits
_KEYFILE_AAD = b"peerbackup keyfile v1"


@dataclass(frozen=True)
class KeySet:
    id_key: bytes
    data_keys: dict[int, bytes] = field(default_factory=dict)
    epoch: int = 0

    @classmethod
    def generate(cls, rand: Random) -> KeySet:
        return cls(id_key=rand(KEY_SIZE), data_keys={0: rand(KEY_SIZE)}, epoch=0)

    def data_key(self, epoch: int) -> bytes:
        try:
            return self.data_keys[epoch]
        except KeyError:
            raise FormatError("object", f"sealed under unknown key epoch {epoch}") from None

    @property
    def current(self) -> bytes:
        return self.data_keys[self.epoch]

    def rotated(self, rand: Random) -> KeySet:
        """A new data-key epoch for new data; old epochs stay readable."""
        keys = dict(self.data_keys)
        new_epoch = max(keys) + 1
        keys[new_epoch] = rand(KEY_SIZE)
        return KeySet(id_key=self.id_key, data_keys=keys, epoch=new_epoch)

    def to_wire(self) -> dict[str, Any]:
        return {"id_key": self.id_key, "data_keys": self.data_keys, "epoch": self.epoch}

    @classmethod
    def from_wire(cls, obj: Any) -> KeySet:
        what = "key set"
        if not isinstance(obj, dict):
            raise FormatError(what, "expected a map")
        id_key = codec.field(obj, "id_key", bytes, what)
        raw_keys = codec.field(obj, "data_keys", dict, what)
        epoch = codec.field(obj, "epoch", int, what)
        keys: dict[int, bytes] = {}
        for k, v in raw_keys.items():
            if (not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_EPOCH
                    or not isinstance(v, bytes) or len(v) != KEY_SIZE):
                raise FormatError(what, "bad data key entry")
            keys[k] = v
        if len(id_key) != KEY_SIZE or epoch not in keys:
            raise FormatError(what, "bad id key or epoch")
        return cls(id_key=id_key, data_keys=keys, epoch=epoch)


def kdf_from_wire(kdf: dict[Any, Any], what: str) -> KdfParams:
    """The Argon2id cost stored beside a sealed secret ({"ops", "mem"}), within bounds."""
    params = KdfParams(opslimit=codec.field(kdf, "ops", int, what), memlimit=codec.field(kdf, "mem", int, what))
    # Bounds keep a tampered file from making derivation fail oddly or allocate without limit.
    if not (KdfParams.weak().opslimit <= params.opslimit <= MAX_OPSLIMIT
            and KdfParams.weak().memlimit <= params.memlimit <= MAX_MEMLIMIT):
        raise FormatError(what, "key derivation cost out of range")
    return params


@dataclass(frozen=True)
class KeyFile:
    """A KeySet sealed under a key derived from one passphrase."""

    created: int  # unix seconds
    host: str
    user: str
    kdf: KdfParams
    salt: bytes
    nonce: bytes
    sealed: bytes

    @classmethod
    def create(
        cls, keys: KeySet, passphrase: bytes, kdf: KdfParams, rand: Random,
        now: int, host: str, user: str,
    ) -> KeyFile:
        salt = rand(SALT_SIZE)
        nonce = rand(NONCE_SIZE)
        wrapping = derive_key(passphrase, salt, kdf)
        sealed = seal(wrapping, codec.pack(keys.to_wire()), _KEYFILE_AAD, nonce)
        return cls(created=now, host=host, user=user, kdf=kdf, salt=salt, nonce=nonce, sealed=bytes(sealed))

    def open(self, passphrase: bytes) -> KeySet:
        wrapping = derive_key(passphrase, self.salt, self.kdf)
        try:
            plain = unseal(wrapping, self.sealed, _KEYFILE_AAD, self.nonce, "key file")
        except Exception:
            raise WrongPassword() from None
        return KeySet.from_wire(codec.unpack(plain, "key set"))

    def to_bytes(self) -> bytes:
        return codec.pack({
            "v": KEYFILE_VERSION, "created": self.created, "host": self.host, "user": self.user,
            "kdf": {"alg": "argon2id", "ops": self.kdf.opslimit, "mem": self.kdf.memlimit},
            "salt": self.salt, "nonce": self.nonce, "sealed": self.sealed,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyFile:
        what = "key file"
        obj = codec.unpack_map(data, what)
        version = codec.field(obj, "v", int, what)
        if version > KEYFILE_VERSION:
            raise UnsupportedVersion("key file", version, KEYFILE_VERSION)
        kdf = codec.field(obj, "kdf", dict, what)
        if kdf.get("alg") != "argon2id":
            raise FormatError(what, f"unknown key derivation {kdf.get('alg')!r}")
        params = kdf_from_wire(kdf, what)
        salt = codec.field(obj, "salt", bytes, what)
        nonce = codec.field(obj, "nonce", bytes, what)
        if len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
            raise FormatError(what, "bad salt or nonce length")
        return cls(
            created=codec.field(obj, "created", int, what),
            host=codec.field(obj, "host", str, what),
            user=codec.field(obj, "user", str, what),
            kdf=params,
            salt=salt,
            nonce=nonce,
            sealed=codec.field(obj, "sealed", bytes, what),
        )
