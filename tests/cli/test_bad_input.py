"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbackup.core import codec
from peerbackup.core.crypto import KdfParams
from peerbackup.core.objects import Kind
from peerbackup.core.tree import FILE, Node, encode_tree
from peerbackup.engine.repository import Repository
from peerbackup.storage.local import LocalStore
from tests.cli.conftest import CLI, PASSWORD
from tests.helpers import make_tree, snapshot_of


def _init_and_backup(cli: CLI, src: Path) -> str:
    cli("repo", "init")
    snap_id: str = cli("repo", "backup", "--json", str(src)).json()["snapshot"]["id"]
    return snap_id


def _packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "data").rglob("*") if p.is_file())


def test_wrong_passphrase(cli: CLI, tmp_path: Path) -> None:
    cli("repo", "init")
    res = cli("repo", "snapshots", check=False, env={"PEERBACKUP_PASSWORD": "nope"})
    assert res.rc == 1
    assert "Wrong passphrase" in res.err


def test_not_a_repository(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    res = cli("repo", "snapshots", "--repo", str(tmp_path / "plain"), check=False)
    assert res.rc == 1 and "is not a peerbackup repository" in res.err


def test_init_refuses_existing_repository(cli: CLI) -> None:
    cli("repo", "init")
    res = cli("repo", "init", check=False)
    assert res.rc == 1 and "refusing to initialise" in res.err


def test_newer_repository_version_is_refused(cli: CLI) -> None:
    cli("repo", "init")
    cfg = cli.repo / "config"
    obj = codec.unpack(cfg.read_bytes())
    obj["v"] = 99
    cfg.write_bytes(codec.pack(obj))
    res = cli("repo", "snapshots", check=False)
    assert res.rc == 1
    assert "format version 99" in res.err and "upgrade peerbackup" in res.err


def test_corrupted_pack_is_named_and_other_files_still_restore(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    # Two files in two different packs: random data larger than a pack each.
    (src / "a.bin").write_bytes(os.urandom(17 * 1024 * 1024))
    (src / "b.bin").write_bytes(os.urandom(17 * 1024 * 1024))
    _init_and_backup(cli, src)
    packs = _packs(cli.repo)
    assert len(packs) >= 3
    victim = max(packs, key=lambda p: p.stat().st_size)  # a data pack, not the tree pack
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    res = cli("repo", "check", "--read-data", check=False)
    assert res.rc == 1
    assert f"pack {victim.name[:8]}" in res.out and "damaged" in res.out
    out = tmp_path / "out"
    restored = cli("repo", "restore", "latest", "--target", str(out), check=False)
    assert restored.rc == 3  # partial: the damaged chunk's file is reported
    assert "altered or the key is wrong" in restored.err
    root = out / str(src).lstrip("/")
    intact = [n for n in ("a.bin", "b.bin") if (root / n).read_bytes() == (src / n).read_bytes()]
    assert intact, "the file whose chunks are intact must restore"


def test_truncated_pack_is_found_by_plain_check(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=6)
    _init_and_backup(cli, src)
    victim = max(_packs(cli.repo), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:1000])
    res = cli("repo", "check", check=False)
    assert res.rc == 1 and f"pack {victim.name[:8]}: truncated" in res.out


def test_corrupted_snapshot_and_index_are_named(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=4)
    snap_id = _init_and_backup(cli, src)
    snap_file = cli.repo / "snapshots" / snap_id
    snap_file.write_bytes(snap_file.read_bytes()[:-5] + b"xxxxx")
    index_file = next((cli.repo / "index").iterdir())
    index_file.write_bytes(b"garbage")
    res = cli("repo", "check", check=False)
    assert res.rc == 1
    assert f"snapshot {snap_id[:8]}" in res.out
    assert f"index {index_file.name[:8]}" in res.out


def _plant_tree(repo_dir: Path, cache: Path, names: list[str]) -> None:
    """Write a snapshot whose tree holds the given (hostile) names, as a forger would."""
    repo = Repository.open(LocalStore(repo_dir), PASSWORD.encode(), cache_root=cache)
    blob_id, _ = repo.add_blob(Kind.DATA, b"owned")
    nodes = [Node(name=n, type=FILE, mode=0o644, size=5, content=[blob_id]) for n in names]
    nodes.append(Node(name="fine.txt", type=FILE, mode=0o644, size=5, content=[blob_id]))
    tree_id, _ = repo.add_blob(Kind.TREE, encode_tree(nodes))
    repo.flush()
    repo.save_snapshot(repo.new_snapshot(["/x"], tree_id, [], time.time()))
    repo.close()


def test_unsafe_names_never_escape_the_target(cli: CLI, tmp_path: Path) -> None:
    cli("repo", "init")
    _plant_tree(cli.repo, tmp_path / "cache2", ["..", "../escape.txt", "/etc/evil", "a/../../b", "."])
    out = tmp_path / "deep" / "out"
    res = cli("repo", "restore", "latest", "--target", str(out), check=False)
    assert res.rc == 3
    assert res.err.count("Refusing unsafe name") == 5
    assert (out / "fine.txt").read_bytes() == b"owned"
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "cache" not in str(p)
               and "repo" not in p.parts}
    assert written == {Path("deep"), Path("deep/out"), Path("deep/out/fine.txt")}


def test_duplicate_names_in_a_tree_are_refused(cli: CLI, tmp_path: Path) -> None:
    cli("repo", "init")
    _plant_tree(cli.repo, tmp_path / "cache2", ["dup", "dup"])
    res = cli("repo", "restore", "latest", "--target", str(tmp_path / "out"), check=False)
    assert res.rc == 3 and "Refusing unsafe name" in res.err


def test_non_empty_target_refused_without_overwrite(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=4)
    _init_and_backup(cli, src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine").write_text("mine")
    res = cli("repo", "restore", "latest", "--target", str(out), check=False)
    assert res.rc == 1 and "not empty" in res.err and "--overwrite" in res.err
    assert [p.name for p in out.iterdir()] == ["mine"]
    cli("repo", "restore", "latest", "--target", str(out), "--overwrite")
    assert (out / "mine").read_text() == "mine"
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)


def _as_nobody() -> list[str]:
    """Run as an unprivileged user when we are root: root can read a mode-0 file."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to test unreadable files as root")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="pb-nobody-"))
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_unreadable_file_gives_partial_snapshot(cli: CLI, shared_tmp: Path) -> None:
    prefix = _as_nobody()
    cli.repo = shared_tmp / "repo"
    cli.env["PEERBACKUP_CACHE_DIR"] = str(shared_tmp / "cache")
    src = shared_tmp / "src"
    make_tree(src, files=6)
    (src / "secret.txt").write_text("no")
    if prefix:
        subprocess.run(["chown", "-R", "65534:65534", str(src)], check=True)
    os.chmod(src / "secret.txt", 0)
    cli("repo", "init", prefix=prefix)
    res = cli("repo", "backup", "--json", str(src), check=False, prefix=prefix)
    assert res.rc == 3, res.err
    body = res.json()
    assert any("secret.txt" in e and "cannot open" in e for e in body["errors"])
    assert [(f["path"], f["reason"]) for f in body["failures"]] == [(str(src / "secret.txt"), "permission denied")]
    assert "could not be read" in res.err and "(1 permission denied)" in res.err
    text = cli("repo", "backup", str(src), check=False, prefix=prefix)
    assert text.rc == 3 and f"error: {src}/secret.txt: permission denied (cannot open: Permission denied)" in text.err
    paths = {e["path"] for e in cli("repo", "ls", "--json", "latest", prefix=prefix).json()}
    assert f"{src}/dir1/file1.dat" in paths and f"{src}/secret.txt" not in paths


def test_file_changing_while_read_is_reported(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    growing = src / "growing.log"
    growing.write_bytes(os.urandom(40 * 1024 * 1024))
    cli("repo", "init")
    stop = threading.Event()

    def append() -> None:
        with open(growing, "ab") as f:
            while not stop.is_set():
                f.write(b"x" * 4096)
                f.flush()
                time.sleep(0.0005)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        res = cli("repo", "backup", "--json", str(src), check=False)
    finally:
        stop.set()
        writer.join()
    assert res.rc == 3
    assert any("changed while it was being read" in e for e in res.json()["errors"])
    assert [f["reason"] for f in res.json()["failures"]] == ["changed while read"]
    assert cli("repo", "check").rc == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), mounted for the test and always unmounted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_gives_clean_error_and_valid_repository(
    cli: CLI, tmp_path: Path, small_disk: Path
) -> None:
    cli.repo = small_disk / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"hello " * 1000)
    cli("repo", "init")
    cli("repo", "backup", str(src))
    (src / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    res = cli("repo", "backup", str(src), check=False)
    assert res.rc == 1
    assert "No space left" in res.err and "still valid" in res.err
    assert "Traceback" not in res.err
    assert not any(p.name.startswith(".tmp-") for p in cli.repo.rglob("*"))
    assert cli("repo", "check").rc == 0
    out = tmp_path / "out"
    cli("repo", "restore", "latest", "--target", str(out))
    assert (out / str(src).lstrip("/") / "small.txt").read_bytes() == b"hello " * 1000
    assert len(cli("repo", "snapshots", "--json").json()) == 1


def test_kdf_params_are_recorded_in_key_files(tmp_path: Path) -> None:
    # The insecure test KDF must never leak into a repository made without the env var.
    store = LocalStore(tmp_path / "r")
    Repository.init(store, b"x", kdf=KdfParams())
    key = next((tmp_path / "r" / "keys").iterdir())
    obj = codec.unpack(key.read_bytes())
    assert obj["kdf"] == {"alg": "argon2id", "ops": 3, "mem": 64 * 1024 * 1024}
    assert sys.executable
