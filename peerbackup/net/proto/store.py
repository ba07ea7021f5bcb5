"""store: files of a backup node's repository, kept by storage peers (the holder side).

Writes and reads name the node, the kind of file and its name; the holder
checks who may do what from the control log (see office/peerstore/holder.py). File bytes
never travel inside msgpack: a put is a bulk frame (envelope.frame) whose signed
body names the size and BLAKE3 hash of the bytes that follow, and a get's answer
is framed the same way, so each side hashes a pack once and copies it little.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire
from peerbackup.storage.store import FileType

PUT_PATH = "/v1/store/put"
GET_PATH = "/v1/store/get"
LIST_PATH = "/v1/store/list"
CHALLENGE_PATH = "/v1/store/challenge"
DELETE_PATH = "/v1/store/delete"
USAGE_PATH = "/v1/store/usage"
MAX_FILE = 32 * 1024 * 1024
HASH_SIZE = 32


def _ftype(value: object, what: str) -> FileType:
    try:
        return FileType(str(value)) if isinstance(value, str) else FileType("")
    except ValueError:
        raise Malformed(f"{what}: unknown file kind {value!r}") from None


@dataclass(frozen=True)
class FileRef:
    node: str
    ftype: FileType
    name: str

    def fields(self) -> dict[str, object]:
        return {"node": self.node, "kind": self.ftype.value, "name": self.name}

    @classmethod
    def parse(cls, obj: dict[object, object], what: str) -> FileRef:
        node = _wire.get(obj, "node", str, what)
        name = _wire.get(obj, "name", str, what)
        if not 0 < len(node) <= 64 or not 0 < len(name) <= 128:
            raise Malformed(f"{what}: bad node or file name length")
        return cls(node, _ftype(obj.get("kind"), what), name)


def _size_hash(obj: dict[object, object], what: str) -> tuple[int, bytes]:
    size, digest = _wire.get(obj, "size", int, what), _wire.get(obj, "hash", bytes, what)
    if not 0 <= size <= MAX_FILE:
        raise Malformed(f"{what}: a file is at most {MAX_FILE} bytes")
    if len(digest) != HASH_SIZE:
        raise Malformed(f"{what}: bad hash length")
    return size, digest


@dataclass(frozen=True)
class Put:
    """The signed head of an upload: the file's bytes follow it in the frame."""

    ref: FileRef
    size: int
    hash: bytes  # BLAKE3 of the bytes that follow
    act_as: bytes = b""  # the coordinator's act-as token, for an agent writing as the node

    def to_wire(self) -> bytes:
        return _wire.encode({**self.ref.fields(), "size": self.size, "hash": self.hash, "actas": self.act_as})

    @classmethod
    def from_wire(cls, data: bytes) -> Put:
        what = "store put"
        obj = _wire.decode(data, what)
        return cls(FileRef.parse(obj, what), *_size_hash(obj, what), _wire.small_bytes(obj, "actas", what, default=b""))


@dataclass(frozen=True)
class Delete:
    """Move a file to the holder's trash; `grant` is the office-signed delete capability of an admin,
    `act_as` the coordinator's token for an agent's retention job (one of them is needed)."""

    ref: FileRef
    grant: bytes = b""
    act_as: bytes = b""

    def to_wire(self) -> bytes:
        return _wire.encode({**self.ref.fields(), "grant": self.grant, "act_as": self.act_as})

    @classmethod
    def from_wire(cls, data: bytes) -> Delete:
        what = "store delete"
        obj = _wire.decode(data, what)
        return cls(FileRef.parse(obj, what), _wire.small_bytes(obj, "grant", what),
                   _wire.small_bytes(obj, "act_as", what, default=b""))


@dataclass(frozen=True)
class Usage:
    """What a holder keeps: bytes used, its quota (-1: none) and packs per node."""

    used: int
    quota: int
    packs: tuple[tuple[str, int], ...]

    def to_wire(self) -> bytes:
        return _wire.encode({"used": self.used, "quota": self.quota, "packs": [list(p) for p in self.packs]})

    @classmethod
    def from_wire(cls, data: bytes) -> Usage:
        what = "store usage"
        obj = _wire.decode(data, what)
        return cls(_wire.get(obj, "used", int, what), _wire.get(obj, "quota", int, what),
                   _pairs(_wire.get(obj, "packs", list, what), what))


def _pairs(raw: list[object], what: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool)):
            raise Malformed(f"{what}: bad listing item")
        out.append((item[0], item[1]))
    return tuple(out)


@dataclass(frozen=True)
class Get:
    ref: FileRef
    offset: int = 0
    length: int = -1  # -1: to the end

    def to_wire(self) -> bytes:
        return _wire.encode({**self.ref.fields(), "off": self.offset, "len": self.length})

    @classmethod
    def from_wire(cls, data: bytes) -> Get:
        what = "store get"
        obj = _wire.decode(data, what)
        offset, length = _wire.get(obj, "off", int, what), _wire.get(obj, "len", int, what)
        if offset < 0 or length < -1 or length > MAX_FILE:
            raise Malformed(f"{what}: bad range")
        return cls(FileRef.parse(obj, what), offset, length)


@dataclass(frozen=True)
class Listing:
    node: str
    ftype: FileType

    def to_wire(self) -> bytes:
        return _wire.encode({"node": self.node, "kind": self.ftype.value})

    @classmethod
    def from_wire(cls, data: bytes) -> Listing:
        what = "store list"
        obj = _wire.decode(data, what)
        return cls(_wire.get(obj, "node", str, what), _ftype(obj.get("kind"), what))


@dataclass(frozen=True)
class Challenge:
    ref: FileRef
    nonce: bytes
    offset: int
    length: int

    def to_wire(self) -> bytes:
        return _wire.encode({**self.ref.fields(), "nonce": self.nonce, "off": self.offset, "len": self.length})

    @classmethod
    def from_wire(cls, data: bytes) -> Challenge:
        what = "store challenge"
        obj = _wire.decode(data, what)
        return cls(FileRef.parse(obj, what), _wire.get(obj, "nonce", bytes, what), _wire.get(obj, "off", int, what),
                   _wire.get(obj, "len", int, what))


@dataclass(frozen=True)
class Reply:
    """The answer to every store request: a proof, a listing, whether a put stored, or the
    size and hash of the bytes a get's framed answer carries after it."""

    data: bytes = b""
    stored: bool = False
    items: tuple[tuple[str, int], ...] = ()
    size: int = 0
    hash: bytes = bytes(HASH_SIZE)

    def to_wire(self) -> bytes:
        return _wire.encode({"data": self.data, "stored": self.stored, "items": [list(i) for i in self.items],
                             "size": self.size, "hash": self.hash})

    @classmethod
    def from_wire(cls, data: bytes) -> Reply:
        what = "store reply"
        obj = _wire.decode(data, what)
        if len(_wire.get(obj, "data", bytes, what)) > 1024:
            raise Malformed(f"{what}: oversized proof")
        return cls(_wire.get(obj, "data", bytes, what), _wire.get(obj, "stored", bool, what),
                   _pairs(_wire.get(obj, "items", list, what), what), *_size_hash(obj, what))
