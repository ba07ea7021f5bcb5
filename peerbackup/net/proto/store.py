"""store: files of a backup node's repository, kept by storage peers (the holder side).

Writes and reads name the node, the kind of file and its name; the holder
checks who may do what from the control log (see office/storage.py).
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
MAX_FILE = 32 * 1024 * 1024


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


@dataclass(frozen=True)
class Put:
    ref: FileRef
    data: bytes

    def to_wire(self) -> bytes:
        return _wire.encode({**self.ref.fields(), "data": self.data})

    @classmethod
    def from_wire(cls, data: bytes) -> Put:
        what = "store put"
        obj = _wire.decode(data, what)
        payload = _wire.get(obj, "data", bytes, what)
        if len(payload) > MAX_FILE:
            raise Malformed(f"{what}: a file is at most {MAX_FILE} bytes")
        return cls(FileRef.parse(obj, what), payload)


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
    """The answer to every store request: data read, a proof, a listing, or whether a put stored."""

    data: bytes = b""
    stored: bool = False
    items: tuple[tuple[str, int], ...] = ()

    def to_wire(self) -> bytes:
        return _wire.encode({"data": self.data, "stored": self.stored, "items": [list(i) for i in self.items]})

    @classmethod
    def from_wire(cls, data: bytes) -> Reply:
        what = "store reply"
        obj = _wire.decode(data, what)
        items = []
        for item in _wire.get(obj, "items", list, what):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], int)):
                raise Malformed(f"{what}: bad listing item")
            items.append((item[0], item[1]))
        return cls(_wire.get(obj, "data", bytes, what), _wire.get(obj, "stored", bool, what), tuple(items))
