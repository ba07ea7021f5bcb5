"""Sparse files survive a round trip with their holes: bytes identical and allocated blocks (st_blocks) close
to the original's, on a real file system that has holes (the test fails, never skips, on one that has not)."""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from peerbackup.core import codec
from peerbackup.core.crypto import KdfParams
from peerbackup.core.tree import FILE, Node, decode_tree, encode_tree
from peerbackup.engine.backup import Archiver
from peerbackup.engine.check import check
from peerbackup.engine.diff import diff_trees
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.sparse import ZERO_RUN, DataReader, HoleMap, expand
from peerbackup.engine.walk import find_path
from peerbackup.errors import FormatError
from peerbackup.office.peerstore.reader import NodeReader
from peerbackup.storage.local import LocalStore
from tests.helpers import OLD, SMALL_CHUNKS

BLOCK = 4096
MiB = 1024 * 1024
PW = b"pw"

# A file's layout: (kind, blocks) runs, kind "hole" (never written), "data" (random bytes) or "zeros" (zeros
# written, so allocated: a real file's zero pages), then a tail of bytes past the last whole block.
Layout = tuple[list[tuple[str, int]], int]


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def require_holes(where: Path) -> None:
    """The property below means nothing on a file system without holes: fail loudly there."""
    probe = where / "hole-probe"
    with open(probe, "wb") as f:
        f.truncate(8 * MiB)
        f.seek(4 * MiB)
        f.write(b"x")
        f.flush()
        os.fsync(f.fileno())
        fd = f.fileno()
        try:
            first = os.lseek(fd, 0, os.SEEK_DATA)
        except OSError as exc:
            first = -1
            why = str(exc)
        else:
            why = f"SEEK_DATA from 0 found data at {first}"
    held = allocated(probe)
    probe.unlink()
    assert held < MiB and first >= 4 * MiB - BLOCK, (
        f"{where} is on a file system without holes (an 8 MiB file with one byte allocates {held} bytes; "
        f"{why}): run the tests with TMPDIR on ext4, xfs, btrfs or tmpfs")


def write_layout(path: Path, layout: Layout, seed: int) -> bytes:
    """Create the file (holes by truncate, data and zeros by pwrite); returns its expected bytes."""
    runs, tail = layout
    rng = random.Random(seed)
    want = bytearray()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = sum(n for _, n in runs) * BLOCK + tail
        os.ftruncate(fd, size)
        pieces = [*runs, (runs[-1][0] if runs else "data", 0)]
        for i, (kind, n) in enumerate(pieces):
            length = n * BLOCK if i < len(runs) else tail
            data = rng.randbytes(length) if kind == "data" else bytes(length)
            if kind != "hole" and length:
                os.pwrite(fd, data, len(want))
            want += data
    finally:
        os.close(fd)
    os.utime(path, (OLD, OLD))  # old enough for the file cache to trust
    return bytes(want)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    require_holes(tmp_path)
    store = LocalStore(tmp_path / "repo")
    Repository.init(store, PW, kdf=KdfParams.weak(), chunker=SMALL_CHUNKS)
    r = Repository.open(store, PW, cache_root=tmp_path / "cache", pack_size=256 * 1024)
    yield r
    r.close()


def backup_and_restore(repo: Repository, src: Path, out: Path, name: str) -> Node:
    """Back up src, restore it to out; the node of src/name in the snapshot."""
    result = Archiver(repo, workers=2).backup([str(src)])
    assert result.errors == []
    stats = Restorer(repo, workers=2).restore(result.snapshot.tree, str(out))
    assert stats.errors == []
    node = find_path(repo, result.snapshot.tree, str(src / name))
    assert node is not None
    return node


# ---- the round trip, over random layouts ----------------------------------------------------------------

runs = st.lists(st.tuples(st.sampled_from(["hole", "data", "zeros"]), st.integers(1, 64)), max_size=10)
# Zeros written in runs of at most 64 blocks (256 KiB) stay data: 10 of them cannot reach a whole aligned
# MiB, so the restored file must allocate what the original did, within 1 MiB.
layouts = st.tuples(runs, st.integers(0, BLOCK - 1))


@given(layout=layouts, seed=st.integers(0, 2**32 - 1))
@example(layout=([], 0), seed=0)  # empty
@example(layout=([("hole", 256)], 0), seed=0)  # all hole
@example(layout=([("hole", 300)], 17), seed=0)  # all hole, an odd size
@example(layout=([("hole", 64), ("data", 3)], 0), seed=1)  # hole at the start
@example(layout=([("data", 3), ("hole", 64)], 100), seed=2)  # hole at the end (the tail is hole too)
@example(layout=([("data", 1), ("zeros", 16), ("data", 1), ("hole", 1), ("data", 2)], 5), seed=3)
@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_round_trip_keeps_bytes_and_holes(repo: Repository, tmp_path: Path, layout: Layout, seed: int) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    src = work / "src"
    src.mkdir()
    want = write_layout(src / "f", layout, seed)
    node = backup_and_restore(repo, src, work / "out", "f")
    out = work / "out" / str(src).lstrip("/") / "f"
    assert out.read_bytes() == want
    # What the snapshot records adds up: data + holes = size, and every hole is zeros in the original.
    assert node.size == len(want)
    assert all(want[o:o + n] == bytes(n) for o, n in node.holes)
    places = [repo.index.lookup(c, for_reading=True) for c in node.content]
    data = sum(p[1].raw_length for p in places if p is not None)
    assert None not in places
    assert data + sum(n for _, n in node.holes) == node.size
    assert abs(allocated(out) - allocated(src / "f")) <= MiB, (allocated(out), allocated(src / "f"), node.holes)

    # --no-sparse: the same bytes, every block allocated.
    full = work / "full"
    Restorer(repo, workers=2, sparse=False).restore(repo.snapshots(errors=[])[-1].tree, str(full),
                                                     includes=[str(src / "f")])
    dense = full / str(src).lstrip("/") / "f"
    assert dense.read_bytes() == want
    assert allocated(dense) >= len(want) // BLOCK * BLOCK


def test_a_large_sparse_file_allocates_what_it_did(repo: Repository, tmp_path: Path) -> None:
    """64 MiB with 1 MiB of data in three places: restored in about 1 MiB, not 64."""
    src = tmp_path / "src"
    src.mkdir()
    layout = ([("hole", 1000), ("data", 100), ("hole", 5000), ("data", 56), ("hole", 10128), ("data", 100)], 0)
    want = write_layout(src / "disk.img", layout, 7)
    assert len(want) == 64 * MiB and allocated(src / "disk.img") <= 2 * MiB
    node = backup_and_restore(repo, src, tmp_path / "out", "disk.img")
    out = tmp_path / "out" / str(src).lstrip("/") / "disk.img"
    assert out.read_bytes() == want
    assert allocated(out) <= allocated(src / "disk.img") + MiB
    assert [o for o, _ in node.holes] == [0, 1100 * BLOCK, 6156 * BLOCK]
    assert check(repo, read_data=True).ok


def test_long_zero_runs_become_holes(repo: Repository, tmp_path: Path) -> None:
    """Zeros written out (a disk image copied without --sparse): every whole aligned MiB of them is a hole."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    head, tail = rng.randbytes(300_000), rng.randbytes(200_000)
    want = head + bytes(6 * MiB) + tail
    (src / "copied.img").write_bytes(want)
    node = backup_and_restore(repo, src, tmp_path / "out", "copied.img")
    out = tmp_path / "out" / str(src).lstrip("/") / "copied.img"
    assert out.read_bytes() == want
    assert node.holes == [(MiB, 5 * MiB)]  # the MiBs wholly inside the zeros
    assert allocated(src / "copied.img") >= len(want)
    assert allocated(out) <= len(want) - 5 * MiB + 64 * 1024


def test_zero_runs_shorter_than_an_aligned_mib_stay_data(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    want = b"a" * (MiB // 2) + bytes(MiB + MiB // 4) + b"b"  # 1.25 MiB of zeros, no whole aligned MiB in it
    (src / "f").write_bytes(want)
    node = backup_and_restore(repo, src, tmp_path / "out", "f")
    assert node.holes == []
    assert (tmp_path / "out" / str(src).lstrip("/") / "f").read_bytes() == want


# ---- the file cache, diff, download ---------------------------------------------------------------------


def test_an_unchanged_sparse_file_is_not_read_again_and_keeps_its_holes(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    want = write_layout(src / "db", ([("data", 3), ("hole", 600), ("data", 2), ("hole", 100)], 9), 4)
    first = Archiver(repo).backup([str(src)]).snapshot
    second = Archiver(repo).backup([str(src)]).snapshot
    assert (second.summary.files_unmodified, second.summary.bytes_read) == (1, 0)
    a, b = find_path(repo, first.tree, str(src / "db")), find_path(repo, second.tree, str(src / "db"))
    assert a is not None and b is not None and a.holes and b.holes == a.holes
    assert list(diff_trees(repo, first.tree, second.tree)) == []
    Restorer(repo).restore(second.tree, str(tmp_path / "out"))
    out = tmp_path / "out" / str(src).lstrip("/") / "db"
    assert out.read_bytes() == want and allocated(out) <= allocated(src / "db") + MiB


def test_a_file_cache_from_before_holes_has_a_sparse_file_read_once_more(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_layout(src / "db", ([("data", 3), ("hole", 600)], 0), 4)
    write_layout(src / "plain", ([("data", 3)], 0), 5)
    Archiver(repo).backup([str(src)])
    db = sqlite3.connect(Path(repo.cache_dir) / "files.sqlite")
    db.execute("UPDATE files SET holes = NULL")  # what a cache of the previous release holds
    db.commit()
    db.close()
    snap = Archiver(repo).backup([str(src)]).snapshot
    assert (snap.summary.files_changed, snap.summary.files_unmodified) == (1, 1)  # the sparse one, read again
    node = find_path(repo, snap.tree, str(src / "db"))
    assert node is not None and node.holes == [(3 * BLOCK, 600 * BLOCK)]


def test_diff_sees_data_that_moved_across_a_hole(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_layout(src / "f", ([("data", 1), ("hole", 10), ("data", 1)], 0), 1)
    a = Archiver(repo).backup([str(src)]).snapshot
    data = (src / "f").read_bytes()
    with open(src / "f", "r+b") as f:  # the same data stream and size and mtime, the hole moved: another file
        f.truncate(0)
        f.truncate(len(data))
        os.pwrite(f.fileno(), data[:BLOCK], 0)
        os.pwrite(f.fileno(), data[11 * BLOCK:], 2 * BLOCK)
    os.utime(src / "f", (OLD, OLD))
    b = Archiver(repo).backup([str(src)]).snapshot
    x, y = find_path(repo, a.tree, str(src / "f")), find_path(repo, b.tree, str(src / "f"))
    assert x is not None and y is not None and (x.content, x.mtime_ns) == (y.content, y.mtime_ns)
    assert x.holes != y.holes
    assert ("M", str(src / "f")) in list(diff_trees(repo, a.tree, b.tree))


def test_a_download_has_the_holes_as_zeros(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    want = write_layout(src / "f", ([("hole", 300), ("data", 2), ("hole", 5), ("data", 1), ("hole", 2)], 3), 2)
    snap = Archiver(repo).backup([str(src)]).snapshot
    size, pieces = NodeReader(repo).file_chunks(snap.id, str(src / "f"))
    assert size == len(want) and b"".join(pieces) == want


# ---- restore over existing files --------------------------------------------------------------------------


def test_restore_over_a_file_of_garbage_leaves_zeros_in_the_holes(repo: Repository, tmp_path: Path) -> None:
    """The invariant: a hole is only ever a range the snapshot records as zeros, so restore writes nothing
    there; what was in the target before must not show through."""
    src = tmp_path / "src"
    src.mkdir()
    want = write_layout(src / "f", ([("data", 2), ("hole", 300), ("data", 1), ("hole", 50)], 11), 6)
    snap = Archiver(repo).backup([str(src)]).snapshot
    out = tmp_path / "out"
    target = out / str(src).lstrip("/") / "f"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\xff" * (len(want) + 12345))  # longer, and nothing but non-zero bytes
    stats = Restorer(repo, overwrite=True).restore(snap.tree, str(out))
    assert stats.errors == []
    assert target.read_bytes() == want
    assert allocated(target) <= allocated(src / "f") + MiB


# ---- the format --------------------------------------------------------------------------------------------


def test_a_tree_is_version_2_only_when_a_file_in_it_has_holes() -> None:
    plain = Node("a", FILE, size=3, content=[b"\x01" * 32])
    holey = Node("b", FILE, size=10, content=[b"\x02" * 32], holes=[(0, 4), (8, 2)])
    assert codec.unpack_map(encode_tree([plain]), "t")["v"] == 1  # unchanged tree ids for files without holes
    assert codec.unpack_map(encode_tree([plain, holey]), "t")["v"] == 2
    assert decode_tree(encode_tree([plain, holey]))[1].holes == [(0, 4), (8, 2)]
    assert decode_tree(encode_tree([plain]))[0].holes == []


@pytest.mark.parametrize("holes", [
    [[4, 2], [0, 1]],  # out of order
    [[0, 4], [3, 2]],  # overlapping
    [[8, 3]],  # past the end
    [[2, 0]],  # empty
    [[-1, 2]],  # negative
    [[1, 2, 3]],
    [["1", 2]],
    [[True, 2]],
    "holes",
])
def test_holes_a_reader_cannot_trust_are_refused(holes: object) -> None:
    w = Node("b", FILE, size=10, content=[]).to_wire()
    w["h"] = holes
    with pytest.raises(FormatError):
        decode_tree(codec.pack({"v": 2, "nodes": [w]}))


# ---- the pure parts ----------------------------------------------------------------------------------------


@st.composite
def holes_and_data(draw: st.DrawFn) -> tuple[list[tuple[int, int]], bytes, int]:
    """Random holes over a small file, its data stream, and a piece size to cut that stream into."""
    size = draw(st.integers(0, 3000))
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=12)))
    holes = [(a, b - a) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if b > a]
    merged: list[tuple[int, int]] = []
    for o, n in holes:
        if merged and merged[-1][0] + merged[-1][1] == o:
            merged[-1] = (merged[-1][0], merged[-1][1] + n)
        else:
            merged.append((o, n))
    data = bytes(draw(st.binary(min_size=size - sum(n for _, n in merged), max_size=size - sum(n for _, n in merged))))
    return merged, data, draw(st.integers(1, 500))


@given(holes_and_data())
@settings(max_examples=300, derandomize=True, deadline=None)
def test_hole_map_and_expand_put_the_data_around_the_holes(case: tuple[list[tuple[int, int]], bytes, int]) -> None:
    holes, data, piece = case
    size = len(data) + sum(n for _, n in holes)
    want = bytearray(size)
    it = iter(data)
    for i in range(size):  # the slow, obvious way
        if not any(o <= i < o + n for o, n in holes):
            want[i] = next(it)
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    assert b"".join(expand(holes, pieces)) == want
    placed = bytearray(size)
    m = HoleMap(holes)
    for start in range(0, len(data), piece):
        chunk = data[start:start + piece]
        for file_off, at, n in m.ranges(start, len(chunk)):
            placed[file_off:file_off + n] = chunk[at:at + n]
    assert placed == want


def test_a_file_that_shrinks_while_read_records_no_invented_hole(tmp_path: Path) -> None:
    """The reader stops at end of file: the layout it reports covers what it read, and no more."""
    p = tmp_path / "f"
    p.write_bytes(os.urandom(3 * ZERO_RUN))
    fd = os.open(p, os.O_RDONLY)
    try:
        r = DataReader(fd, 3 * ZERO_RUN)
        buf = memoryview(bytearray(ZERO_RUN))
        assert r.readinto(buf) == ZERO_RUN
        os.truncate(p, ZERO_RUN + 10)
        got = ZERO_RUN
        while n := r.readinto(buf):
            got += n
        assert r.readinto(buf) == 0  # and stays there, asked again
    finally:
        os.close(fd)
    assert got == ZERO_RUN + 10
    assert r.layout(got) == (ZERO_RUN + 10, [])
