"""Heartbeats go to each peer on their own (issue 16, cause 5): a peer that does not answer (paused, cut off)
holds only its own heartbeat, never the others', so it cannot make the peers that answer look suspect."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from pathlib import Path
from typing import Any

from peerbackup.core.certs import COORDINATOR_ROLES, Certificate, Office
from peerbackup.core.identity import SigningKey
from peerbackup.core.settings import Settings
from peerbackup.errors import PeerUnreachable
from peerbackup.net.proto import heartbeat
from peerbackup.office.membership.home import Identity
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.membership.service import PeerService
from peerbackup.office.membership.state import State

OFFICE_KEY = SigningKey(b"\x21" * 32)
ME, FAST, SLOW = SigningKey(b"\x31" * 32), SigningKey(b"\x32" * 32), SigningKey(b"\x33" * 32)
# Consistent (heartbeat + request_timeout < suspect), yet one beat to the slow peer, tried at both of its
# addresses, lasts twice the request timeout: long enough to make a round that waits for it too slow.
SETTINGS = Settings(heartbeat=0.05, suspect=0.5, dead=2.0, request_timeout=0.4)


class Network:
    """The peer client as far as heartbeats go: the fast peer answers at once, the slow one never."""

    def __init__(self, service: PeerService, slow: set[str]) -> None:
        self.service = service
        self.slow = slow
        self.sent: list[tuple[str, float]] = []

    async def request(self, address: str, peer_id: str, path: str, body: bytes, key_for: Any) -> bytes:
        self.sent.append((peer_id, asyncio.get_running_loop().time()))
        if address in self.slow:
            await asyncio.sleep(SETTINGS.request_timeout)
            raise PeerUnreachable(address, "timed out")
        return heartbeat.Heartbeat(1, self.service.membership.revocations_digest(), bytes(32)).to_wire()


def cert(key: SigningKey, name: str) -> Certificate:
    return Certificate.issue(OFFICE_KEY, key.public_key, name, COORDINATOR_ROLES, 100, 1_700_000_000, 10**9)


def test_a_peer_that_does_not_answer_delays_only_its_own_heartbeat(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        state = await State.open(tmp_path / "state.db")
        ident = Identity(ME, Office("Acme", OFFICE_KEY.public_key), cert(ME, "me"), None)
        rng = random.Random(1)
        service = PeerService(ident, SETTINGS, state, None, loop.time, rng.randbytes,  # type: ignore[arg-type]
                              logging.getLogger("test"), lambda: ["127.0.0.1:1"])
        net = Network(service, {"10.0.0.3:7420", "192.168.1.3:7420"})
        service.client = net  # type: ignore[assignment]
        for key, name, addresses in ((FAST, "fast", ["10.0.0.2:7420"]),
                                     (SLOW, "slow", ["10.0.0.3:7420", "192.168.1.3:7420"])):
            service.membership.certs[key.peer_id] = cert(key, name)
            await state.add_addresses(key.peer_id, addresses, "test")
            service._greeted.add(key.peer_id)  # said hello already: what follows are heartbeats
            service.liveness.heard(key.peer_id, loop.time())
        states = []
        try:
            until = loop.time() + 2.5
            while loop.time() < until:  # the daemon's heartbeat loop (daemon/rounds.py _heartbeats)
                await service.heartbeat_round()
                service.check_liveness()
                states.append(service.liveness.state(FAST.peer_id, loop.time()))
                await asyncio.sleep(SETTINGS.heartbeat)
        finally:
            await service.cancel_all()
            await state.close()
        beats = [t for peer, t in net.sent if peer == FAST.peer_id]
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        # The fast peer kept its own pace (a round that waited for the slow one spaced them 0.85 s apart)...
        assert max(gaps) < SETTINGS.request_timeout, max(gaps)
        assert set(states) == {ALIVE}, states
        # ...and the slow one had one beat out at a time, not one more per round.
        slow = [t for peer, t in net.sent if peer == SLOW.peer_id]
        assert 2 <= len(slow) <= 2 * (2.5 / (2 * SETTINGS.request_timeout) + 1), len(slow)

    asyncio.run(scenario())
