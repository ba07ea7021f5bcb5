"""The soak's faults: the seed decides them, every network fault has two sides, and the firewall rules cut
exactly the daemons they name (real sockets, real nft rules, as root)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.soak.faults import Firewall, Injector
from tests.soak.office import TIMINGS, SoakOffice


def picks(tmp_path: Path, seed: int, n: int = 60) -> list[tuple[str, list[str], float]]:
    inj = Injector(SoakOffice(tmp_path / str(seed), TIMINGS["fast"]), Firewall(), seed, 0.0, print)
    out = []
    for _ in range(n):
        f = inj._pick()
        assert f is not None  # nothing active: every kind is free
        out.append((f.kind, f.targets, round(f.duration, 6)))
        if f.kind in ("cut", "partition"):
            a, b = f.sides()
            assert a and b and not set(a) & set(b) and len(a) + len(b) == 5, f.sides()
    return out


def test_the_seed_decides_the_faults_and_each_network_fault_has_two_sides(tmp_path: Path) -> None:
    first = picks(tmp_path, 1)
    assert first == picks(tmp_path, 1) and first != picks(tmp_path, 2)
    assert {k for k, _, _ in first} == {"kill", "stop", "cut", "partition", "disk_full", "clock_step"}


CONNECT = ("import socket, sys\ns = socket.socket(); s.settimeout(1.5)\n"
           "try:\n s.connect((sys.argv[1], int(sys.argv[2])))\n print('ok')\nexcept OSError:\n print('cut')")


def reach(gid: int, host: str, port: int) -> str:
    return subprocess.run([sys.executable, "-c", CONNECT, host, str(port)], group=gid, capture_output=True,
                          text=True, timeout=20).stdout.strip()


@pytest.mark.slow
def test_the_firewall_cuts_the_named_daemons_both_ways_and_no_one_else(tmp_path: Path) -> None:
    soak = SoakOffice(tmp_path, TIMINGS["fast"])
    m = soak.members
    listeners = {}
    for name in ("alpha", "beta", "gamma"):
        s = socket.socket()
        s.bind((m[name].host, 0))
        s.listen(8)
        listeners[name] = s
    port = {n: s.getsockname()[1] for n, s in listeners.items()}
    fw = Firewall()
    try:
        fw.create()
        handles = fw.block([m["alpha"]], [m["beta"]])
        assert reach(m["alpha"].gid, m["beta"].host, port["beta"]) == "cut"
        assert reach(m["beta"].gid, m["alpha"].host, port["alpha"]) == "cut"
        assert reach(m["alpha"].gid, m["gamma"].host, port["gamma"]) == "ok"  # not on the other side
        assert reach(m["gamma"].gid, m["beta"].host, port["beta"]) == "ok"
        fw.unblock(handles)
        assert reach(m["alpha"].gid, m["beta"].host, port["beta"]) == "ok"
    finally:
        assert fw.remove() is None
        for s in listeners.values():
            s.close()
    assert fw.table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
