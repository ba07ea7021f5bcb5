"""Run the real `peerbackup` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Result

PASSWORD = "test passphrase"


class CLI:
    def __init__(self, tmp: Path) -> None:
        self.repo = tmp / "repo"
        self.env = dict(os.environ)
        self.env.update({
            "PEERBACKUP_PASSWORD": PASSWORD,
            "PEERBACKUP_CACHE_DIR": str(tmp / "cache"),
            "PEERBACKUP_INSECURE_TEST_KDF": "1",
        })

    def __call__(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
                 prefix: list[str] | None = None, timeout: float = 120) -> Result:
        cmd = [*(prefix or []), sys.executable, "-m", "peerbackup", *args]
        if args and args[0] == "repo" and "--repo" not in args:
            cmd += ["--repo", str(self.repo)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="surrogateescape",
            env={**self.env, **(env or {})}, timeout=timeout,
        )
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
        return res


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)
