"""Trying to break the trash of a storage peer: a deleted file stays in the holder's trash at least gc_grace
seconds of the holder's clock before it is freed; purge frees only the trash, never a live file, never
anything outside the holder's root. Documented in docs/nodes.md, "Destructive paths and what guards them".

A Hypothesis state machine runs random puts, deletes and purges (random graces) on a real Holder whose
clock steps forward and backward (clock corrections), against a model of what must be on disk; then
adversarial cases: trash names without a stamp, symlinks planted in the trash, a stamp in the future.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from peerbackup.core.crypto import content_hash
from peerbackup.errors import ObjectExists
from peerbackup.storage.holder import Holder
from peerbackup.storage.store import FileType

NODES = ("n1", "n2")
KINDS = (FileType.DATA, FileType.SNAPSHOT, FileType.CONFIG)
# Few distinct contents: the same file is put again after its deletion, and deleted twice in a second.
CONTENTS = tuple(bytes([i]) * (100 + 37 * i) for i in range(6))
DAY = 86400.0
START = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _name(kind: FileType, data: bytes) -> str:
    return "config" if kind == FileType.CONFIG else content_hash(data).hex()


def _disk_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for base in ("nodes", "trash") for p in (root / base).rglob("*")
               if p.is_file() and not p.is_symlink())


@dataclass
class Trashed:
    node: str
    kind: FileType
    data: bytes
    deleted_at: float  # the holder's clock when it was deleted
    stamp: int  # the time its grace counts from, as purge reads it from the name
    restamped_at: float | None = None  # a purge saw the clock before its stamp and restarted it


class TrashMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="trash-props-"))
        self.clock = Clock()
        self.holder = Holder(self.tmp / "held", quota=None, clock=self.clock, fsync=False)
        self.live: dict[tuple[str, FileType, str], bytes] = {}
        self.trash: list[Trashed] = []
        # A file next to the holder's root that nothing may ever touch.
        self.outside = self.tmp / "outside.1"
        self.outside.write_bytes(b"not the holder's")

    @rule(node=st.sampled_from(NODES), kind=st.sampled_from(KINDS), content=st.integers(0, len(CONTENTS) - 1))
    def put(self, node: str, kind: FileType, content: int) -> None:
        data = CONTENTS[content]
        key = (node, kind, _name(kind, data))
        if key in self.live and self.live[key] != data:
            with pytest.raises(ObjectExists):
                self.holder.put(node, kind, key[2], data)
            return
        assert self.holder.put(node, kind, key[2], data) == (key not in self.live)
        self.live[key] = data

    @rule(node=st.sampled_from(NODES), kind=st.sampled_from(KINDS), content=st.integers(0, len(CONTENTS) - 1))
    def delete(self, node: str, kind: FileType, content: int) -> None:
        name = _name(kind, CONTENTS[content])
        self.holder.delete(node, kind, name)  # a missing file is not an error
        data = self.live.pop((node, kind, name), None)
        if data is not None:
            self.trash.append(Trashed(node, kind, data, self.clock.now, math.ceil(self.clock.now)))

    @rule(seconds=st.one_of(st.integers(-3 * 86400, 9 * 86400).map(float),
                            st.integers(-50, 50).map(lambda t: t / 10)))
    def clock_steps(self, seconds: float) -> None:
        # Forward and backward: an NTP correction, a laptop's clock set by hand.
        self.clock.now = max(START - 30 * DAY, self.clock.now + seconds)

    @rule(grace=st.one_of(st.sampled_from((0.0, 1.0, 3600.0, DAY, 7 * DAY)), st.integers(0, 10 * 86400).map(float)))
    def purge(self, grace: float) -> None:
        now = self.clock.now
        freed: list[Trashed] = []
        for t in self.trash:
            if t.stamp > math.ceil(now):  # the clock went back past its stamp: its grace starts again from now
                t.stamp, t.restamped_at = math.ceil(now), now
            elif t.stamp <= now - grace:
                freed.append(t)
        assert self.holder.purge(grace) == sum(len(t.data) for t in freed)
        for t in freed:
            # Never before its grace: counted from its deletion, or, when a purge saw the clock before
            # that (a clock set back), from that purge.
            assert now - t.deleted_at >= grace or (t.restamped_at is not None and now - t.restamped_at >= grace)
            self.trash.remove(t)

    @invariant()
    def disk_is_the_model(self) -> None:
        root = self.holder.root
        for node in NODES:
            for kind in KINDS:
                listed = {name for name, _ in self.holder.listing(node, kind)}
                assert listed == {k[2] for k in self.live if k[:2] == (node, kind)}
                for name in listed:
                    assert self.holder.get(node, kind, name) == self.live[(node, kind, name)]
        on_disk = sorted(
            (p.relative_to(root / "trash").parts[0], p.parent.name, p.read_bytes(), int(p.name.rsplit(".", 1)[1]))
            for p in (root / "trash").rglob("*") if p.is_file())
        assert on_disk == sorted((t.node, t.kind.value, t.data, t.stamp) for t in self.trash)
        total = sum(map(len, self.live.values())) + sum(len(t.data) for t in self.trash)
        assert self.holder.used == _disk_bytes(root) == total
        # A restarted holder counts the same.
        assert Holder(root, quota=None, clock=self.clock, fsync=False).used == total
        assert self.outside.read_bytes() == b"not the holder's"

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def test_nothing_is_freed_before_its_grace_and_only_the_trash() -> None:
    run_state_machine_as_test(TrashMachine, settings=settings(
        derandomize=True, max_examples=150, stateful_step_count=40, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))


# ---- adversarial cases -----------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _holder(root: Path, clock: Clock) -> Holder:
    return Holder(root, quota=None, clock=clock, fsync=False)


def test_a_trash_name_without_a_stamp_counts_from_the_first_purge_that_sees_it(tmp_path: Path,
                                                                                clock: Clock) -> None:
    trash = tmp_path / "held" / "trash" / "n" / "data"
    trash.mkdir(parents=True)
    # No stamp, a superscript digit (isdigit() but not int()), a negative stamp, a dot file.
    names = ("junk", "x.\u00b2", "y.-5", ".hidden")
    for name in names:
        (trash / name).write_bytes(b"12345")
    h = _holder(tmp_path / "held", clock)
    assert h.used == 5 * len(names)
    assert h.purge(grace=100) == 0  # renamed with the current time, not freed
    assert sorted(p.name for p in trash.iterdir()) == sorted(f"{n}.{int(START)}" for n in names)
    clock.now += 99
    assert h.purge(grace=100) == 0
    clock.now += 1
    assert h.purge(grace=100) == 5 * len(names) and h.used == 0
    assert list(trash.iterdir()) == []


def test_a_stamp_in_the_future_counts_from_the_purge_that_sees_it(tmp_path: Path, clock: Clock) -> None:
    # Trashed while the clock was ten years ahead; the clock was then corrected.
    h = _holder(tmp_path / "held", clock)
    data = b"pack bytes" * 10
    name = content_hash(data).hex()
    h.put("n", FileType.DATA, name, data)
    clock.now = START + 3650 * DAY
    h.delete("n", FileType.DATA, name)
    clock.now = START
    assert h.purge(grace=DAY) == 0  # not now: its grace starts from this purge
    clock.now += DAY - 1
    assert h.purge(grace=DAY) == 0
    clock.now += 1
    assert h.purge(grace=DAY) == len(data) and h.used == 0


def test_the_grace_is_never_cut_short_by_a_fraction_of_a_second(tmp_path: Path, clock: Clock) -> None:
    h = _holder(tmp_path / "held", clock)
    data = b"x" * 50
    name = content_hash(data).hex()
    h.put("n", FileType.DATA, name, data)
    clock.now = START + 0.7
    h.delete("n", FileType.DATA, name)
    clock.now = START + 0.7 + 60 - 0.5
    assert h.purge(grace=60) == 0
    clock.now = START + 1 + 60  # the stamp is rounded up to the next second: never early, at most 1 s late
    assert h.purge(grace=60) == len(data)


def test_the_same_file_trashed_twice_in_one_second_keeps_both_copies(tmp_path: Path, clock: Clock) -> None:
    root = tmp_path / "held"
    h = _holder(root, clock)
    data = b"y" * 300
    name = content_hash(data).hex()
    for _ in range(2):
        h.put("n", FileType.DATA, name, data)
        h.delete("n", FileType.DATA, name)
    assert len(list((root / "trash" / "n" / "data").iterdir())) == 2
    assert h.used == _disk_bytes(root) == 2 * len(data)
    clock.now += 10
    assert h.purge(grace=10) == 2 * len(data) and h.used == 0


def test_purge_never_follows_a_symlink_out_of_the_trash(tmp_path: Path, clock: Clock) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.1"  # an old stamp: purge would free it if it got there
    victim.write_bytes(b"v" * 1000)
    root = tmp_path / "held"
    trash = root / "trash" / "n" / "data"
    trash.mkdir(parents=True)
    (trash / "evil.1").symlink_to(victim)
    (trash / "dangling.1").symlink_to(outside / "gone")
    (root / "trash" / "n" / "dir.1").symlink_to(outside, target_is_directory=True)
    kept = b"k" * 10
    (trash / "kept.1").write_bytes(kept)
    h = _holder(root, clock)  # a dangling link must not stop a holder from starting
    assert h.used == len(kept)  # a link's target is not the holder's
    assert h.purge(grace=0) == len(kept) and h.used == 0
    assert victim.read_bytes() == b"v" * 1000
    assert (trash / "evil.1").is_symlink() and (trash / "dangling.1").is_symlink()

    # The trash directory itself a symlink to somewhere else: purge does not go there.
    other = tmp_path / "held2"
    other.mkdir()
    (other / "trash").symlink_to(outside, target_is_directory=True)
    h2 = _holder(other, clock)
    assert h2.purge(grace=0) == 0
    assert victim.read_bytes() == b"v" * 1000


def test_a_file_trashed_while_purge_walks_keeps_its_whole_grace(tmp_path: Path, clock: Clock) -> None:
    h = _holder(tmp_path / "held", clock)
    files = {n: bytes([i]) * (10 + i) for i, n in enumerate(("x1", "y1", "x2", "y2"))}
    names = {n: content_hash(d).hex() for n, d in files.items()}
    for n, d in files.items():
        h.put(n[0], FileType.DATA, names[n], d)
    for n in ("x1", "y1"):
        h.delete(n[0], FileType.DATA, names[n])

    def purge_clock() -> float:
        # The purge has started: meanwhile, 5 s later, another thread deletes x2 and y2. Whichever of the
        # two directories the walk lists second holds a file trashed after the purge began.
        t = clock.now
        h.clock = clock
        clock.now += 5
        for n in ("x2", "y2"):
            h.delete(n[0], FileType.DATA, names[n])
        return t

    h.clock = purge_clock
    assert h.purge(grace=DAY) == 0
    clock.now = START + 5 + DAY - 1
    assert h.purge(grace=DAY) == len(files["x1"]) + len(files["y1"])  # x2 and y2 wait their whole grace
    clock.now += 1
    assert h.purge(grace=DAY) == len(files["x2"]) + len(files["y2"]) and h.used == 0



def test_a_restamp_and_a_deletion_never_take_the_same_trash_name(tmp_path: Path, clock: Clock,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Purge restamps x.FUTURE to x.NOW while another thread deletes the live x, also to x.NOW: the name
    # is chosen and taken under one lock, or one of the two renames overwrites the other's file.
    root = tmp_path / "held"
    h = _holder(root, clock)
    data = b"w" * 70
    name = content_hash(data).hex()
    h.put("n", FileType.DATA, name, data)
    clock.now = START + 100 * DAY
    h.delete("n", FileType.DATA, name)  # x.FUTURE, once the clock is set back
    clock.now = START
    h.put("n", FileType.DATA, name, data)
    other = threading.Thread(target=h.delete, args=("n", FileType.DATA, name))
    real_lexists = os.path.lexists

    def lexists(path: str | os.PathLike[str]) -> bool:
        found = real_lexists(path)
        if not other.is_alive() and other.ident is None:  # purge chose its name: the other deletion now
            other.start()
            other.join(0.5)  # blocked on the lock, or done
        return found

    monkeypatch.setattr(os.path, "lexists", lexists)
    assert h.purge(grace=DAY) == 0
    other.join()
    monkeypatch.undo()
    assert len(list((root / "trash" / "n" / "data").iterdir())) == 2
    assert h.used == _disk_bytes(root) == 2 * len(data)
