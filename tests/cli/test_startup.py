"""The command line imports only what the command it runs uses: the backup engine (half of its start-up) only
for a repository's commands. Every test and script that calls `peerbackup status` or `log` pays the rest."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINE = "peerbackup.engine"


def imported_after(argv: list[str]) -> set[str]:
    """The peerbackup modules loaded once `argv` is parsed and its command looked up (not run)."""
    code = ("import sys; from peerbackup.cli.main import _parser; "
            f"_parser().parse_args({argv!r}); "
            "print('\\n'.join(m for m in sys.modules if m.startswith('peerbackup')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.slow  # a fresh interpreter each
@pytest.mark.parametrize("argv", [["status"], ["log", "n"], ["invite"], ["node", "list"], ["snapshots", "n"],
                                  ["repo", "snapshots"]])
def test_no_command_line_parse_imports_the_engine(argv: list[str]) -> None:
    assert not {m for m in imported_after(argv) if m.startswith(ENGINE)}
