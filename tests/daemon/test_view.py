"""The daemon's view answers from the services it is given, in-process, without a Daemon (daemon/view.py)."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

from peerbackup.core.certs import COORDINATOR_ROLES, Certificate, Office
from peerbackup.core.identity import SigningKey, peer_id_of
from peerbackup.core.settings import Settings
from peerbackup.daemon.view import Roster
from peerbackup.office.membership.home import Identity
from peerbackup.office.membership.service import PeerService
from peerbackup.office.membership.state import State

OFFICE_KEY = SigningKey(b"\x41" * 32)
ME, STORE, AGENT = SigningKey(b"\x51" * 32), SigningKey(b"\x52" * 32), SigningKey(b"\x53" * 32)
NOW = 1_700_000_100.0
SETTINGS = Settings(heartbeat=1.0, suspect=10.0, dead=30.0, request_timeout=1.0)


def cert(key: SigningKey, name: str, roles: tuple[str, ...], rank: int) -> Certificate:
    return Certificate.issue(OFFICE_KEY, key.public_key, name, roles, rank, 1_700_000_000, 10**9)


def test_the_roster_reports_members_addresses_and_liveness_without_a_daemon(tmp_path: Path) -> None:
    async def scenario() -> None:
        state = await State.open(tmp_path / "state.db")
        try:
            ident = Identity(ME, Office("Acme", OFFICE_KEY.public_key), cert(ME, "me", COORDINATOR_ROLES, 100), None)
            peers = PeerService(ident, SETTINGS, state, None, lambda: NOW,  # type: ignore[arg-type]
                                random.Random(1).randbytes, logging.getLogger("test"), lambda: [])
            await peers.load()
            peers.membership.certs[peer_id_of(STORE.public_key)] = cert(STORE, "store", ("storage",), 200)
            peers.membership.certs[peer_id_of(AGENT.public_key)] = cert(AGENT, "agent", ("agent",), 300)
            await state.add_addresses(peer_id_of(STORE.public_key), ["10.0.0.2:7420"], "test")
            peers.liveness.heard(peer_id_of(STORE.public_key), NOW - 4.0)
            roster = Roster(ident, state, peers, lambda: NOW, lambda: ["10.0.0.1:7420"])

            listed = await roster.peers(coordinator=peer_id_of(ME.public_key))
            assert [(p["name"], p["address"], p["state"], p["coordinator"], p["self"], p["last_heard_s"])
                    for p in listed] == [("me", "10.0.0.1:7420", "alive", True, True, None),
                                         ("store", "10.0.0.2:7420", "alive", False, False, 4.0),
                                         ("agent", None, "dead", False, False, None)]
            # A writer's storage peers: the agent-only member is not one; this peer is, at its own address.
            storage = await roster.storage_peers()
            assert [(p.name, p.addresses, p.alive) for p in storage] == [("me", ("10.0.0.1:7420",), True),
                                                                         ("store", ("10.0.0.2:7420",), True)]
        finally:
            await state.close()

    asyncio.run(scenario())
