"""One exception hierarchy for the whole program.

As in borg, a class's docstring is its message template (formatted with the
constructor's arguments) and each class carries the exit code the command line
returns for it.
"""

from __future__ import annotations

from typing import Any


class PeerBackupError(Exception):
    """Error: {}"""

    exit_code = 1

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.args = args

    def message(self) -> str:
        template = (type(self).__doc__ or "{}").strip()
        try:
            return template.format(*self.args)
        except (IndexError, KeyError):
            return template + (": " + ", ".join(map(str, self.args)) if self.args else "")

    def __str__(self) -> str:
        return self.message()


class IntegrityError(PeerBackupError):
    """Data integrity error: {}"""


class DecryptError(IntegrityError):
    """Decryption failed for {}: the data was altered or the key is wrong."""


class FormatError(IntegrityError):
    """Malformed {}: {}"""


class UnsupportedVersion(PeerBackupError):
    """{} has format version {}, but this peerbackup understands at most version {}:
upgrade peerbackup to read it."""


class RepositoryError(PeerBackupError):
    """Repository error: {}"""


class NotARepository(RepositoryError):
    """{} is not a peerbackup repository (no config file). Create one with `peerbackup repo init`."""


class RepositoryExists(RepositoryError):
    """{} already holds a peerbackup repository; refusing to initialise it again."""


class WrongPassword(RepositoryError):
    """Wrong passphrase: no key of this repository opens with it."""


class NoSuchObject(RepositoryError):
    """{} {} does not exist in the repository."""


class AmbiguousId(RepositoryError):
    """Snapshot id prefix {} matches more than one snapshot; give more characters."""


class KeyInUse(RepositoryError):
    """{}"""


class StoreError(PeerBackupError):
    """Storage error: {}"""


class StoreFull(StoreError):
    """No space left on the repository's disk while writing {}.
The repository is still valid: free some space and run the command again."""


class ObjectExists(StoreError):
    """{} {} already exists and stored objects are immutable."""


class RestoreError(PeerBackupError):
    """Restore error: {}"""


class UnsafePath(RestoreError):
    """Refusing unsafe name {!r} in the snapshot: it would escape the restore target."""


class TargetNotEmpty(RestoreError):
    """Restore target {} is not empty; use --overwrite to restore into it anyway."""


class UsageError(PeerBackupError):
    """{}"""

    exit_code = 2


class PartialBackup(PeerBackupError):
    """Snapshot {} saved, but {} file(s) could not be read or changed while being read."""

    exit_code = 3
