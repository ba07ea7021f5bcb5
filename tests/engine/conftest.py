"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbackup.core.crypto import KdfParams
from peerbackup.engine.repository import Repository
from peerbackup.storage.local import LocalStore
from tests.helpers import SMALL_CHUNKS

PW = b"pw"


@pytest.fixture
def small_repo(tmp_path: Path) -> Iterator[Repository]:
    """A repository of small chunks and 64 KiB packs: a small tree spans many packs."""
    store = LocalStore(tmp_path / "repo")
    Repository.init(store, PW, kdf=KdfParams.weak(), chunker=SMALL_CHUNKS)
    repo = Repository.open(store, PW, cache_root=tmp_path / "cache", pack_size=64 * 1024)
    yield repo
    repo.close()
