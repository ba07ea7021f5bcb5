"""The tools compared, as the commands they run: restic, borg, peerbackup (the working tree's) and
peerbackup as of another commit (--baseline); each tool's scratch layout, and installing restic and borg
when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import PASSWORD, REPO_ROOT
from tests.bench.measure import run_quiet

ALL_TOOLS = ("peerbackup", "restic", "borg")
# Run with -c by a baseline tool: the working directory (first on sys.path with
# -c) and the editable install's import hook would otherwise win over PYTHONPATH
# and run the working tree's code.
_BASELINE_PATH = (
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
)
_BASELINE_BOOT = (
    _BASELINE_PATH + "import runpy; sys.argv[0] = 'peerbackup'; "
    "runpy.run_module('peerbackup', run_name='__main__')"
)


@dataclass
class Layout:
    """Per tool, per run scratch space; deleted after the run."""

    root: Path

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def restore(self) -> Path:
        return self.root / "restore"


class Tool:
    name = ""
    ok_codes: frozenset[int] = frozenset({0})

    def env(self, lay: Layout) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> Path:
        return REPO_ROOT

    def version(self) -> str:
        raise NotImplementedError

    def init(self, lay: Layout) -> list[str]:
        raise NotImplementedError

    def backup(self, lay: Layout, src: Path, n: int) -> list[str]:
        raise NotImplementedError

    def restore(self, lay: Layout, n: int) -> tuple[list[str], Path]:
        """argv and working directory restoring snapshot n into lay.restore."""
        raise NotImplementedError


class Restic(Tool):
    name = "restic"

    def env(self, lay: Layout) -> dict[str, str]:
        return dict(
            os.environ,
            RESTIC_PASSWORD=PASSWORD,
            RESTIC_REPOSITORY=str(lay.repo),
            RESTIC_CACHE_DIR=str(lay.cache),
        )

    def version(self) -> str:
        return run_quiet(["restic", "version"]).stdout.strip()

    def init(self, lay: Layout) -> list[str]:
        return ["restic", "init", "--repository-version", "2"]

    def backup(self, lay: Layout, src: Path, n: int) -> list[str]:
        return ["restic", "backup", str(src)]

    def restore(self, lay: Layout, n: int) -> tuple[list[str], Path]:
        return ["restic", "restore", "latest", "--target", str(lay.restore)], REPO_ROOT


class Borg(Tool):
    name = "borg"
    ok_codes = frozenset({0, 1})  # 1 = completed with warnings

    def env(self, lay: Layout) -> dict[str, str]:
        return dict(
            os.environ,
            BORG_PASSPHRASE=PASSWORD,
            BORG_BASE_DIR=str(lay.cache),  # keys, security dir, files/chunks caches
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )

    def version(self) -> str:
        return run_quiet(["borg", "--version"]).stdout.strip()

    def init(self, lay: Layout) -> list[str]:
        return ["borg", "init", "-e", "repokey", str(lay.repo)]

    def backup(self, lay: Layout, src: Path, n: int) -> list[str]:
        return ["borg", "create", "--compression", "zstd,3", f"{lay.repo}::snap-{n}", str(src)]

    def restore(self, lay: Layout, n: int) -> tuple[list[str], Path]:
        return ["borg", "extract", f"{lay.repo}::snap-{n}"], lay.restore


class Peerbackup(Tool):
    name = "peerbackup"

    def _cli(self, *args: str) -> list[str]:
        # The interpreter running this script: the project's venv.
        return [sys.executable, "-m", "peerbackup", *args]

    def env(self, lay: Layout) -> dict[str, str]:
        return dict(
            os.environ, PEERBACKUP_PASSWORD=PASSWORD, PEERBACKUP_CACHE_DIR=str(lay.cache)
        )

    def version(self) -> str:
        res = run_quiet(self._cli("--version"), cwd=REPO_ROOT)
        rev = run_quiet(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
        ver = res.stdout.strip() if res.returncode == 0 else "version unknown"
        return f"{ver} (git {rev.stdout.strip() or '?'})"

    def init(self, lay: Layout) -> list[str]:
        return self._cli("repo", "init", "--repo", str(lay.repo))

    def backup(self, lay: Layout, src: Path, n: int) -> list[str]:
        return self._cli("repo", "backup", "--repo", str(lay.repo), str(src))

    def restore(self, lay: Layout, n: int) -> tuple[list[str], Path]:
        argv = self._cli("repo", "restore", "--repo", str(lay.repo), "latest")
        return [*argv, "--target", str(lay.restore)], REPO_ROOT


class PeerbackupAt(Peerbackup):
    """peerbackup as of another commit (--baseline), from a `git archive` of it."""

    def __init__(self, rev: str, workdir: Path) -> None:
        sha = run_quiet(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"])
        if sha.returncode != 0:
            raise SystemExit(f"--baseline {rev}: not a commit")
        self.sha = sha.stdout.strip()
        self.name = f"peerbackup@{rev}"
        self.src = workdir / f"baseline-{self.sha[:12]}"
        if not (self.src / "peerbackup").is_dir():
            self.src.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", self.sha, "peerbackup"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(self.src)], input=archive, check=True)

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-c", _BASELINE_BOOT, *args]

    def env(self, lay: Layout) -> dict[str, str]:
        return dict(super().env(lay), PYTHONPATH=str(self.src))

    def version(self) -> str:
        probe = _BASELINE_PATH + "import peerbackup; print(peerbackup.__file__)"
        res = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, PYTHONPATH=str(self.src)),
                             cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if not res.stdout.startswith(str(self.src)):
            raise SystemExit(f"--baseline: the code imported is not {self.src}: {res.stdout}{res.stderr}")
        return f"git {self.sha[:12]}, run from {self.src}"


TOOL_CLASSES: dict[str, type[Tool]] = {"peerbackup": Peerbackup, "restic": Restic, "borg": Borg}


def ensure_installed(names: Sequence[str]) -> list[str]:
    """Install restic/borg through apt if missing; returns the usable tools."""
    missing = [n for n in names if n in ("restic", "borg") and shutil.which(n) is None]
    if missing:
        print(f"installing {', '.join(missing)} with apt-get ...", flush=True)
        install = ["apt-get", "install", "-y", "restic", "borgbackup"]
        if subprocess.run(install, check=False).returncode != 0:
            # Usually a stale package index in a fresh container.
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(install, check=False)
    usable = []
    for n in names:
        if n in ("restic", "borg") and shutil.which(n) is None:
            print(f"WARNING: {n} is not installed, skipping it", file=sys.stderr)
        else:
            usable.append(n)
    return usable
