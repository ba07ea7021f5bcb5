"""What a backup reports: its progress as it goes, the files it left out and why, and its result.

The reasons are the engine's words for OS errors (`reason_of`); the office's jobs quote them.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Protocol

from peerbackup.core.snapshot import Snapshot


class BackupProgress(Protocol):
    def scanned(self, path: str, size: int) -> None: ...
    def processed(self, nbytes: int) -> None: ...
    def file_done(self, path: str, size: int) -> None: ...
    def error(self, path: str, message: str) -> None: ...


class NoProgress:
    def scanned(self, path: str, size: int) -> None:
        pass

    def processed(self, nbytes: int) -> None:
        pass

    def file_done(self, path: str, size: int) -> None:
        pass

    def error(self, path: str, message: str) -> None:
        pass



# Why a file is not (wholly) in a snapshot: the reasons a backup's result names, in the engine's words.
NOT_FOUND, DENIED, CHANGED, IO_ERROR = "not found", "permission denied", "changed while read", "I/O error"
REASONS = (NOT_FOUND, DENIED, CHANGED, IO_ERROR)
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def reason_of(exc: OSError) -> str:
    """The reason an OS error gives for a file left out: gone between listing and reading, refused,
    or anything else the file system said (EIO, ELOOP, ENXIO, a stale handle...)."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError) or exc.errno in _NOT_FOUND_ERRNOS:
        return NOT_FOUND
    if isinstance(exc, PermissionError) or exc.errno in _DENIED_ERRNOS:
        return DENIED
    return IO_ERROR


@dataclass(frozen=True)
class FileFailure:
    """A file, directory or source the snapshot lacks or holds only in part, and why."""

    path: str
    reason: str  # one of REASONS
    message: str  # what the OS or the engine said

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class BackupResult:
    snapshot: Snapshot
    errors: list[str]  # every problem, as text: the failures below and repository warnings
    failures: list[FileFailure] = field(default_factory=list)
