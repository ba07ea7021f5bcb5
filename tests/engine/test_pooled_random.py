"""Nonces come from a per-thread pool of the kernel's random bytes (engine/nonces.PooledRandom).

What must never happen: two seals share a nonce. So: no byte of the pool is handed out twice, each
thread has its own pool, and a forked child never reuses the pool it inherited.
"""

from __future__ import annotations

import os
import threading

import pytest

from peerbackup.engine.nonces import PooledRandom


def test_asks_the_kernel_once_per_pool_and_never_hands_out_a_byte_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", urandom)
    rand = PooledRandom()
    nonces = [rand(24) for _ in range(1000)]
    assert all(len(n) == 24 for n in nonces) and len(set(nonces)) == 1000
    assert len(calls) == -(-1000 // (PooledRandom.POOL // 24))  # one getrandom per 170 nonces
    assert rand(PooledRandom.POOL + 1) and calls[-1] == PooledRandom.POOL + 1  # too big to pool


def test_each_thread_has_its_own_pool() -> None:
    rand = PooledRandom()
    got: dict[str, list[bytes]] = {}

    def take(name: str) -> None:
        got[name] = [rand(24) for _ in range(500)]

    threads = [threading.Thread(target=take, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [n for ns in got.values() for n in ns]
    assert len(every) == len(set(every)) == 2000


def test_a_forked_child_does_not_reuse_the_parent_pool() -> None:
    rand = PooledRandom()
    rand(24)  # the pool is filled: what the child would inherit
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next nonce, to the parent
        try:
            os.write(w, rand(24))
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 24)
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 24
    assert child != rand(24)  # without the fork hook both would take the same next 24 bytes
