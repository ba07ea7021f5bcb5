"""Checking a restore against its source: every entry's kind, size, mode and mtime, and the contents of a
stable sample of files plus every large one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.bench.common import MiB

LARGE_FILE = 50 * MiB  # make_dataset's large files; all of them get content-hashed
HASH_SAMPLE = 50

Entry = tuple[str, int, int, int, str]  # kind, size, mode, mtime_ns, link target


def scan(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirnames, names in os.walk(root):
        for name in dirnames + names:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", 0, 0, 0, os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", 0, st.st_mode & 0o7777, 0, "")  # dir mtimes churn
            else:
                out[rel] = ("file", st.st_size, st.st_mode & 0o7777, st.st_mtime_ns, "")
    return out


def find_restored_root(target: Path, src: Path) -> Path | None:
    """Where the tool put the tree: full absolute path, basename, or target itself."""
    top = set(os.listdir(src))
    for cand in (target / src.relative_to(src.anchor), target / src.name, target):
        if cand.is_dir() and top and top <= set(os.listdir(cand)):
            return cand
    return None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def hash_sample(entries: dict[str, Entry]) -> list[str]:
    """~50 files chosen by hash of their path (stable, spread over the tree) + all large ones."""
    files = [p for p, e in entries.items() if e[0] == "file"]
    ranked = sorted(files, key=lambda p: hashlib.sha1(p.encode()).digest())
    large = [p for p in files if entries[p][1] >= LARGE_FILE]
    return sorted(set(ranked[:HASH_SAMPLE]) | set(large))


def verify(src: Path, target: Path) -> str | None:
    """None if the restore matches src, else a description of the differences."""
    root = find_restored_root(target, src)
    if root is None:
        return f"restored tree not found under {target}"
    want, got = scan(src), scan(root)
    problems = []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(p for p in set(want) & set(got) if want[p] != got[p])
    for label, paths in (("missing", missing), ("extra", extra), ("metadata differs", differ)):
        if paths:
            problems.append(f"{len(paths)} {label} (e.g. {paths[0]})")
    for rel in hash_sample(want):
        if rel in got and sha256_file(str(src / rel)) != sha256_file(str(root / rel)):
            problems.append(f"content differs: {rel}")
    return "; ".join(problems) or None

