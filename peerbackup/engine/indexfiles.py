"""The repository's index files, and the local index cache kept in line with them.

An index file lists packs and their blobs (read, checked against its name, written); `sync_index` loads the
ones the cache lacks, and `recover_unindexed_packs` indexes packs a writer stored but died before listing in
an index file, from their own headers. Functions of the store, the key set and the cache: `Repository`'s
methods of the same names call them with its own.
"""

from __future__ import annotations

from collections.abc import Callable

from peerbackup.core import codec
from peerbackup.core.crypto import Random, content_hash
from peerbackup.core.keys import KeySet
from peerbackup.core.objects import Kind, open_object, seal_object
from peerbackup.core.pack import (
    TRAILER_SIZE,
    BlobEntry,
    entries_from_wire,
    entries_to_wire,
    header_length,
    parse_header,
)
from peerbackup.engine.marks import load_condemned
from peerbackup.errors import FormatError, IntegrityError, NoSuchObject, PeerBackupError, UnsupportedVersion
from peerbackup.storage.indexcache import IndexCache
from peerbackup.storage.store import FileType, Store

INDEX_VERSION = 1
_INDEX_CONTEXT = b"index"


def sync_index(store: Store, keys: KeySet, index: IndexCache) -> None:
    """Bring the local index cache in line with the repository's index files."""
    listed = {name for name, _ in store.list(FileType.INDEX)}
    known = index.known_index_files()
    if known - listed:
        # An index file was removed (prune rewrote the index): rebuild from scratch.
        index.clear()
        known = set()
    for name in sorted(listed - known):
        try:
            packs = read_index_file(store, keys, name)
        except NoSuchObject:
            continue
        index.add_packs(packs, name)
    index.condemned = load_condemned(store)


def read_index_file(store: Store, keys: KeySet, name: str) -> list[tuple[bytes, list[BlobEntry]]]:
    what = f"index {name[:8]}"
    data = store.get(FileType.INDEX, name)
    if content_hash(data).hex() != name:
        raise IntegrityError(f"{what}: content does not match its name")
    obj = codec.unpack_map(open_object(keys, Kind.INDEX, data, _INDEX_CONTEXT, what), what)
    version = codec.field(obj, "v", int, what)
    if version > INDEX_VERSION:
        raise UnsupportedVersion(what, version, INDEX_VERSION)
    out = []
    for p in codec.field(obj, "packs", list, what):
        if not isinstance(p, dict) or not isinstance(p.get("id"), bytes):
            raise FormatError(what, "bad pack record")
        out.append((p["id"], entries_from_wire(p.get("blobs"), what)))
    return out


def write_index_file(
    store: Store, keys: KeySet, packs: list[tuple[bytes, list[BlobEntry]]], rand: Random, level: int,
) -> str:
    body = codec.pack({
        "v": INDEX_VERSION,
        "packs": [{"id": pid, "blobs": entries_to_wire(es)} for pid, es in packs],
    })
    data = seal_object(keys, Kind.INDEX, body, _INDEX_CONTEXT, rand, level)
    name = content_hash(data).hex()
    store.put(FileType.INDEX, name, data)
    return name


def read_pack_header(store: Store, keys: KeySet, pack_name: str) -> list[BlobEntry]:
    what = f"pack {pack_name[:8]}"
    size = store.size(FileType.DATA, pack_name)
    if size < TRAILER_SIZE:
        raise FormatError(what, "truncated pack")
    hlen = header_length(store.get(FileType.DATA, pack_name, size - TRAILER_SIZE), what)
    if hlen > size - TRAILER_SIZE:
        raise FormatError(what, "truncated pack")
    sealed = store.get(FileType.DATA, pack_name, size - TRAILER_SIZE - hlen, hlen)
    return parse_header(keys, sealed, size, what)


def recover_unindexed_packs(
    store: Store, keys: KeySet, index: IndexCache, rand: Random, level: int,
    report: Callable[[str], None] | None = None,
) -> int:
    """Index packs stored by a writer that died before writing its index file."""
    known = index.pack_ids()
    found: list[tuple[bytes, list[BlobEntry]]] = []
    listed: set[bytes] = set()
    for name, _size in store.list(FileType.DATA):
        try:
            pid = bytes.fromhex(name)
        except ValueError:
            continue
        listed.add(pid)
        # A condemned pack missing from the index is being deleted by a prune's sweep (or was, by one
        # that was killed): indexed again, it would outlive its mark and be reused once deleted.
        if pid in known or pid in index.condemned:
            continue
        try:
            found.append((pid, read_pack_header(store, keys, name)))
        except PeerBackupError as exc:
            if report:
                report(f"ignoring unreadable pack {name[:8]}: {exc}")
    if found:
        index.add_packs(found, None)
    # A pack this cache holds unindexed (its writer was killed between storing it and writing its index
    # file) that the store no longer has was deleted by a prune meanwhile: written into an index file now,
    # it would be listed there but missing (seen in a soak: gamma killed mid-backup, beta's prune).
    unindexed = index.unindexed_packs()
    gone = [p for p in unindexed if p not in listed]
    if gone:
        index.forget_packs(gone)
    stray = [(p, index.pack_entries(p)) for p in unindexed if p in listed]
    if stray:
        index.assign_index_file([p for p, _ in stray], write_index_file(store, keys, stray, rand, level))
    return len(found)
