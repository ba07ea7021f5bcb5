"""Restore reads small files' chunks pack range by pack range, and reads them right."""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import peerbackup.engine.repository as repository
from peerbackup.core.crypto import KdfParams
from peerbackup.core.objects import Kind
from peerbackup.engine.backup import Archiver
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.restorefiles import SMALL_FILE, TINY_FILE
from peerbackup.engine.walk import walk
from peerbackup.errors import PeerBackupError
from peerbackup.storage.local import LocalStore
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import FileType
from tests.helpers import SMALL_CHUNKS, make_tree, snapshot_of

PW = b"pw"


class CountingStore(LocalStore):
    """Counts the reads of each pack."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()

    def get(self, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if ftype == FileType.DATA:
            self.reads[name] += 1
        return super().get(ftype, name, offset, length)


def open_repo(store: LocalStore | MemoryStore, tmp_path: Path) -> Repository:
    Repository.init(store, PW, kdf=KdfParams.weak(), chunker=SMALL_CHUNKS)
    return Repository.open(store, PW, cache_root=tmp_path / "cache", pack_size=64 * 1024)


def test_small_files_restore_reads_each_pack_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "repo")
    repo = open_repo(store, tmp_path)
    src = tmp_path / "src"
    rng = random.Random(7)
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(70):  # incompressible, so the 210 files fill several 64 KiB packs
            (src / f"d{d}" / f"f{i}").write_bytes(rng.randbytes(rng.randint(1, 3000)))
    snap = Archiver(repo).backup([str(src)]).snapshot
    kinds = {p.hex(): {e.kind for e in repo.index.pack_entries(p)} for p in repo.index.pack_ids()}
    data_packs = {p for p, k in kinds.items() if k == {Kind.DATA}}
    assert len(data_packs) > 3
    store.reads.clear()
    stats = Restorer(repo).restore(snap.tree, str(tmp_path / "out"))
    assert stats.errors == [] and stats.files == 210
    assert snapshot_of(tmp_path / "out" / str(src).lstrip("/")) == snapshot_of(src)
    # One read per pack for the whole window of files (it was one per chunk).
    assert {p: store.reads[p] for p in data_packs} == dict.fromkeys(data_packs, 1)
    # Trees: the root's, then its directory's subtrees read ahead together (per level).
    assert sum(n for p, n in store.reads.items() if p not in data_packs) <= len(src.parts) + 1
    repo.close()


def test_a_damaged_chunk_of_a_small_file_is_reported_and_the_rest_written(tmp_path: Path) -> None:
    store = MemoryStore()
    repo = open_repo(store, tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(3).randbytes(200_000)  # several chunks, a "small" file all the same
    (src / "f").write_bytes(data)
    os.chmod(src / "f", 0o640)
    snap = Archiver(repo).backup([str(src)]).snapshot
    content = next(n.content for _, n in walk(repo, snap.tree) if n.name == "f")
    chunks = [p for p in map(repo.index.lookup, content) if p is not None]
    assert len(chunks) == len(content) > 2
    pack, entry = chunks[1]
    sealed = bytearray(store.get(FileType.DATA, pack.hex()))
    sealed[entry.offset + entry.length // 2] ^= 1
    store.delete(FileType.DATA, pack.hex())
    store.put(FileType.DATA, pack.hex(), bytes(sealed))
    stats = Restorer(repo).restore(snap.tree, str(tmp_path / "out"))
    assert len(stats.errors) == 1 and f"chunk {entry.id.hex()[:8]}" in stats.errors[0]
    out = tmp_path / "out" / str(src).lstrip("/") / "f"
    got = out.read_bytes()
    assert len(got) == len(data)
    a = chunks[0][1].raw_length
    b = a + entry.raw_length
    assert got[:a] == data[:a] and got[b:] == data[b:] and got[a:b] == bytes(b - a)
    assert os.stat(out).st_mode & 0o7777 == 0o640
    repo.close()


def test_read_blobs_agrees_with_read_blob_at_and_lookup_many_with_lookup(tmp_path: Path) -> None:
    store = MemoryStore()
    repo = open_repo(store, tmp_path)
    make_tree(tmp_path / "src")
    Archiver(repo).backup([str(tmp_path / "src")])
    places = {i: (p, e) for i, p, e in repo.index.all_blobs() if e.kind == Kind.DATA}
    ids = sorted(places)
    absent = [bytes([n]) * 32 for n in range(3)]
    packs = sorted({p for p, _ in places.values()})
    # A pack cut short: its tail's blobs must come back as errors, never as other bytes.
    cut = packs[0].hex()
    head = store.get(FileType.DATA, cut)[:40_000]
    store.delete(FileType.DATA, cut)
    store.put(FileType.DATA, cut, head)
    gap, span = repository.READ_GAP, repository.READ_SPAN

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.sets(st.sampled_from(ids)), st.integers(0, 70_000), st.integers(1, 200_000),
           st.sets(st.sampled_from(packs)), st.booleans())
    def check(subset: set[bytes], g: int, s: int, condemned: set[bytes], reading: bool) -> None:
        repository.READ_GAP, repository.READ_SPAN = g, s
        try:
            got = repo.read_blobs(Kind.DATA, {i: places[i] for i in subset})
        finally:
            repository.READ_GAP, repository.READ_SPAN = gap, span
        assert got.keys() == subset
        for i in subset:
            try:
                want: object = repo.read_blob_at(Kind.DATA, i, *places[i])
            except PeerBackupError as exc:
                want = str(exc)
            assert (str(got[i]) if isinstance(got[i], PeerBackupError) else got[i]) == want
        repo.index.condemned = condemned
        try:
            many = repo.index.lookup_many([*subset, *absent], for_reading=reading)
            one = {i: repo.index.lookup(i, for_reading=reading) for i in [*subset, *absent]}
        finally:
            repo.index.condemned = set()
        assert many == {i: v for i, v in one.items() if v is not None}

    check()
    repo.close()



def test_tiny_files_are_written_by_one_thread_and_others_by_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three threads writing 10 KiB files spent more in GIL hand-offs than in writing; files of a
    # few hundred KiB still want the pool's cores to decrypt and decompress them.
    repo = open_repo(LocalStore(tmp_path / "repo"), tmp_path)
    src = tmp_path / "src"
    rng = random.Random(8)
    for d in range(4):
        (src / "tiny" / f"d{d}").mkdir(parents=True)
        for i in range(200):
            (src / "tiny" / f"d{d}" / f"f{i}").write_bytes(rng.randbytes(rng.randint(0, 20_000)))
    (src / "other").mkdir()
    (src / "other" / "large").write_bytes(rng.randbytes(SMALL_FILE + 1))
    for i in range(30):
        (src / "other" / f"medium{i}").write_bytes(rng.randbytes(TINY_FILE * 2))
    snap = Archiver(repo).backup([str(src)]).snapshot
    opened_by: dict[str, str] = {}
    real = Restorer._open_out

    def open_out(self: Restorer, path: str) -> int | None:
        opened_by[path] = threading.current_thread().name
        return real(self, path)

    monkeypatch.setattr(Restorer, "_open_out", open_out)
    try:
        for part, files in (("tiny", 800), ("other", 31)):
            opened_by.clear()
            out = tmp_path / f"out-{part}"
            stats = Restorer(repo, workers=3).restore(snap.tree, str(out), includes=[f"{src}/{part}"])
            assert stats.errors == [] and stats.files == files
            assert snapshot_of(out / str(src / part).lstrip("/")) == snapshot_of(src / part)
            threads = set(opened_by.values())
            assert threads == {"restore-small_0"} if part == "tiny" else threads <= {f"restore_{i}" for i in range(3)}
    finally:
        repo.close()
