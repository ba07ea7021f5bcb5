"""The peer store on an office of daemons in one loop on a virtual clock, DEFAULT timings: a node's
backup on R other members, read back whole, holders that are full, damaged or lying.

Mirrors tests/daemon/test_peerstore.py (real processes, backups by `peerbackup repo`): here the backup
is the granted agent's, asked of the office, and the restore is read through the admin's daemon as the
dashboard does; the admin command line's own part stays in tests/daemon/test_peerstore.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peerbackup.core.crypto import content_hash
from peerbackup.errors import NotAdmin, NotAHolder
from peerbackup.storage.store import FileType
from tests.inproc.harness import InprocOffice, Member, recover, run_office
from tests.inproc.scenarios import NODE, SETTINGS, node_office
from tests.inproc.store import (
    backup,
    check_data,
    copies,
    files,
    held,
    refusal,
    restored_as_backed_up,
    snapshots,
    storage_only,
    store_client,
)

QUOTA = 1024 * 1024  # a full holder's room: the small files, not a pack


def writer(members: list[Member], done: dict[str, object]) -> Member:
    """The agent that ran a backup (its job.done's writer)."""
    return next(m for m in members if m.peer_id == done["writer"])


@pytest.mark.timeout(120)
def test_a_backup_is_on_r_other_members_as_ciphertext_and_restores_identical(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_peerstore.py::test_backup_restore_and_copies_on_r_other_peers."""

    async def scenario(o: InprocOffice) -> None:
        a, *_ = everyone = await node_office(o, ["beta", "gamma", "delta"], files=6, size=400_000)
        done = await backup(o, a)
        data = copies(everyone)
        assert data and all(n == 2 for n in data.values()), data  # R = 2 copies of every pack...
        assert not held(writer(everyone, done)), "a copy on the machine that made the backup"  # ...none on it
        for ftype in (FileType.INDEX, FileType.SNAPSHOT):
            made = copies(everyone, ftype)
            assert made and all(n == 2 for n in made.values()), (ftype, made)
        # What holders keep is ciphertext under names that are hashes: no file name, no plaintext.
        for m in everyone:
            for name, path in files(m).items():
                raw = await asyncio.to_thread(path.read_bytes)
                assert b"file0.bin" not in raw and content_hash(raw).hex() == name
        await restored_as_backed_up(o, a)
        await a.running.controls.repair.run_once()
        report = await a.running.view.storage_report()
        assert report["under_replicated"] == 0
        rows = {r["name"]: r for r in report["peers"]}
        assert set(rows) == {"alpha", "beta", "gamma", "delta"}
        assert sum(r["packs"] for r in rows.values()) == data.total()
        assert all(r["used"] >= 0 and r["quota"] is None for r in rows.values())

    print(f"copies: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


async def backed_up_on_three(o: InprocOffice) -> tuple[Member, list[Member], Member]:
    """alpha, beta and gamma, the node backed up by one agent: (alpha, everyone, the member other than alpha
    and the writer, which holds a copy of every file)."""
    a, *_ = everyone = await node_office(o, ["beta", "gamma"], files=6, size=400_000)
    done = await backup(o, a)
    h = next(m for m in everyone[1:] if m is not writer(everyone, done))
    data = copies(everyone)
    assert data and all(n == 2 for n in data.values()) and held(h) == set(data), data
    return a, everyone, h


@pytest.mark.timeout(120)
def test_a_full_holder_refuses_and_the_writer_picks_another(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_peerstore.py::test_full_holder_refuses_and_the_writer_picks_another."""

    async def scenario(o: InprocOffice) -> None:
        a, *_, d = everyone = await node_office(o, ["beta", "gamma", "delta"], files=6, size=400_000)
        # delta only stores (as the old test's storage peers), and keeps at most a megabyte: less than a pack.
        await storage_only(o, everyone, d)
        await o.stop(d)
        d.storage_quota = QUOTA
        await o.start(d)

        async def delta_back() -> bool:
            return any(p["name"] == "delta" and p["state"] == "alive" for p in await a.running.view.peers())

        await o.until(delta_back, 3 * SETTINGS.heartbeat, "delta alive again, with its quota")
        done = await backup(o, a)
        assert writer(everyone, done) is not d
        data = copies(everyone)
        assert data and all(n == 2 for n in data.values()), data
        assert sum(p.stat().st_size for p in files(d).values()) <= QUOTA, "delta kept more than its quota"
        await restored_as_backed_up(o, a)

    print(f"full: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


def flip(path: Path, at: int) -> None:
    # In place, as bit rot does (the holder keeps descriptors of packs open).
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.timeout(120)
def test_flipped_bytes_are_read_around_and_the_holders_scrub_replaces_them(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_peerstore.py::test_flipped_bytes_restore_identical_and_scrub_repairs."""

    async def scenario(o: InprocOffice) -> None:
        a, _, h = await backed_up_on_three(o)
        damaged = files(h)
        for path in damaged.values():
            await asyncio.to_thread(flip, path, path.stat().st_size // 2)
        # Every pack h holds is damaged: reads verify and fall over to the other copies.
        await restored_as_backed_up(o, a)
        checked = await check_data(a)
        assert checked.ok, checked.errors
        # h's scrub finds each bad copy and replaces it with a good one from the other holder.
        result = await h.running.controls.repair.scrub_once()
        assert result == {"damaged": len(damaged), "replaced": len(damaged), "trash_freed": 0}
        assert set(files(h)) == set(damaged), "the damaged copies were not put back"
        for name, path in files(h).items():
            assert content_hash(await asyncio.to_thread(path.read_bytes)).hex() == name
        assert h.logged("scrub.damaged") == len(damaged)

    print(f"scrub: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_holder_that_lies_fails_the_challenge_and_good_copies_replace_its_claims(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_peerstore.py::test_a_holder_that_lies_fails_the_challenge."""

    async def scenario(o: InprocOffice) -> None:
        a, everyone, liar = await backed_up_on_three(o)
        stored = set(copies(everyone))
        # The liar keeps the names but not the bytes (zeros of the same length): listings still claim them.
        for path in files(liar).values():
            await asyncio.to_thread(path.write_bytes, bytes(path.stat().st_size))
        failed = 0

        async def challenged() -> bool:
            nonlocal failed
            failed += int((await a.running.controls.repair.run_once())[NODE]["failed_challenges"])
            return failed > 0

        await o.until(challenged, SETTINGS.request_timeout, "a failed challenge")
        assert a.logged("store.challenge_failed") >= 1
        honest = [m for m in everyone if m is not liar]

        def good_copies() -> dict[str, int]:
            return {name: sum(content_hash(f.read_bytes()).hex() == name for m in honest
                              for n, f in files(m).items() if n == name) for name in stored}

        # The false claims are not counted: the repair puts good copies on the honest members.
        async def repaired() -> bool:
            await a.running.controls.repair.run_once()
            return await a.running.controls.repair.under_replicated() == 0 and all(
                n >= 2 for n in (await asyncio.to_thread(good_copies)).values())

        await o.until(repaired, SETTINGS.request_timeout, "two good copies of every pack without the liar's")

    print(f"liar: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_only_key_holders_read_and_only_an_admins_delete_grant_deletes(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_peerstore.py::test_only_the_delete_grant_deletes (but its command line's part,
    kept there) and ::test_a_machine_without_the_keys_cannot_restore (a holder without the keys here)."""

    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await node_office(o, ["beta", "gamma"], files=4, size=100_000)
        await storage_only(o, everyone, c)  # gamma holds copies, without the node's keys
        done = await backup(o, a)
        assert done["writer"] == b.peer_id  # the agent writes with its ordinary capability
        # Both key holders read it: check on the agent, restore on the admin.
        checked = await check_data(b)
        assert checked.ok, checked.errors
        await restored_as_backed_up(o, a)
        # eve, a member that is no agent of the node and stores nothing, has no way to the node's data.
        eve = await o.join("eve", a, rank=40, roles=("agent",))
        await o.until(lambda: eve.running.logs.state.config().digest() == a.running.logs.state.config().digest(),
                      3 * SETTINGS.heartbeat, "eve in step")
        await cannot_read_without_the_keys(a, eve)
        snaps = held(c, FileType.SNAPSHOT)
        assert len(snaps) == 1
        await only_the_delete_grant_deletes(a, b, c, next(iter(snaps)))

    print(f"keys: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


async def cannot_read_without_the_keys(a: Member, eve: Member) -> None:
    """`eve`'s daemon refuses it the node's repository, naming who holds the keys, and a holder (`a`)
    refuses it the ciphertext."""
    for access in (eve.running.controls.access.store_access, eve.running.controls.access.open_node_repo):
        with pytest.raises(NotAHolder, match=r"only its admins and granted agents do \(alpha, beta\)"):
            await access(NODE)
    sc, to_a = await store_client(eve, a)
    refused = await refusal(sc.get(to_a, FileType.DATA, next(iter(held(a)))))
    assert refused.code == "forbidden", refused


async def only_the_delete_grant_deletes(a: Member, b: Member, c: Member, name: str) -> None:
    """The agent `b` cannot delete the snapshot `name` that `c` holds: no delete grant of its own, a holder
    refuses it without one or with the admin's copied from the log; the admin's deletes, to the trash."""
    with pytest.raises(NotAdmin):
        await b.running.controls.access.delete_grant(NODE)
    sc, to_c = await store_client(b, c)
    refused = await refusal(sc.delete(to_c, FileType.SNAPSHOT, name, b""))
    assert refused.code == "forbidden" and "delete grant" in str(refused), refused
    grant = await a.running.controls.access.delete_grant(NODE)
    logged = [e["fields"] for e in a.running.logs.listing() if e["kind"] == "node.delete_grant"]
    assert len(logged) == 1 and logged[0]["node"] == NODE and logged[0]["holder"] == a.peer_id
    refused = await refusal(sc.delete(to_c, FileType.SNAPSHOT, name, grant))
    assert refused.code == "forbidden" and "does not cover" in str(refused), refused
    assert held(c, FileType.SNAPSHOT) == {name}
    sc, to_c = await store_client(a, c)
    await sc.delete(to_c, FileType.SNAPSHOT, name, grant)
    assert not held(c, FileType.SNAPSHOT)
    # Deleted files wait in the holder's trash for the grace time.
    assert any((c.home.path / "held" / "trash" / NODE / "snapshots").iterdir())
    assert [f["kind"] for _t, what, f in c.events if what == "store.delete"] == ["snapshots"]


@pytest.mark.timeout(120)
def test_an_admin_rebuilt_from_the_kit_opens_the_nodes_keys_restores_and_grants(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_peerstore.py::test_an_admin_rebuilt_from_the_kit_opens_the_nodes_keys (there
    by `admin recover` and `up --peer`; tests/daemon/test_office.py keeps those commands' own test)."""

    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await node_office(o, ["beta", "gamma"], files=3, size=100_000)
        await backup(o, a)
        for agent in (b, c):  # alpha is now the only holder of the node's keys...
            await storage_only(o, everyone, agent)
        with pytest.raises(NotAHolder):
            await c.running.controls.access.open_node_repo(NODE)
        await o.stop(a)  # ...and it is lost
        # An admin rebuilt from the recovery kit on a new machine (a new peer key, no box of its own) opens
        # the node's keys through the office key and restores everything.
        d = await recover(o, "delta", via=b)
        await o.until(lambda: d.running.logs.state.config().digest() == b.running.logs.state.config().digest(),
                      3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "delta in step")
        assert len(await snapshots(d)) == 1
        await restored_as_backed_up(o, d)
        # And it can grant the node to an agent, which needs the keys to seal them to it.
        await d.running.controls.nodes.grant(NODE, c.peer_id)
        await o.until(lambda: c.running.logs.state.config().digest() == d.running.logs.state.config().digest(),
                      3 * SETTINGS.heartbeat, "the grant on gamma")
        assert len(await snapshots(c)) == 1

    print(f"kit: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
