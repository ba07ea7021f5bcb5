"""`peerbackup demo` (what `make run` starts): a first backup in a few seconds.

Generates a small office-like sample tree, backs it up into a local
repository, changes a few files, backs up again, then lists the snapshots,
shows the diff, restores the latest snapshot and checks it byte for byte.
"""

from __future__ import annotations

import filecmp
import os
import random
import shutil
import time
from pathlib import Path

from peerbackup.cli.progress import human_bytes
from peerbackup.core.tree import DIR
from peerbackup.engine.backup import Archiver
from peerbackup.engine.check import check
from peerbackup.engine.diff import diff_trees
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.walk import walk
from peerbackup.storage.local import LocalStore

DEMO_PASSWORD = "demo-passphrase"
_WORDS = [
    "invoice", "quarterly", "budget", "meeting", "client", "project", "report", "draft", "review",
    "payroll", "contract", "supplier", "schedule", "office", "backup", "archive", "minutes", "ledger",
]


def make_sample_tree(root: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    for dept in ("accounts", "sales", "shared/templates"):
        d = root / dept
        d.mkdir(parents=True, exist_ok=True)
        for i in range(40):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(200, 20000))]
            (d / f"{_WORDS[i % len(_WORDS)]}-{i:03d}.txt").write_text(" ".join(words))
        for i in range(5):  # "already compressed" files: scans, photos
            (d / f"scan-{i:02d}.pdf").write_bytes(rng.randbytes(rng.randint(100_000, 2_000_000)))
    shutil.copy(root / "accounts" / "invoice-000.txt", root / "sales" / "Copy of invoice-000.txt")
    # Files written seconds ago are re-read by design (see engine/backup.py); office
    # files are older, so date the sample a day back.
    day_ago = time.time() - 86400
    for p in root.rglob("*"):
        os.utime(p, (day_ago, day_ago))


def _mutate(root: Path) -> None:
    with open(root / "accounts" / "invoice-000.txt", "a") as f:
        f.write(" amended after review")
    (root / "sales" / "new-client.txt").write_text("a new client arrived today\n" * 100)
    (root / "shared" / "templates" / "scan-00.pdf").unlink()


def run_demo(workdir: str) -> int:
    base = Path(workdir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    data, repo_dir, out = base / "office", base / "repository", base / "restored"
    print(f"peerbackup demo in {base}\n")
    make_sample_tree(data)
    store = LocalStore(repo_dir)
    Repository.init(store, DEMO_PASSWORD.encode())
    repo = Repository.open(store, DEMO_PASSWORD.encode(), cache_root=base / "cache")
    try:
        t = time.monotonic()
        first = Archiver(repo).backup([str(data)], tags=["demo"]).snapshot
        s = first.summary
        print(f"1. backed up {s.files_new} files, {human_bytes(s.bytes_processed)} "
              f"-> {human_bytes(s.bytes_stored)} stored, in {time.monotonic() - t:.2f} s "
              f"(snapshot {first.short_id})")
        _mutate(data)
        t = time.monotonic()
        second = Archiver(repo).backup([str(data)], tags=["demo"]).snapshot
        s = second.summary
        print(f"2. after a few edits: {s.files_unmodified} files unchanged (skipped), "
              f"{s.files_new + s.files_changed} read, {human_bytes(s.bytes_stored)} added, "
              f"in {time.monotonic() - t:.2f} s (snapshot {second.short_id})")
        print("\nSnapshots:")
        for snap in repo.snapshots():
            print(f"   {snap.short_id}  {snap.time.astimezone():%Y-%m-%d %H:%M:%S}  "
                  f"{human_bytes(snap.summary.bytes_processed)}  {', '.join(snap.paths)}")
        print("\nChanges between them:")
        for change, path in diff_trees(repo, first.tree, second.tree):
            print(f"   {change} {path}")
        files = [p for p, n in walk(repo, second.tree) if n.type != DIR]
        print(f"\nThe latest snapshot holds {len(files)} files, e.g. {files[0]}")
        stats = Restorer(repo).restore(second.tree, str(out))
        restored = out / str(data).lstrip("/")
        same = _same_tree(data, restored)
        print(f"3. restored {stats.files} files to {out}: "
              f"{'identical to the source' if same else 'DIFFERENT from the source'}")
        res = check(repo, read_data=True)
        print(f"4. check --read-data: {'no errors' if res.ok else res.errors}")
    finally:
        repo.close()
    print(f"""
Try it yourself (passphrase: {DEMO_PASSWORD}):
   export PEERBACKUP_PASSWORD={DEMO_PASSWORD}
   .venv/bin/peerbackup repo snapshots --repo {repo_dir}
   .venv/bin/peerbackup repo ls --repo {repo_dir} latest
   .venv/bin/peerbackup repo backup --repo {repo_dir} ~/Documents
""")
    return 0 if same and res.ok else 1


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    _m, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)




if __name__ == "__main__":
    import sys

    sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else ".demo"))
