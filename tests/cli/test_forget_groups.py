"""`repo forget` by group, through the real command: against restic on the same snapshot times and sources,
a dry run that removes exactly what the real run removes, and the data loss of the README's policy.

Snapshots are written straight into a real repository with the times chosen (a backup per snapshot would
take minutes); forget itself runs as the user runs it, in a subprocess, under the zone given by TZ.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from peerbackup.core.crypto import KdfParams
from peerbackup.core.snapshot import Snapshot
from peerbackup.engine.backup import Archiver
from peerbackup.engine.prune import forget_snapshots
from peerbackup.engine.repository import Repository
from peerbackup.storage.local import LocalStore
from tests.cli.conftest import CLI, PASSWORD

# (host, path) of each source: restic's --stdin backups have the path "/" + the stdin file name.
SOURCES = [("alpha", "/a"), ("alpha", "/b"), ("beta", "/a")]
RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def _pool(rng: random.Random, zone: ZoneInfo, n: int) -> list[tuple[str, str, dt.datetime]]:
    """n snapshots (host, path, UTC instant) spread over the weeks around a DST night and over two years,
    with local wall times that exist exactly once in the zone (restic reads --time as a wall time)."""
    night = dt.datetime(2024, 10, 27, 1, tzinfo=dt.UTC)
    out: list[tuple[str, str, dt.datetime]] = []
    seen: set[dt.datetime] = set()
    while len(out) < n:
        if rng.random() < 0.6:
            when = night + dt.timedelta(minutes=rng.randrange(-20 * 24 * 60, 20 * 24 * 60))
        else:
            when = night + dt.timedelta(minutes=rng.randrange(-700 * 24 * 60, 60 * 24 * 60))
        when = when.replace(second=0)
        local = when.astimezone(zone).replace(tzinfo=None)
        round_trip = local.replace(tzinfo=zone).astimezone(dt.UTC)
        folded = local.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
        if round_trip != when or folded != when or when in seen:
            continue  # a wall time that does not exist, or exists twice, that night
        seen.add(when)
        host, path = rng.choice(SOURCES)
        out.append((host, path, when))
    return out


def _pb_repo(tmp: Path, pool: list[tuple[str, str, dt.datetime]]) -> tuple[Path, dict[str, dt.datetime]]:
    store = LocalStore(tmp / "pb")
    Repository.init(store, PASSWORD.encode(), kdf=KdfParams.weak())
    repo = Repository.open(store, PASSWORD.encode(), cache_root=tmp / "pbcache")
    src = tmp / "empty"
    src.mkdir()
    tree = Archiver(repo).backup([str(src)]).snapshot
    times = {}
    for host, path, when in pool:
        snap = Snapshot(time_ns=int(when.timestamp()) * 10**9, host=host, user="u", paths=[path], tree=tree.tree)
        times[repo.save_snapshot(snap)] = when
    forget_snapshots(repo, [tree.id])  # only the pool's snapshots take part
    repo.close()
    return tmp / "pb", times


def _restic(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(["restic", *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _restic_repo(tmp: Path, pool: list[tuple[str, str, dt.datetime]], env: dict[str, str]) -> None:
    _restic(["init", "-q"], env)
    for host, path, when in pool:
        wall = when.astimezone(ZoneInfo(env["TZ"])).strftime("%Y-%m-%d %H:%M:%S")
        subprocess.run(["restic", "backup", "-q", "--stdin", "--stdin-filename", path[1:], "--host", host,
                        "--time", wall], input="x", capture_output=True, text=True, env=env, check=True, timeout=60)


def _policy_args(rng: random.Random) -> list[str]:
    while True:
        args = []
        for rule in RULES:
            n = rng.choice([0, 0, 0, 1, 2, 3, 5])
            if n:
                args += [f"--keep-{rule}", str(n)]
        if args:
            return args


def _restic_keeps(out: str) -> dict[tuple[str, str], dict[dt.datetime, set[str]]]:
    """(host, path) -> kept instant -> the rules that keep it, from `restic forget --json`."""
    groups: dict[tuple[str, str], dict[dt.datetime, set[str]]] = {}
    for g in json.loads(out):
        key = (g["host"], ",".join(sorted(g["paths"])))
        kept = groups.setdefault(key, {})
        for r in g["reasons"] or []:
            when = dt.datetime.fromisoformat(r["snapshot"]["time"]).astimezone(dt.UTC)
            kept[when] = {m.removesuffix(" snapshot") for m in r["matches"]}
        assert set(kept) == {dt.datetime.fromisoformat(s["time"]).astimezone(dt.UTC) for s in g["keep"] or []}
    return groups


def _pb_keeps(out: dict[str, Any], times: dict[str, dt.datetime]) -> dict[tuple[str, str], dict[dt.datetime, set[str]]]:
    groups: dict[tuple[str, str], dict[dt.datetime, set[str]]] = {}
    for g in out["groups"]:
        key = (g["group"]["host"], ",".join(g["group"]["paths"]))
        groups[key] = {times[sid]: set(g["reasons"][sid]) for sid in g["keep"]}
    return groups


@pytest.mark.parametrize(("zone", "seed"), [("Europe/Paris", 1), ("Asia/Kolkata", 3)])
def test_keep_sets_are_restics(cli: CLI, tmp_path: Path, zone: str, seed: int) -> None:
    """The same snapshots, the same random policies: restic and peerbackup keep the same snapshots of each
    group, for the same reasons. (restic comes from .ci/system-deps.)"""
    rng = random.Random(seed)
    pool = _pool(rng, ZoneInfo(zone), 20)
    env = {**os.environ, "TZ": zone, "RESTIC_PASSWORD": "x", "RESTIC_REPOSITORY": str(tmp_path / "restic"),
           "RESTIC_CACHE_DIR": str(tmp_path / "rcache")}
    _restic_repo(tmp_path, pool, env)
    repo, times = _pb_repo(tmp_path, pool)
    assert len(times) == len(pool)
    for _ in range(8):
        policy = _policy_args(rng)
        theirs = _restic_keeps(_restic(["forget", "--dry-run", "--json", *policy], env))
        ours = _pb_keeps(cli("repo", "forget", "--dry-run", "--json", *policy, "--repo", str(repo),
                             env={"TZ": zone}).json(), times)
        assert ours == theirs, f"policy {' '.join(policy)} in {zone}"


def test_dry_run_removes_exactly_what_the_real_run_removes(cli: CLI, tmp_path: Path) -> None:
    rng = random.Random(7)
    pool = _pool(rng, ZoneInfo("Europe/Paris"), 30)
    for round_ in range(3):
        repo, _ = _pb_repo(tmp_path / f"r{round_}", pool)
        policy = _policy_args(rng)
        args = ["repo", "forget", "--json", *policy, "--repo", str(repo)]
        dry = cli(*args, "--dry-run", env={"TZ": "Europe/Paris"}).json()
        real = cli(*args, env={"TZ": "Europe/Paris"}).json()
        assert dry["groups"] == real["groups"] and dry["remove"] == real["remove"]
        left = {s["id"] for s in cli("repo", "snapshots", "--json", "--repo", str(repo)).json()}
        assert left == set(dry["keep"]) and not left & set(dry["remove"])
        again = cli(*args, env={"TZ": "Europe/Paris"}).json()
        assert again["remove"] == [] and set(again["keep"]) == left  # idempotent


def test_readme_policy_on_a_repository_of_two_folders(cli: CLI, tmp_path: Path) -> None:
    """`repo forget --keep-last 1` on a repository holding two folders kept one folder only."""
    cli("repo", "init")
    folders = [tmp_path / "docs", tmp_path / "mail"]
    for f in folders:
        f.mkdir()
        (f / "x.txt").write_text(f.name)
    for _ in range(2):
        for f in folders:
            cli("repo", "backup", str(f))
    out = cli("repo", "forget", "--keep-last", "1", "--json").json()
    assert sorted(g["group"]["paths"][0] for g in out["groups"]) == sorted(map(str, folders))
    left = cli("repo", "snapshots", "--json").json()
    assert sorted(p for s in left for p in s["paths"]) == sorted(map(str, folders))
    # The newest of one folder comes back with `restore latest --path`.
    cli("repo", "restore", "latest", "--path", str(folders[0]), "--target", str(tmp_path / "out"))
    assert (tmp_path / "out" / str(folders[0]).lstrip("/") / "x.txt").read_text() == "docs"
    # The old behaviour is still there on purpose, and says what it does per group.
    text = cli("repo", "forget", "--keep-last", "1", "--group-by", "none", "--dry-run").out
    assert "all snapshots: keep 1, would remove 1" in text


def test_filters_and_refusals(cli: CLI, tmp_path: Path) -> None:
    cli("repo", "init")
    a, b = tmp_path / "a", tmp_path / "b"
    for f in (a, b):
        f.mkdir()
        cli("repo", "backup", str(f))
        cli("repo", "backup", str(f))
    out = cli("repo", "forget", "--keep-last", "1", "--path", str(a), "--json").json()
    assert len(out["groups"]) == 1 and len(out["remove"]) == 1
    assert len(cli("repo", "snapshots", "--json").json()) == 3  # b's two are untouched
    for bad in (["--keep-last", "-2"], ["--keep-last", "1", "--group-by", "hosts"], ["latest", "--keep-last", "1"]):
        res = cli("repo", "forget", *bad, check=False)
        assert res.rc == 2, (bad, res)
