"""How the peer store treats a holder's refusal of a write, with a scripted client in place of the network."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from peerbackup.errors import PeerRefused, StoreError
from peerbackup.office.peerstore.client import StoragePeer
from peerbackup.office.peerstore.store import PeerStore
from peerbackup.storage.store import FileType

PEERS = [StoragePeer(f"P{n}", f"peer{n}", (f"127.0.0.1:{n}",), bytes(32)) for n in range(4)]


class Scripted:
    """Puts answered per peer: a refusal code, or stored; every put that reached a peer is recorded."""

    def __init__(self, refusals: dict[str, str]) -> None:
        self.refusals = refusals
        self.stored: list[str] = []

    async def put(self, peer: StoragePeer, ftype: FileType, name: str, data: Sequence[bytes | bytearray],
                  digest: bytes, act_as: bytes = b"") -> bool:
        await asyncio.sleep(0)
        code = self.refusals.get(peer.peer_id)
        if code:
            raise PeerRefused(peer.name, f"{code} by {peer.name}", code)
        self.stored.append(peer.peer_id)
        return True


def store(client: Scripted) -> PeerStore:
    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)

    return PeerStore("accounts", 2, PEERS, client, run, "P0", act_as=b"token")  # type: ignore[arg-type]


@pytest.mark.parametrize("lagging", [p.peer_id for p in PEERS])
def test_a_superseded_refusal_fails_the_write_and_is_never_routed_around(lagging: str) -> None:
    """Issue 16: the holders refuse a replaced attempt's snapshot; trying the next holder instead would find the
    one that has not heard of the newer attempt yet (`lagging`) and commit the snapshot the fence is there to
    stop."""
    client = Scripted({p.peer_id: "superseded" for p in PEERS if p.peer_id != lagging})
    with pytest.raises(PeerRefused) as err:
        store(client).put(FileType.SNAPSHOT, "ab" * 32, b"snapshot")
    assert err.value.code == "superseded"
    assert len(client.stored) < 2  # the laggard takes it only if it was among the first asked, never in place


def test_an_ordinary_refusal_is_routed_to_the_next_holder() -> None:
    client = Scripted({"P1": "store-refused", "P2": "store-refused"})
    store(client).put(FileType.SNAPSHOT, "ab" * 32, b"snapshot")
    assert len(client.stored) == 2


def test_every_holder_refusing_fails_the_write() -> None:
    client = Scripted({p.peer_id: "forbidden" for p in PEERS})
    with pytest.raises(StoreError):
        store(client).put(FileType.SNAPSHOT, "ab" * 32, b"snapshot")
