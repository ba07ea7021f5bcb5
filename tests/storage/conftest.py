"""Fixtures of the storage tests: where the cache tests' SQLite files go, and the peer store backend of
the conformance suite, one office of real daemons per session.

Three daemons on loopback (alpha: admin and writer; beta, gamma: storage peers), each
conformance test on a fresh backup node of its own with replicas 2, through the same
PeerStore that `peerbackup repo ... --repo office:NODE` uses, delete grant included.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbackup.cli.officerepo import Connection, connect
from peerbackup.office.membership.home import Home
from peerbackup.storage.indexcache import IndexCache
from tests.daemon.harness import Office, Peer, wait_for


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "repo-id" / "index.sqlite"


@pytest.fixture
def index(index_path: Path) -> Iterator[IndexCache]:
    c = IndexCache(index_path)
    yield c
    c.close()


@pytest.fixture
def files_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "repo-id" / "files.sqlite"


class PeerOffice:
    def __init__(self, office: Office, peers: list[Peer]) -> None:
        self.office = office
        self.peers = peers
        self._names = itertools.count(1)

    def store(self) -> Connection:
        admin = self.peers[0]
        node = f"conformance-{next(self._names)}"
        code, out = admin.api("POST", "/v1/nodes", {"node": node, "replicas": 2})
        assert code == 200, out
        wait_for(lambda: len({p.status()["config_digest"] for p in self.peers}) == 1, 20,
                 f"node {node} known to every storage peer")
        return connect(Home(admin.home), node, delete=True, warn=lambda _m: None)


@pytest.fixture(scope="session")
def peer_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerOffice]:
    tmp: Path = tmp_path_factory.mktemp("peer-office")
    office = Office(tmp)
    try:
        a = office.start(office.init("alpha"), mdns=False)
        b = office.start(office.join("beta", office.invite(a)), "--peer", a.address, mdns=False)
        g = office.start(office.join("gamma", office.invite(a)), "--peer", a.address, mdns=False)
        wait_for(lambda: all(p["state"] == "alive" for p in a.peers().values()), 20, "all three alive")
        yield PeerOffice(office, [a, b, g])
    finally:
        office.close()
