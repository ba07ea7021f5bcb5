"""The peer store with real daemons: backups on R other machines, surviving what offices do to them.

Every test starts its own office on loopback (no mDNS), backs up real files with
`peerbackup repo backup --repo office:NODE`, and checks the copies on the holders'
disks (held/nodes/NODE/...), which is where they have to be.

What stays here is about processes and the command line: a holder killed (-9) mid-transfer, the
`repo` commands' refusals and messages. Copies on R others, a full, damaged or lying holder, who may
read and delete, an admin rebuilt from the kit, and repair after remove-peer run in-process:
tests/inproc/test_peerstore.py and test_repair.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from peerbackup.storage.store import FileType
from tests.daemon.harness import Office, Peer, wait_for
from tests.helpers import Result

NODE = "accounts"
REPAIR = {"repair_interval": "1", "repair_grace": "0"}


def start_office(office: Office, names: list[str], timings: dict[str, str] | None = None,
                 extra: dict[str, list[str]] | None = None, replicas: int = 2) -> list[Peer]:
    """alpha (the admin, who writes) and the named storage peers, node `accounts` known to all."""
    extra = extra or {}
    a = office.start(office.init("alpha"), *extra.get("alpha", []), mdns=False, timings=timings)
    peers = [a]
    for name in names:
        p = office.join(name, office.invite(a))
        peers.append(office.start(p, "--peer", a.address, *extra.get(name, []), mdns=False, timings=timings))
    wait_for(lambda: all(p["state"] == "alive" for p in a.peers().values()), 20, "every peer alive")
    office.cli("node", "add", NODE, "--replicas", str(replicas), "--home", str(a.home))
    wait_for(lambda: len({p.status()["config_digest"] for p in peers}) == 1, 20, "the node known everywhere")
    return peers


def make_tree(root: Path, files: int, size: int, seed: int = 5) -> dict[str, str]:
    """Incompressible files; their SHA-256 by relative path."""
    rng = random.Random(seed)
    out = {}
    for i in range(files):
        p = root / f"dir{i % 3}" / f"file{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size + rng.randrange(0, size // 4))
        p.write_bytes(data)
        out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def repo(office: Office, peer: Peer, *args: str, check: bool = True) -> Result:
    return office.cli("repo", *args, "--repo", f"office:{NODE}", "--home", str(peer.home),
                      "--cache-dir", str(office.tmp / f"cache-{peer.name}"), check=check, timeout=180)


def held(peer: Peer, ftype: FileType = FileType.DATA) -> dict[str, Path]:
    """The files of a kind that a peer keeps for the node, read from its disk."""
    base = peer.home / "held" / "nodes" / NODE / ftype.value
    return {p.name: p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")} if base.exists() else {}


def copies(peers: list[Peer], ftype: FileType = FileType.DATA) -> Counter[str]:
    return Counter(name for p in peers for name in held(p, ftype))


def storage(office: Office, peer: Peer, *flags: str) -> dict[str, Any]:
    out = office.cli("storage", "--json", "--home", str(peer.home), *flags).out
    return dict(json.loads(out))


def test_kill_9_a_holder_during_a_backup(office: Office, tmp_path: Path) -> None:
    a, b, c, d = start_office(office, ["beta", "gamma", "delta"], timings=REPAIR)
    src = tmp_path / "src"
    want = make_tree(src, 20, 4_000_000)  # ~90 MB: six or seven packs
    stored_at_kill: list[int] = []

    def kill_gamma_after_its_first_pack() -> None:
        wait_for(lambda: held(c), 60, "gamma to receive a pack", interval=0.02)
        office.kill(c)
        stored_at_kill.append(len(copies([b, c, d])))

    killer = threading.Thread(target=kill_gamma_after_its_first_pack)
    killer.start()
    repo(office, a, "backup", str(src))
    killer.join()
    assert c.proc is not None and c.proc.returncode is not None
    # Every pack is on two peers: those gamma took before it died count (its disk still has them).
    data = copies([b, c, d])
    assert len(data) > stored_at_kill[0], f"gamma died after the last pack ({stored_at_kill[0]} of {len(data)})"
    assert data and all(n >= 2 for n in data.values()), (data, {p.name: sorted(held(p)) for p in (b, c, d)})
    # The coordinator's repair (grace 0 here) then copies gamma's packs to the living: R live copies.
    wait_for(lambda: storage(office, a)["under_replicated"] == 0, 60, "repair after gamma died")
    assert set(copies([a, b, d])) == set(data) and all(n >= 2 for n in copies([a, b, d]).values())
    repo(office, a, "restore", "latest", "--target", str(tmp_path / "out"))
    assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == want


def test_only_the_delete_grant_deletes(office: Office, tmp_path: Path) -> None:
    """The command line's part. The rest (both key holders read, a holder refuses deletes without the admin's
    grant or with one copied from the log, a member without the keys gets nothing) runs in-process:
    tests/inproc/test_peerstore.py::test_only_key_holders_read_and_only_an_admins_delete_grant_deletes."""
    a, b, c = start_office(office, ["beta", "gamma"])
    office.cli("grant", NODE, "beta", "--home", str(a.home))
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1, 20, "the grant everywhere")
    src = tmp_path / "src"
    make_tree(src, 4, 1_000_000)
    repo(office, b, "backup", str(src))  # the agent writes with its ordinary capability
    # A machine without the keys (gamma holds copies, is no agent) is told who has them, and writes nothing.
    res = repo(office, c, "restore", "latest", "--target", str(tmp_path / "out"), check=False)
    assert res.rc != 0 and "only its admins and granted agents do (alpha, beta)" in res.err
    assert not (tmp_path / "out").exists()
    snaps = held(c, FileType.SNAPSHOT)
    assert len(snaps) == 1
    # The agent cannot delete through the command line.
    res = office.cli("repo", "forget", "latest", "--repo", f"office:{NODE}", "--home", str(b.home), check=False)
    assert res.rc != 0 and "admin" in res.err
    repo(office, a, "snapshots")  # (an admin's read needs no grant)
    repo(office, a, "forget", "--keep-last", "1", "--dry-run")
    a_log = office.cli("office", "log", "--json", "--home", str(a.home)).out
    assert "node.delete_grant" not in a_log
    repo(office, a, "forget", next(iter(snaps))[:8], "--prune")
    log = json.loads(office.cli("office", "log", "--json", "--home", str(a.home)).out)
    grants = [e for e in log if e["kind"] == "node.delete_grant"]
    assert len(grants) == 1 and grants[0]["fields"]["node"] == NODE
    assert not held(c, FileType.SNAPSHOT)
    # Deleted files wait in the holder's trash for the grace time.
    assert any((c.home / "held" / "trash" / NODE / "snapshots").iterdir())
    assert re.search(r"store\.delete .*kind=snapshots", c.log.read_text())
