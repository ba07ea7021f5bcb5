"""The command line end to end, on real files, in subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli.conftest import CLI
from tests.helpers import make_tree, snapshot_of


def _backup(cli: CLI, *paths: Path, extra: tuple[str, ...] = ()) -> dict:  # type: ignore[type-arg]
    res = cli("repo", "backup", "--json", *extra, *map(str, paths))
    snap: dict = res.json()["snapshot"]  # type: ignore[type-arg]
    return snap


def test_init_backup_snapshots_ls_restore_roundtrip(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    assert "created peerbackup repository" in cli("repo", "init").out
    snap = _backup(cli, src, extra=("--tag", "nightly"))
    listed = cli("repo", "snapshots", "--json").json()
    assert [s["id"] for s in listed] == [snap["id"]]
    assert listed[0]["tags"] == ["nightly"] and listed[0]["paths"] == [str(src)]
    entries = cli("repo", "ls", "--json", "latest", str(src / "dir1")).json()
    assert {e["path"] for e in entries} >= {f"{src}/dir1/file1.dat"}
    assert all(e["path"].startswith(f"{src}/dir1/") for e in entries)
    human = cli("repo", "snapshots").out
    assert snap["short_id"] in human and "1 snapshot(s)" in human
    out = tmp_path / "out"
    res = cli("repo", "restore", snap["short_id"], "--target", str(out))
    assert "restored snapshot" in res.out
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)
    assert "no errors found" in cli("repo", "check", "--read-data").out


def test_diff_and_incremental(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=8)
    cli("repo", "init")
    a = _backup(cli, src)
    (src / "dir2" / "file2.dat").write_bytes(b"changed")
    (src / "added.txt").write_bytes(b"new")
    (src / "empty").unlink()
    b = _backup(cli, src)
    assert b["summary"]["files_unmodified"] > 0
    changes = cli("repo", "diff", "--json", a["id"][:8], b["id"][:8]).json()
    got = {(c["change"], c["path"]) for c in changes}
    assert ("M", f"{src}/dir2/file2.dat") in got
    assert ("+", f"{src}/added.txt") in got
    assert ("-", f"{src}/empty") in got
    assert len(got) == 3


def test_forget_policy_and_prune_frees_space(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    cli("repo", "init")
    ids = []
    for i in range(3):
        (src / f"data{i}.bin").write_bytes(os.urandom(300_000))
        if i:
            (src / f"data{i - 1}.bin").unlink()
        ids.append(_backup(cli, src)["id"])
    before = sum(f.stat().st_size for f in (cli.repo / "data").rglob("*") if f.is_file())
    res = cli("repo", "forget", "--json", "--keep-last", "1", "--prune").json()
    assert res["keep"] == [ids[-1]]
    assert sorted(res["remove"]) == sorted(ids[:2])
    assert res["prune"]["packs_deleted"] >= 1
    after = sum(f.stat().st_size for f in (cli.repo / "data").rglob("*") if f.is_file())
    assert after < before - 500_000  # the two forgotten files' data is gone
    assert [s["id"] for s in cli("repo", "snapshots", "--json").json()] == [ids[-1]]
    assert cli("repo", "check", "--read-data", "--json").json()["ok"]
    out = tmp_path / "out"
    cli("repo", "restore", "latest", "--target", str(out))
    restored = out / str(src).lstrip("/")
    assert (restored / "data2.bin").read_bytes() == (src / "data2.bin").read_bytes()


def test_key_add_list_remove(cli: CLI, tmp_path: Path) -> None:
    cli("repo", "init")
    pwfile = tmp_path / "pw2"
    pwfile.write_text("second passphrase\n")
    added = cli("repo", "key", "add", "--json", "--new-password-file", str(pwfile)).json()["id"]
    keys = cli("repo", "key", "list", "--json").json()
    assert len(keys) == 2 and sum(k["current"] for k in keys) == 1
    # The new passphrase opens the repository too.
    assert cli("repo", "snapshots", "--password-file", str(pwfile), env={"PEERBACKUP_PASSWORD": ""}
               ).rc == 0
    # Removing the key in use is refused; removing the other one works.
    current = next(k["id"] for k in keys if k["current"])
    refused = cli("repo", "key", "remove", current[:8], check=False)
    assert refused.rc == 1 and "refusing to remove the key you are using" in refused.err
    cli("repo", "key", "remove", added[:8])
    assert len(cli("repo", "key", "list", "--json").json()) == 1
    gone = cli("repo", "snapshots", "--password-file", str(pwfile), check=False)
    assert gone.rc == 1 and "Wrong passphrase" in gone.err


def test_exclude_options(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=8)
    patterns = tmp_path / "excludes"
    patterns.write_text("# comment\n*.sh\n")
    cli("repo", "init")
    _backup(cli, src, extra=("--exclude", "dir1", "--exclude-file", str(patterns)))
    paths = {e["path"] for e in cli("repo", "ls", "--json", "latest").json()}
    assert f"{src}/dir0" in paths
    assert not any(p.endswith(".sh") or "/dir1" in p for p in paths)


def test_version_and_usage_errors(cli: CLI, tmp_path: Path) -> None:
    assert cli("--version").out.startswith("peerbackup ")
    res = cli("repo", "backup", str(tmp_path / "missing"), check=False)
    assert res.rc == 2 and "does not exist" in res.err
    res = cli("repo", "forget", check=False)
    assert res.rc in (1, 2)
    no_pw = cli("repo", "snapshots", check=False, env={"PEERBACKUP_PASSWORD": ""})
    assert no_pw.rc != 0


def test_a_reader_that_goes_away_is_not_an_error(cli: CLI, tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "src"
    for i in range(3000):  # a listing far larger than a pipe's buffer
        (src / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 10}" / f"f{i}").write_bytes(b"x")
    cli("repo", "init")
    _backup(cli, src)
    # `repo ls latest | head -1`: the reader closes the pipe after one line.
    proc = subprocess.Popen([sys.executable, "-m", "peerbackup", "repo", "ls", "latest", "--repo", str(cli.repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and first, err
    assert "Broken pipe" not in err and "Traceback" not in err, err
