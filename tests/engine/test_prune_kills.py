"""Prune killed with SIGKILL at any moment (a mark stored, the sweep deleting packs, a random while) in
another process on the same repository: nothing a snapshot needs is lost, and the next prune finishes.
Part of trying to break prune's invariant (test_prune_properties.py; docs/repository.md, "Destructive
paths and what guards them").
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from peerbackup.engine.marks import read_marks
from peerbackup.engine.prune import prune
from peerbackup.storage.local import LocalStore
from peerbackup.storage.store import FileType
from tests.engine._prune_machine import BLOCKS, NAMES, PACK_SIZE, PruneMachine
from tests.engine.conftest import PW

KILLS = 6
# prune in another process, on the same repository, with its own cache.
PRUNE_SCRIPT = """
import sys
from peerbackup.engine.prune import prune
from peerbackup.engine.repository import Repository
from peerbackup.storage.local import LocalStore
store = LocalStore(sys.argv[1])
repo = Repository.open(store, sys.argv[2].encode(), cache_root=sys.argv[3], pack_size=int(sys.argv[4]))
prune(repo)
repo.close()
"""


def _count(store: LocalStore, ftype: FileType) -> int:
    return sum(1 for _ in store.list(ftype))


def _kill_now(when: int, store: LocalStore, packs: int, wait: float) -> bool:
    if when == 0:
        return _count(store, FileType.MARK) > 0  # a mark is stored
    if when == 1:
        return _count(store, FileType.DATA) < packs  # the sweep is deleting packs
    return time.monotonic() > wait  # after a random while


@pytest.mark.slow
def test_prune_killed_at_any_moment_loses_nothing_and_the_next_prune_finishes() -> None:
    m = PruneMachine()
    m._patch.undo()  # real time: the killed prunes are other processes
    rng = random.Random(5)
    try:
        for _ in range(3):
            for name in NAMES:
                m.change_file(name, [rng.randrange(BLOCKS, 2 * BLOCKS) for _ in range(4)], 0)
            m.backup(None)
        interrupted = 0
        for i in range(KILLS):
            # New work for each prune: a new snapshot, the oldest forgotten.
            m.change_file(NAMES[i % len(NAMES)], [rng.randrange(BLOCKS, 2 * BLOCKS) for _ in range(4)], 1)
            m.backup(None)
            m.forget([0])
            packs = _count(m.store, FileType.DATA)
            proc = subprocess.Popen(
                [sys.executable, "-c", PRUNE_SCRIPT, str(m.store.root), PW.decode(), str(m.tmp / f"cache-kill-{i}"),
                 str(PACK_SIZE)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait = time.monotonic() + rng.uniform(0.1, 0.6)
                deadline = time.monotonic() + 60
                while proc.poll() is None and not _kill_now(i % 3, m.store, packs, wait):
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    interrupted += 1
            finally:
                proc.wait(timeout=60)
            m.dirty = True
            m.every_snapshot_restores_in_full_and_check_is_clean()
        assert interrupted >= KILLS // 2, "most kills should land mid-prune"
        stats = prune(m.repo)
        assert not stats.deferred, stats.messages
        assert read_marks(m.repo.store) == []
        m.dirty = True
        m.every_snapshot_restores_in_full_and_check_is_clean()
    finally:
        m.teardown()
