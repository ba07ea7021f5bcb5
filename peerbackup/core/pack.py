"""Pack files: many sealed blobs, then a sealed header that lists them.

    blob envelope ... | header envelope | header length u32 BE | b"PBK1"

The header sits at the end so a pack is written in one streaming pass, and it
is sealed so a storage holder learns neither ids nor sizes. A pack is named by
the hash of all its bytes, so any reader can tell a damaged pack by its name.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peerbackup.core import codec
from peerbackup.core.crypto import ID_SIZE, Random, content_hash_of
from peerbackup.core.keys import KeySet
from peerbackup.core.objects import Kind, open_object, seal_object
from peerbackup.errors import FormatError, UnsupportedVersion

PACK_VERSION = 1
MAGIC = b"PBK1"
_TRAILER = struct.Struct(">I4s")
TRAILER_SIZE = _TRAILER.size
_HEADER_CONTEXT = b"pack header"
# A 16 MiB pack of tiny tree blobs needs at most a few MiB of header.
MAX_HEADER = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """Where one blob lives inside a pack."""

    kind: Kind
    id: bytes
    offset: int
    length: int  # sealed length, as stored
    raw_length: int  # plaintext length

    def to_wire(self) -> list[Any]:
        return [int(self.kind), self.id, self.offset, self.length, self.raw_length]

    @classmethod
    def from_wire(cls, obj: Any, what: str) -> BlobEntry:
        if not isinstance(obj, list) or len(obj) != 5:
            raise FormatError(what, "bad blob entry")
        kind, blob_id, offset, length, raw = obj
        if (
            not isinstance(blob_id, bytes) or len(blob_id) != ID_SIZE
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                       for x in (kind, offset, length, raw))
            or kind not in (Kind.DATA, Kind.TREE)
        ):
            raise FormatError(what, "bad blob entry")
        return cls(Kind(kind), blob_id, offset, length, raw)


def entries_to_wire(entries: list[BlobEntry]) -> list[list[Any]]:
    return [e.to_wire() for e in entries]


def entries_from_wire(obj: Any, what: str) -> list[BlobEntry]:
    if not isinstance(obj, list):
        raise FormatError(what, "blob list is not a list")
    return [BlobEntry.from_wire(e, what) for e in obj]


class PackWriter:
    """Accumulates sealed blobs until the pack is full: in memory, or handed to `sink` as they come.

    With a sink (the engine streams the pack to the store) the writer keeps only the entries; the
    caller ends the pack with the pieces of tail() and names it by the hash of everything it sank.
    """

    def __init__(self, sink: Callable[[bytes | bytearray], None] | None = None) -> None:
        # Pieces, joined once in finish(): appending to one growing buffer would
        # copy it again and again under the caller's lock.
        self._pieces: list[bytes | bytearray] = []
        self._sink = sink
        self._size = 0
        self.entries: list[BlobEntry] = []

    def __len__(self) -> int:
        return self._size

    @property
    def count(self) -> int:
        return len(self.entries)

    def add(self, kind: Kind, blob_id: bytes, sealed: bytes | bytearray, raw_length: int) -> BlobEntry:
        entry = BlobEntry(kind, blob_id, self._size, len(sealed), raw_length)
        if self._sink is None:
            self._pieces.append(sealed)
        else:
            self._sink(sealed)
        self._size += len(sealed)
        self.entries.append(entry)
        return entry

    def finish(self, keys: KeySet, rand: Random) -> tuple[bytes, list[bytes | bytearray]]:
        """Return (pack id, the pack as a list of pieces).

        The pieces are handed to the store as they are: joining them would hold
        a second copy of the pack in memory.
        """
        pieces: list[bytes | bytearray] = [*self._pieces, *self.tail(keys, rand)]
        self._pieces, self._size = [], 0
        return content_hash_of(pieces), pieces

    def tail(self, keys: KeySet, rand: Random) -> list[bytes | bytearray]:
        """The pieces after the last blob: the sealed header listing the entries, and the trailer."""
        header = codec.pack({"v": PACK_VERSION, "blobs": entries_to_wire(self.entries)})
        sealed = seal_object(keys, Kind.PACK_HEADER, header, _HEADER_CONTEXT, rand)
        return [sealed, _TRAILER.pack(len(sealed), MAGIC)]


def header_length(trailer: bytes, what: str) -> int:
    """Length of the sealed header, from the last TRAILER_SIZE bytes of a pack."""
    if len(trailer) != TRAILER_SIZE:
        raise FormatError(what, "truncated pack")
    length, magic = _TRAILER.unpack(trailer)
    if magic != MAGIC:
        raise FormatError(what, "not a pack (bad magic)")
    if length > MAX_HEADER:
        raise FormatError(what, "pack header too large")
    return int(length)


def parse_header(keys: KeySet, sealed: bytes, pack_size: int, what: str) -> list[BlobEntry]:
    obj = codec.unpack_map(open_object(keys, Kind.PACK_HEADER, sealed, _HEADER_CONTEXT, what), what)
    version = codec.field(obj, "v", int, what)
    if version > PACK_VERSION:
        raise UnsupportedVersion(what, version, PACK_VERSION)
    entries = entries_from_wire(obj.get("blobs"), what)
    limit = pack_size - len(sealed) - TRAILER_SIZE
    for e in entries:
        if e.offset + e.length > limit:
            raise FormatError(what, "blob entry points outside the pack")
    return entries


def read_pack(keys: KeySet, data: bytes, what: str) -> list[BlobEntry]:
    """Parse the header of a whole pack held in memory."""
    if len(data) < TRAILER_SIZE:
        raise FormatError(what, "truncated pack")
    hlen = header_length(data[-TRAILER_SIZE:], what)
    if hlen > len(data) - TRAILER_SIZE:
        raise FormatError(what, "truncated pack")
    return parse_header(keys, data[-TRAILER_SIZE - hlen:-TRAILER_SIZE], len(data), what)
