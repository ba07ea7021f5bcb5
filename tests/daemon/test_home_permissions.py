"""Secrets stay private whatever state the home was in (issue 14, finding 6): a home made by a plain `mkdir`
is tightened to 0700, one that belongs to another user or is a shared sticky directory is refused, and the
SQLite files beside the daemon's databases (which hold invite secrets) are 0600 even when an older version
left them 0644."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from peerbackup.office.membership.state import _SCHEMA
from peerbackup.storage.sqlite import SIDECARS, open_db
from tests.daemon.harness import Office


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_home_made_by_mkdir_is_tightened_and_its_databases_are_private(office: Office) -> None:
    p = office.peer("alpha")
    p.home.mkdir(mode=0o755)
    os.chmod(p.home, 0o755)
    office.cli("init", "--home", str(p.home), "--office", "Acme", "--name", "alpha")
    assert mode(p.home) == 0o700
    os.chmod(p.home, 0o775)  # loosened again by hand: the daemon tightens it when it starts
    for s in SIDECARS[:2]:  # sidecars an older version left readable by all
        (p.home / f"state.db{s}").touch(mode=0o644)
        os.chmod(p.home / f"state.db{s}", 0o644)
    office.start(p)
    assert mode(p.home) == 0o700
    private = [f for f in p.home.iterdir() if f.name.startswith(("state.db", "events.db"))]
    assert {f.name for f in private} >= {"state.db", "events.db", "state.db-wal", "state.db-shm"}
    assert {f.name: mode(f) for f in private} == {f.name: 0o600 for f in private}


def test_a_home_of_another_user_or_a_shared_directory_is_refused(office: Office, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # nobody's: they could rename our secrets away and put theirs
    res = office.cli("init", "--home", str(theirs), "--office", "Acme", "--name", "alpha", check=False)
    assert res.rc == 1 and "belongs to user id 65534" in res.err, res
    assert list(theirs.iterdir()) == []  # nothing written
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    res = office.cli("init", "--home", str(shared), "--office", "Acme", "--name", "alpha", check=False)
    assert res.rc == 1 and "shared directory" in res.err, res
    assert mode(shared) == 0o1777 and list(shared.iterdir()) == []


def test_open_db_makes_the_database_and_its_sidecars_private(tmp_path: Path) -> None:
    db_path = tmp_path / "x.db"
    for s in ("", *SIDECARS):
        Path(f"{db_path}{s}").touch()
        os.chmod(f"{db_path}{s}", 0o644)

    async def run() -> None:
        db = await open_db(db_path, _SCHEMA, "nothing")
        await db.close()

    asyncio.run(run())
    assert {s: mode(Path(f"{db_path}{s}")) for s in ("", *SIDECARS) if Path(f"{db_path}{s}").exists()} == \
        {s: 0o600 for s in ("", *SIDECARS) if Path(f"{db_path}{s}").exists()}
