"""The README works straight through: its command blocks, run in order as a reader types them.

Which blocks run: a block (4-space indented, or a ``` fence) whose every line is a `peerbackup`
or `export` command, and whose every `peerbackup` command says which home (`--home`) or which
local repository (`--repo PATH`) it uses. The blocks written for several machines use each
machine's default home and port, which one machine cannot give three daemons: they are not run
here (the daemon tests cover them). So: the "try it on one machine" walkthrough, the node and
schedule blocks that follow it (the same daemons, in order), and the standalone engine block.

What is changed before a line runs, and nothing else:
- paths: `/tmp/`, `/srv/` and `/mnt/usb/` at the start of a word are moved under the test's
  directory, and HOME is a directory there (so `~/Documents` is too); the test fills
  ~/Documents, /srv/share and /srv/accounts with a few files first;
- the one placeholder, `1a2b3c4d` (the README's example of a snapshot id the reader copies from
  `repo snapshots`), is the id of the repository's first snapshot.

How a line runs: with bash, with the .venv's `peerbackup` first on PATH. `export NAME=VALUE`
sets the environment of the lines after it. A line ending in `&` is a daemon: started in the
background in its own process group, waited for until its home answers (as a reader sees it
start), and stopped at the end whatever happened. A line with `--follow` runs until stopped:
it is given a few seconds, stopped like Ctrl-C, and must have printed the job's end meanwhile
without failing. Any other line must exit 0 within its time; a failure names the block, the
line as written and as run, and its output.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon.harness import Peer, daemon_env, stop_group, wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHS = re.compile(r"(?<![\w./~-])/(tmp|srv|mnt/usb)/")
SNAPSHOT_PLACEHOLDER = "1a2b3c4d"
COMMAND_TIMEOUT = 180.0  # `backup NODE --wait` waits for an election, a dispatch and a backup
FOLLOW_FOR = 5.0
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Block:
    line: int  # where it starts in README.md
    commands: list[str]

    def __str__(self) -> str:
        return f"README.md line {self.line}:\n" + "\n".join(f"    {c}" for c in self.commands)


def blocks(text: str) -> list[Block]:
    """Every code block of the README: 4-space indented paragraphs and ``` fences."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(Block(i + 2, [ln for ln in lines[i + 1:j] if ln.strip()]))
            i = j + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            out.append(Block(i + 1, [ln[4:] for ln in lines[i:j] if ln.strip()]))
            i = j
        else:
            i += 1
    return out


def strip_comment(line: str) -> str:
    """The line without its `# comment` (a # that starts a word outside quotes), right-trimmed."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def runnable(block: Block) -> bool:
    """The rule of the module docstring: one machine's commands, each saying where it works."""
    for c in block.commands:
        words = strip_comment(c).split()
        if not words or words[0] not in ("peerbackup", "export"):
            return False
        if words[0] == "peerbackup" and "--home" not in words and not any(
                w == "--repo" and not nxt.startswith("office:") for w, nxt in itertools.pairwise(words)):
            return False
    return True


class Reader:
    """Runs the README's lines as a reader would, in one directory, and keeps what it started."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {**daemon_env(), "HOME": str(tmp / "home"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        self.env.pop("PEERBACKUP_PASSWORD", None)
        self.daemons: list[tuple[subprocess.Popen[bytes], Path]] = []
        for d in ("tmp", "srv", "mnt/usb"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        for folder, n in (("home/Documents", 5), ("srv/share", 3), ("srv/accounts", 4)):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                (tmp / folder / f"file{k}.txt").write_text(f"{folder} {k}\n" * (k + 1))
        (tmp / "home/Documents/scratch.tmp").write_text("excluded\n")

    def rewrite(self, command: str) -> str:
        command = PATHS.sub(lambda m: f"{self.tmp}/{m.group(1)}/", command)
        if SNAPSHOT_PLACEHOLDER in command:
            repo = re.search(r"--repo\s+(\S+)", command)
            assert repo, f"{command}: the placeholder snapshot id needs the line's --repo"
            out = self.run_quiet(f"peerbackup repo snapshots --json --repo {repo.group(1)}")
            command = command.replace(SNAPSHOT_PLACEHOLDER, json.loads(out)[0]["id"][:8])
        return command

    def run_quiet(self, command: str) -> str:
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env,
                              timeout=COMMAND_TIMEOUT)
        assert proc.returncode == 0, f"{command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def run(self, block: Block, written: str) -> None:
        line = strip_comment(written)
        words = shlex.split(line)
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value
            return
        command = self.rewrite(line)
        where = f"{block}\n\nfailed at:\n    {written}\nrun as:\n    {command}\n"
        if command.endswith("&"):
            self.start(command[:-1].rstrip(), where)
        elif "--follow" in words:
            self.follow(command, where)
        else:
            try:
                proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env,
                                      timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                raise AssertionError(f"{where}did not end within {COMMAND_TIMEOUT} s\n{exc.stdout!r}\n{exc.stderr!r}"
                                     f"{self.logs()}") from None
            if proc.returncode != 0:
                raise AssertionError(f"{where}exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n"
                                     f"{proc.stderr}{self.logs()}")

    def start(self, command: str, where: str) -> None:
        given = re.search(r"--home\s+(\S+)", command)
        assert given, f"{where}a daemon in the README must say its home"
        home = Path(given.group(1))
        log = self.tmp / f"daemon-{len(self.daemons)}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(["bash", "-c", f"exec {command}"], stdout=out, stderr=out, env=self.env,
                                    start_new_session=True)
        self.daemons.append((proc, log))
        peer = Peer(home.name, home, log)

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{where}the daemon exited {proc.returncode}:\n{log.read_text()}")
            return (home / "admin.json").exists() and bool(peer.status()["peer_id"])

        wait_for(answers, 30, f"the daemon of {home} to answer")

    def follow(self, command: str, where: str) -> None:
        # SIGINT as a terminal has it: a suite started in the background (`make test &`) hands its
        # children SIGINT ignored, and the Ctrl-C below would then be lost.
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            time.sleep(FOLLOW_FOR)
            early = proc.poll()
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            out, err = proc.communicate(timeout=10)
        finally:
            stop_group(proc)
        text = out.decode(errors="replace")
        assert early is None and "job.done" in text, (
            f"{where}it should keep following and show the job's end; exit code {early}\n--- stdout\n{text}"
            f"\n--- stderr\n{err.decode(errors='replace')}{self.logs()}")

    def logs(self) -> str:
        return "".join(f"\n--- daemon log {log.name}\n{log.read_text()}" for _, log in self.daemons)

    def close(self) -> None:
        for proc, _ in self.daemons:
            stop_group(proc)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    r = Reader(tmp_path)
    try:
        yield r
    finally:
        r.close()


def test_the_block_rule() -> None:
    """The rule picks what the module docstring says, and a README that loses them fails here."""
    got = [b for b in blocks((ROOT / "README.md").read_text()) if runnable(b)]
    text = "\n".join(c for b in got for c in b.commands)
    assert len(got) >= 4, got
    for expected in ("peerbackup up   --home /tmp/a", "repo backup --repo office:accounts", "backup accounts --wait",
                     "repo init      --repo /mnt/usb/backup"):
        assert expected in text, f"no run block has {expected!r}"
    assert "peerbackup remove-peer beta" not in text  # several machines' commands are not run
    assert not any(c.startswith("make ") for b in got for c in b.commands)
    assert strip_comment("a '#x' b  # c") == "a '#x' b"
    assert PATHS.sub("/T/", "--home /tmp/a ~/tmp/x /var/tmp/y /srv/z") == "--home /T/a ~/tmp/x /var/tmp/y /T/z"


def test_readme_straight_through(reader: Reader) -> None:
    assert shutil.which("peerbackup", path=reader.env["PATH"]) == str(BIN / "peerbackup"), "not the .venv's"
    for block in [b for b in blocks((ROOT / "README.md").read_text()) if runnable(b)]:
        for written in block.commands:
            reader.run(block, written)
