"""The state machine that tries to break prune's invariant (test_prune_properties.py, test_prune_kills.py).

Over a real small repository (small chunks, 64 KiB packs) it interleaves changes to a source tree whose
files share content, backups, backups and prunes held "in flight" (paused in another thread with their
own Repository) and finished later, forgets, prunes (grace 0: mark, sweep or deferred) from a clock
ahead of or behind the backups', and time passing. After every step each snapshot in the repository
restores byte-identical to the tree it was taken from (a model keeps snapshot id -> files), as a new
process sees it, and check(read_data=True) finds no error.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from peerbackup.core.crypto import KdfParams
from peerbackup.engine import locks
from peerbackup.engine.backup import Archiver
from peerbackup.engine.backupreport import BackupResult
from peerbackup.engine.check import check
from peerbackup.engine.locks import STALE
from peerbackup.engine.marks import read_marks
from peerbackup.engine.prune import CLOCK_MARGIN, forget_snapshots, prune
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.storage.local import LocalStore
from peerbackup.storage.store import FileType, Payload
from tests.engine.conftest import PW
from tests.helpers import OLD, SMALL_CHUNKS

SHM = "/dev/shm"
NAMES = ("a.bin", "b.bin", "sub/c.bin", "sub/d.bin")
BLOCKS = 6
PACK_SIZE = 64 * 1024
# Where an in-flight backup waits: right after loading the index (it deduplicates later, against
# an index that predates the mark), or with everything stored and only its snapshot left to save.
PAUSES = ("after_index", "before_snapshot")
# Where a prune in flight waits: the used blobs found and partly used packs repacked, its mark not
# stored yet; its mark stored, its sweep not begun; or its new index written, the old one deleted,
# and its packs about to be.
PRUNE_PAUSES = ("before_mark", "after_mark", "mid_sweep")
# The pruning host's clock against the backup hosts' (the office refuses peers more than 2 min apart).
SKEWS = (0.0, -90.0, 90.0)


@dataclass
class Flight:
    """A backup or a prune started in another 'process' (its own Repository and caches), paused by the test."""

    repo: Repository
    pause: str
    files: dict[str, bytes] | None  # what it read, when it read before pausing
    reached: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    result: list[BackupResult] = field(default_factory=list)
    error: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None
    started: float = 0.0


def _close_with_store(repo: Repository) -> None:
    """Close a repository and the pack descriptors its own store keeps open (LocalStore has no close):
    the machine opens a store per verification, thousands in a run."""
    repo.close()
    assert isinstance(repo.store, LocalStore)
    repo.store._fds.size = 0
    repo.store._fds._evict()


class PausingStore(LocalStore):
    """The store of a prune in flight: it stops once, at one of PRUNE_PAUSES, until the test lets it go on."""

    def __init__(self, root: Path, at: str, reached: threading.Event, go: threading.Event) -> None:
        super().__init__(root, fsync=False)
        self.at, self.reached, self.go = at, reached, go

    def _pause(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            self.go.wait()

    def put(self, ftype: FileType, name: str, data: Payload) -> None:
        if self.at == "before_mark" and ftype == FileType.MARK:
            self._pause()
        super().put(ftype, name, data)
        if self.at == "after_mark" and ftype == FileType.MARK:
            self._pause()

    def delete(self, ftype: FileType, name: str) -> None:
        if self.at == "mid_sweep" and ftype == FileType.DATA:
            self._pause()
        super().delete(ftype, name)


class PruneMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # On tmpfs when there is one: hundreds of repositories' SQLite caches are fsynced.
        self.tmp = Path(tempfile.mkdtemp(prefix="prune-props-", dir=SHM if os.path.isdir(SHM) else None))
        self.store = LocalStore(self.tmp / "repo", fsync=False)
        Repository.init(self.store, PW, kdf=KdfParams.weak(), chunker=SMALL_CHUNKS)
        self.repo = self._open("cache")
        self.src = self.tmp / "src"
        self.src.mkdir()
        self.files: dict[str, bytes] = {}
        rng = random.Random(13)
        self.blocks = [rng.randbytes(rng.randint(8_000, 60_000)) for _ in range(BLOCKS)]
        self.dirty = True  # the repository changed since the invariants last looked
        self.model: dict[str, dict[str, bytes]] = {}  # snapshot id -> the files it holds, oldest first
        self.flights: list[Flight] = []
        self.pruning: Flight | None = None  # a prune paused in another 'process'
        self.opened = 0
        self.mtime = OLD
        self.fresh = 0
        # One clock for every host, advanced by the test: lock records read it through the locks module.
        self.clock = 1_700_000_000.0
        self.last_prune = 0.0
        self._patch = pytest.MonkeyPatch()
        self._patch.setattr(locks, "time", SimpleNamespace(time=lambda: self.clock))

    def _open(self, cache: str) -> Repository:
        return Repository.open(self.store, PW, cache_root=self.tmp / cache, pack_size=PACK_SIZE)

    @rule(name=st.sampled_from(NAMES), parts=st.lists(st.integers(0, 2 * BLOCKS - 1), max_size=4),
          salt=st.integers(0, 3))
    def change_file(self, name: str, parts: list[int], salt: int) -> None:
        """Write a file of shared blocks (chunks dedupe within a tree and across snapshots) and new
        bytes (part >= BLOCKS), or delete it (no parts)."""
        path = self.src / name
        if not parts:
            path.unlink(missing_ok=True)
            self.files.pop(name, None)
            return
        data = b"".join(self.blocks[i] if i < BLOCKS else self._fresh(i) for i in parts) + bytes([salt]) * salt
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        self.mtime += 1  # distinct, old mtimes: the file cache is in play and must not be fooled
        os.utime(path, (self.mtime, self.mtime))
        self.files[name] = data

    def _fresh(self, size: int) -> bytes:
        self.fresh += 1
        return random.Random(self.fresh).randbytes(size * 5_000)

    @rule(pause=st.sampled_from((None, *PAUSES)))
    def backup(self, pause: str | None) -> None:
        """A backup, or one left in flight (paused) to be finished by a later step."""
        self.dirty = True
        if pause is not None and not self.flights:  # one at a time: more prunes get to sweep
            self._start_backup_in_flight(pause)
            return
        snap = Archiver(self.repo, workers=1).backup([str(self.src)]).snapshot
        self.model[snap.id] = dict(self.files)

    def _start_backup_in_flight(self, pause: str) -> None:
        self.opened += 1
        other = self._open(f"cache-flight-{self.opened}")
        f = Flight(other, pause, dict(self.files) if pause == "before_snapshot" else None, started=self.clock)
        hook = "recover_unindexed_packs" if pause == "after_index" else "save_snapshot"
        original = getattr(other, hook)

        def paused(*args: object, **kwargs: object) -> object:
            if pause == "after_index":
                out = original(*args, **kwargs)
                f.reached.set()
                f.go.wait()
                return out
            f.reached.set()
            f.go.wait()
            return original(*args, **kwargs)

        setattr(other, hook, paused)

        def run() -> None:
            try:
                f.result.append(Archiver(other, workers=1).backup([str(self.src)]))
            except BaseException as exc:  # reported by finish_backup_in_flight
                f.error.append(exc)
                f.reached.set()

        f.thread = threading.Thread(target=run, daemon=True)
        f.thread.start()
        assert f.reached.wait(60)
        assert not f.error, f.error
        self.flights.append(f)

    @precondition(lambda self: bool(self.flights))
    @rule(index=st.integers(0, 1))
    def finish_backup_in_flight(self, index: int) -> None:
        self.dirty = True
        f = self.flights.pop(index % len(self.flights))
        files = dict(self.files) if f.files is None else f.files  # after_index reads the tree now
        f.go.set()
        assert f.thread is not None
        f.thread.join(60)
        f.repo.close()
        assert not f.error, f.error
        snap = f.result[0].snapshot
        self.model[snap.id] = files

    @precondition(lambda self: bool(self.model))
    @rule(picks=st.lists(st.integers(0, 100), min_size=1, max_size=3))
    def forget(self, picks: list[int]) -> None:
        self.dirty = True
        ids = list(self.model)  # by age: snapshot ids are random
        gone = sorted({ids[i % len(ids)] for i in picks})
        forget_snapshots(self.repo, gone)
        for sid in gone:
            del self.model[sid]

    def _start_prune_in_flight(self, at: str, skew: float) -> None:
        reached, go = threading.Event(), threading.Event()
        self.opened += 1
        store = PausingStore(self.store.root, at, reached, go)
        other = Repository(store, self.repo.keys, self.repo.config, cache_root=self.tmp / f"cache-flight-{self.opened}",
                           pack_size=PACK_SIZE)
        f = Flight(other, at, None, reached, go, started=self.clock)

        def run() -> None:
            try:
                prune(other, grace=0.0, now=lambda: self.clock + skew)
            except BaseException as exc:  # reported by finish_prune_in_flight
                f.error.append(exc)
            finally:
                reached.set()  # also when it had nothing to pause for

        f.thread = threading.Thread(target=run, daemon=True)
        f.thread.start()
        assert reached.wait(60)
        self.pruning = f

    @precondition(lambda self: self.pruning is not None)
    @rule()
    def finish_prune_in_flight(self) -> None:
        self.dirty = True
        f, self.pruning = self.pruning, None
        assert f is not None and f.thread is not None
        f.go.set()
        f.thread.join(60)
        _close_with_store(f.repo)
        assert not f.error, f.error

    @rule(seconds=st.sampled_from((1.0, 400.0, 1000.0)))
    def time_passes(self, seconds: float) -> None:
        # A paused backup stands for a live one, whose lock never goes stale: keep its age below STALE.
        oldest = min((f.started for f in [*self.flights, *filter(None, [self.pruning])]), default=self.clock)
        self.clock += max(0.0, min(seconds, STALE - CLOCK_MARGIN - (self.clock - oldest)))

    @rule(skew=st.sampled_from(SKEWS), pause=st.sampled_from((None, *PRUNE_PAUSES)))
    def prune(self, skew: float, pause: str | None) -> None:
        """A prune (grace 0), or one left in flight (paused) to be finished by a later step."""
        self.dirty = True
        self.clock += 0.001  # two prunes never read the same time: their marks would be the same file
        self.last_prune = max(self.last_prune, self.clock + skew)
        if pause is not None and self.pruning is None:
            self._start_prune_in_flight(pause, skew)
            return
        stats = prune(self.repo, grace=0.0, now=lambda: self.clock + skew)
        if not self.flights and self.pruning is None and self.clock + skew >= self.last_prune:
            # Nothing else running (and no mark from a clock ahead of this one): mark and sweep happen in
            # one run and leave no mark behind.
            assert not stats.deferred, stats.messages
            assert read_marks(self.repo.store) == []

    @precondition(lambda self: len(self.flights) < 2)
    @rule()
    def prune_while_a_backup_starts(self) -> None:
        """A backup starts just after prune read the clock for its mark, before the mark is stored:
        it loads an index that does not know the mark yet, and its lock looks younger than the mark."""
        self.dirty = True
        self.clock += 0.001
        calls: list[float] = []

        def now() -> float:
            calls.append(self.clock)
            if len(calls) == 1:
                self.clock += 1.0
                self._start_backup_in_flight("after_index")
            return calls[-1]

        prune(self.repo, grace=0.0, now=now)
        self.last_prune = max([self.last_prune, *calls])

    @invariant()
    def every_snapshot_restores_in_full_and_check_is_clean(self) -> None:
        if not self.dirty:
            return  # only the source tree changed: the repository is as last verified
        self.dirty = False
        stored = {name for name, _ in self.store.list(FileType.SNAPSHOT)}
        assert stored == set(self.model)
        # As a new process sees the repository: its own store, so no descriptor kept open on a pack
        # that was deleted since can hide the loss.
        view = Repository(LocalStore(self.store.root, fsync=False), self.repo.keys, self.repo.config,
                          cache_root=self.tmp / "cache-verify", pack_size=PACK_SIZE)
        try:
            for snap in view.snapshots():
                out = self.tmp / "restore"
                shutil.rmtree(out, ignore_errors=True)
                stats = Restorer(view, workers=1).restore(snap.tree, str(out))
                assert stats.errors == []
                root = out / str(self.src).lstrip("/")
                got = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
                assert got == self.model[snap.id], f"snapshot {snap.id[:8]} does not restore as taken"
            res = check(view, read_data=True)
            assert res.ok, res.errors
        finally:
            _close_with_store(view)

    def teardown(self) -> None:
        for f in [*self.flights, *filter(None, [self.pruning])]:
            f.go.set()
            if f.thread is not None:
                f.thread.join(60)
            if f is self.pruning:
                _close_with_store(f.repo)
            else:
                f.repo.close()
        self.repo.close()
        self._patch.undo()
        shutil.rmtree(self.tmp, ignore_errors=True)
