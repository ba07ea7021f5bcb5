"""Shared fixtures: weak key derivation, private caches, a deterministic random source."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peerbackup.core.crypto import KdfParams
from peerbackup.engine.repository import Repository
from peerbackup.storage.local import LocalStore

# Each test's time, and the longest first on xdist workers (tests/timing.py); the `slow` mark (tests that
# start processes) applied and checked (tests/processes.py).
pytest_plugins = ("tests.timing", "tests.processes")

PASSWORD = b"correct horse battery staple"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every test gets its own cache and the weak KDF; nothing touches the real home.
    monkeypatch.setenv("PEERBACKUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PEERBACKUP_INSECURE_TEST_KDF", "1")
    monkeypatch.delenv("PEERBACKUP_PASSWORD", raising=False)
    monkeypatch.delenv("PEERBACKUP_REPO", raising=False)


@pytest.fixture
def seeded_rand() -> Callable[[int], bytes]:
    rng = random.Random(1234)
    return lambda n: rng.randbytes(n)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    store = LocalStore(tmp_path / "repo")
    Repository.init(store, PASSWORD, kdf=KdfParams.weak())
    r = Repository.open(store, PASSWORD, cache_root=tmp_path / "cache")
    yield r
    r.close()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        # Old enough that the file cache trusts it (see engine/backup.py _RACY_NS).
        os.utime(p, (1_600_000_000, 1_600_000_000))


# Fixtures that start daemons print their logs when the test itself failed (rep_call).
@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
