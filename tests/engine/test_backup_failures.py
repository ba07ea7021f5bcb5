"""A backup that cannot take every file says which ones and why, on real files.

The reasons (engine/backupreport.py): not found, permission denied, changed while read, I/O error. The
snapshot is saved without the file (or with what was read of it), and the result lists each one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from peerbackup.core.jobs import tally
from peerbackup.engine.backup import Archiver
from peerbackup.engine.backupreport import (
    CHANGED,
    DENIED,
    IO_ERROR,
    NOT_FOUND,
    FileFailure,
    NoProgress,
    reason_of,
)
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.walk import walk
from tests.helpers import unopenable


@pytest.mark.parametrize(("exc", "reason"), [
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), NOT_FOUND),
    (OSError(errno.ENOENT, "No such file or directory"), NOT_FOUND),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory"), NOT_FOUND),
    (PermissionError(errno.EACCES, "Permission denied"), DENIED),
    (OSError(errno.EPERM, "Operation not permitted"), DENIED),
    (OSError(errno.EIO, "Input/output error"), IO_ERROR),
    (OSError(errno.ELOOP, "Too many levels of symbolic links"), IO_ERROR),
    (OSError(errno.ESTALE, "Stale file handle"), IO_ERROR),
    (OSError("no errno at all"), IO_ERROR),
])
def test_each_os_error_has_one_reason(exc: OSError, reason: str) -> None:
    assert reason_of(exc) == reason


def test_tally_counts_reasons_most_first() -> None:
    assert tally([DENIED, NOT_FOUND, DENIED, IO_ERROR]) == "2 permission denied, 1 I/O error, 1 not found"
    assert tally([]) == ""


def _failures(repo: Repository, sources: list[str], progress: NoProgress | None = None) -> list[FileFailure]:
    result = Archiver(repo, progress=progress).backup(sources)
    assert [str(f) for f in result.failures] == result.errors  # every problem here is a file's
    assert result.snapshot.summary.errors == len(result.failures)
    return result.failures


def test_a_file_root_cannot_open_is_permission_denied_and_left_out(small_repo: Repository,
                                                                    tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("fine")
    with unopenable(src / "locked.db"):
        [f] = _failures(small_repo, [str(src)])
    assert (f.path, f.reason) == (str(src / "locked.db"), DENIED)
    assert "cannot open" in f.message


def test_a_missing_source_is_not_found(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    [f] = _failures(small_repo, [str(src), str(tmp_path / "gone")])
    assert (f.path, f.reason) == (str(tmp_path / "gone"), NOT_FOUND)


def test_a_path_through_a_symlink_loop_is_an_io_error(small_repo: Repository, tmp_path: Path) -> None:
    os.symlink("loop", tmp_path / "loop")  # stat through it: ELOOP, neither missing nor refused
    [f] = _failures(small_repo, [str(tmp_path / "loop" / "data")])
    assert (f.path, f.reason) == (str(tmp_path / "loop"), IO_ERROR)


class _GrowsWhenScanned(NoProgress):
    """Appends to a file between its stat and its read: what a program writing it meanwhile does."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def scanned(self, path: str, size: int) -> None:
        if path == str(self.victim):
            with open(self.victim, "ab") as f:
                f.write(b"more")


def test_a_file_that_grows_while_read_is_changed_while_read(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "growing.log").write_bytes(b"x" * 10_000)
    (src / "still.txt").write_text("still")
    [f] = _failures(small_repo, [str(src)], _GrowsWhenScanned(src / "growing.log"))
    assert (f.path, f.reason) == (str(src / "growing.log"), CHANGED)


def test_a_small_file_that_grows_past_one_chunk_before_a_worker_reads_it_is_kept_whole(
        small_repo: Repository, tmp_path: Path) -> None:
    # Small files are read by the workers, after the scan took their size: what they read is what
    # the snapshot holds, chunked as any file, and the file is reported changed.
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.log").write_bytes(b"x" * 1000)  # under SMALL_CHUNKS.min_size: a worker reads it

    class Grows(NoProgress):
        def scanned(self, path: str, size: int) -> None:
            if path == str(src / "small.log"):
                with open(path, "ab") as f:
                    f.write(os.urandom(100_000))

    result = Archiver(small_repo, progress=Grows()).backup([str(src)])
    [f] = result.failures
    assert (f.path, f.reason) == (str(src / "small.log"), CHANGED)
    expected = (src / "small.log").read_bytes()
    [node] = [n for p, n in walk(small_repo, result.snapshot.tree) if p.endswith("small.log")]
    assert node.size == len(expected) == 101_000 and len(node.content) > 1
    out = tmp_path / "out"
    Restorer(small_repo).restore(result.snapshot.tree, str(out))
    assert (out / str(src / "small.log").lstrip("/")).read_bytes() == expected
