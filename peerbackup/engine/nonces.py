"""The random bytes every seal draws its nonce from: the kernel's, served from a pool per thread.

Below the repository, which seals with `pooled_random` unless handed another source.
"""

from __future__ import annotations

import os
import threading


class PooledRandom:
    """os.urandom served from a per-thread pool refilled POOL bytes at a time.

    Every blob sealed takes a 24-byte nonce: one getrandom per blob cost a GIL hand-off
    each (~50,000 on a tree of small files). The bytes are the kernel's all the same; a
    forked child drops the pools it inherited, so parent and child never share a nonce."""

    POOL = 4096

    def __init__(self) -> None:
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._local = threading.local()

    def __call__(self, n: int) -> bytes:
        if n > self.POOL:
            return os.urandom(n)
        local = self._local
        pool: bytes = getattr(local, "pool", b"")
        at: int = getattr(local, "at", 0)
        if at + n > len(pool):
            local.pool = pool = os.urandom(self.POOL)
            at = 0
        local.at = at + n
        return pool[at:at + n]


pooled_random = PooledRandom()
