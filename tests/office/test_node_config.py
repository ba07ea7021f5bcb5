"""A backup node's repository config is authenticated in full (issue 14, finding 5): it is not encrypted, so
a storage member answering first could serve one with the node's id and chunks of 64 bytes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from peerbackup.core.chunker import ChunkerParams
from peerbackup.errors import StoreError
from peerbackup.office.peerstore.store import node_config, open_config
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import FileType


def test_the_first_user_writes_it_and_everyone_reads_the_same() -> None:
    store = MemoryStore()
    first = open_config(store, "office1", "accounts", 1_800_000_000)  # type: ignore[arg-type]
    assert first == node_config("office1", "accounts", 1_800_000_000)
    assert open_config(store, "office1", "accounts", 1_800_000_000) == first  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"chunker": ChunkerParams(min_size=64, avg_size=64, max_size=64)},
    {"created": 1},
    {"id": "0" * 32},
])
def test_a_config_that_differs_in_any_field_is_refused(change: dict[str, Any]) -> None:
    store = MemoryStore()
    forged = dataclasses.replace(node_config("office1", "accounts", 1_800_000_000), **change)
    store.put(FileType.CONFIG, "config", forged.to_bytes())
    with pytest.raises(StoreError, match="is not this node's"):
        open_config(store, "office1", "accounts", 1_800_000_000)  # type: ignore[arg-type]
