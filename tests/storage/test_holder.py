"""The holder side of the peer store: per-node namespaces, content names, quota, challenges, scrub, trash."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from peerbackup.core.crypto import content_hash
from peerbackup.errors import IntegrityError, NoSuchObject, ObjectExists, QuotaExceeded, StoreError, StoreFull
from peerbackup.storage.holder import Holder
from peerbackup.storage.store import FileType

RNG = random.Random(9)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def pack(size: int = 1000) -> tuple[str, bytes]:
    data = RNG.randbytes(size)
    return content_hash(data).hex(), data


@pytest.fixture
def holder(tmp_path: Path) -> Holder:
    return Holder(tmp_path / "held", quota=None, clock=Clock(), fsync=False)


def test_put_get_list_per_node(holder: Holder) -> None:
    name, data = pack()
    assert holder.put("accounts", FileType.DATA, name, data) is True
    assert holder.get("accounts", FileType.DATA, name) == data
    assert holder.get("accounts", FileType.DATA, name, 10, 20) == data[10:30]
    assert holder.has("accounts", FileType.DATA, name) and not holder.has("design", FileType.DATA, name)
    assert holder.listing("accounts", FileType.DATA) == [(name, len(data))]
    assert holder.listing("design", FileType.DATA) == []
    with pytest.raises(NoSuchObject):
        holder.get("design", FileType.DATA, name)
    assert holder.usage() == {"used": len(data), "quota": None, "packs": {"accounts": 1}}


def test_retried_upload_is_idempotent_and_files_are_immutable(holder: Holder) -> None:
    name, data = pack()
    holder.put("n", FileType.DATA, name, data)
    assert holder.put("n", FileType.DATA, name, data) is False
    assert holder.used == len(data)
    # The config is the one immutable file not named by its content: other bytes are refused.
    holder.put("n", FileType.CONFIG, "config", b"one")
    with pytest.raises(ObjectExists):
        holder.put("n", FileType.CONFIG, "config", b"two")
    assert holder.get("n", FileType.CONFIG, "config") == b"one"
    # A lock is rewritten in place by its owner, and removed at once.
    holder.put("n", FileType.LOCK, "l1", b"t=0")
    holder.put("n", FileType.LOCK, "l1", b"t=30")
    assert holder.get("n", FileType.LOCK, "l1") == b"t=30"
    holder.delete("n", FileType.LOCK, "l1")
    assert not holder.has("n", FileType.LOCK, "l1")


def test_signed_hash_must_match(holder: Holder) -> None:
    name, data = pack()
    with pytest.raises(IntegrityError, match="signed hash"):
        holder.put("n", FileType.DATA, name, data, digest=bytes(32))
    assert holder.put("n", FileType.DATA, name, data, digest=bytes.fromhex(name)) is True
    # Deleting a pack moves it to the trash: it still counts until purged.
    holder.delete("n", FileType.DATA, name)
    assert not holder.has("n", FileType.DATA, name) and holder.used == len(data)


def test_bytes_must_match_a_content_name(holder: Holder) -> None:
    name, data = pack()
    with pytest.raises(IntegrityError, match="do not match their name"):
        holder.put("n", FileType.DATA, name, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        holder.put("n", FileType.INDEX, "00" * 32, data)
    assert holder.used == 0 and holder.listing("n", FileType.DATA) == []


@pytest.mark.parametrize("node", ["../x", "a/b", ".hidden", "", "A", "x" * 64])
def test_path_tricks_in_node_names_are_refused(holder: Holder, node: str) -> None:
    name, data = pack()
    with pytest.raises(StoreError):
        holder.put(node, FileType.DATA, name, data)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", ".x", ""])
def test_path_tricks_in_file_names_are_refused(holder: Holder, name: str) -> None:
    with pytest.raises(StoreError):
        holder.put("n", FileType.LOCK, name, b"x")  # the one kind with free names
    with pytest.raises(IntegrityError):
        holder.put("n", FileType.SNAPSHOT, name, b"x")  # the others must be the hash of their bytes


def test_quota_is_enforced_and_survives_a_restart(tmp_path: Path) -> None:
    h = Holder(tmp_path / "held", quota=2500, clock=Clock(), fsync=False)
    a, b, c = pack(1000), pack(1000), pack(1000)
    h.put("n", FileType.DATA, *a)
    h.put("n", FileType.DATA, *b)
    with pytest.raises(QuotaExceeded, match="picks another holder"):
        h.put("n", FileType.DATA, *c)
    assert not h.has("n", FileType.DATA, c[0]) and h.used == 2000
    again = Holder(tmp_path / "held", quota=2500, clock=Clock(), fsync=False)
    assert again.used == 2000


def test_challenge_proves_holding_a_range(holder: Holder) -> None:
    name, data = pack(5000)
    holder.put("n", FileType.DATA, name, data)
    nonce = RNG.randbytes(32)
    proof = holder.challenge("n", FileType.DATA, name, nonce, 1234, 500)
    assert proof == blake3.blake3(nonce + data[1234:1734]).digest()
    assert proof != holder.challenge("n", FileType.DATA, name, RNG.randbytes(32), 1234, 500)
    for bad in ((nonce, -1, 10), (nonce, 0, 0), (b"short", 0, 10), (nonce, 0, 2 * 1024 * 1024)):
        with pytest.raises(StoreError):
            holder.challenge("n", FileType.DATA, name, *bad)


def test_scrub_finds_flipped_bytes(holder: Holder, tmp_path: Path) -> None:
    good, bad = pack(), pack()
    holder.put("n", FileType.DATA, *good)
    holder.put("n", FileType.DATA, *bad)
    path = holder.store("n").path(FileType.DATA, bad[0])
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert holder.scrub("n") == [bad[0]]


def test_trash_keeps_files_for_the_grace_time(tmp_path: Path) -> None:
    clock = Clock()
    h = Holder(tmp_path / "held", quota=None, clock=clock, fsync=False)
    name, data = pack()
    h.put("n", FileType.DATA, name, data)
    h.trash("n", FileType.DATA, name)
    h.trash("n", FileType.DATA, name)  # a missing file is not an error
    assert not h.has("n", FileType.DATA, name)
    assert h.used == len(data)  # still on disk, in the trash
    clock.now += 100
    assert h.purge(grace=3600) == 0 and h.used == len(data)
    clock.now += 3600
    assert h.purge(grace=3600) == len(data) and h.used == 0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs), always unmounted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_a_clean_refusal(tiny_fs: Path) -> None:
    h = Holder(tiny_fs, quota=None, clock=Clock(), fsync=True)
    small = pack(100_000)
    h.put("n", FileType.DATA, *small)
    big = pack(2 * 1024 * 1024)
    with pytest.raises(StoreFull):
        h.put("n", FileType.DATA, *big)
    assert h.used == 100_000 and h.listing("n", FileType.DATA) == [(small[0], 100_000)]
    assert h.get("n", FileType.DATA, small[0]) == small[1]


def test_a_trashed_pack_is_not_served_from_a_cached_descriptor(holder: Holder) -> None:
    # Regression: reads keep pack descriptors open; a pack moved to the trash was still served.
    name, data = pack()
    holder.put("n", FileType.DATA, name, data)
    assert holder.get("n", FileType.DATA, name, 0, 10) == data[:10]
    holder.trash("n", FileType.DATA, name)
    with pytest.raises(NoSuchObject):
        holder.get("n", FileType.DATA, name, 0, 10)
