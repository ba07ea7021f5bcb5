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


class QuotaExceeded(StoreError):
    """Storage quota reached: {} bytes do not fit in the {} bytes left; the writer picks another holder."""


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


class RetentionRefused(PeerBackupError):
    """Refusing to forget: the policy would remove {1} of the group {0}; nothing was forgotten."""


class PartialBackup(PeerBackupError):
    """Snapshot {} saved, but {} file(s) could not be read or changed while being read."""

    exit_code = 3


# ---- office, peers and the daemon ------------------------------------------------


class HomeError(PeerBackupError):
    """{}"""


class NotInitialised(HomeError):
    """{} holds no peer identity yet: run `peerbackup init --office NAME` on the office's first machine,
or `peerbackup join TOKEN` with an invite from an admin."""


class AlreadyInitialised(HomeError):
    """{} already belongs to office {!r} as peer {}; refusing to initialise it again."""


class HomeLocked(HomeError):
    """{} is in use by another peerbackup process (pid {}); two daemons never share a home."""


class DaemonNotRunning(HomeError):
    """No daemon is running for home {}: start it with `peerbackup up`."""


class DuplicatePeer(HomeError):
    """Another daemon already announces {} on this network: is a copy of this home running elsewhere?
Each machine needs its own home: `peerbackup join` with an invite gives it one."""


class DaemonError(PeerBackupError):
    """The daemon refused: {}"""


class StartError(HomeError):
    """Cannot start the daemon: {}"""


class HomeFull(HomeError):
    """The disk holding {} is full: SQLite cannot open the database there (it needs room for its write-ahead
log). Free some room on that disk and start again; nothing was changed."""


class WrongKitPassphrase(PeerBackupError):
    """Wrong passphrase for this recovery kit."""


class BadToken(UsageError):
    """{}"""


class NotAdmin(PeerBackupError):
    """This peer does not hold the office key: run this on an admin peer."""


class InviteError(PeerBackupError):
    """Joining failed: {}"""


class ProtocolError(PeerBackupError):
    """Peer protocol error: {}

    Subclasses are the refusals a peer sends back: `status` is the HTTP status,
    `code` the stable machine-readable reason in the refusal message, `evidence`
    signed bytes the refused peer can check for itself (see RevokedPeer).
    """

    status = 400
    code = "error"
    evidence = b""

    def message(self) -> str:
        template = (type(self).__doc__ or "{}").strip().split("\n\n")[0]
        try:
            return template.format(*self.args)
        except (IndexError, KeyError):
            return template


class Malformed(ProtocolError):
    """Malformed request: {}"""

    code = "malformed"


class UnsupportedProtocol(ProtocolError):
    """Unsupported protocol version {}: this peer speaks version {}"""

    code = "version"


class TooLarge(ProtocolError):
    """Request body of {} bytes is over the limit of {} bytes"""

    status = 413
    code = "too-large"


class BadSignature(ProtocolError):
    """Bad signature: {}"""

    status = 401
    code = "bad-signature"


class ClockSkew(ProtocolError):
    """Timestamp {:.0f} s away from this peer's clock; at most {:.0f} s is accepted (check the clocks)"""

    status = 401
    code = "clock-skew"


class Replay(ProtocolError):
    """Nonce seen before: replayed request refused"""

    status = 409
    code = "replay"


class WrongAudience(ProtocolError):
    """Request addressed to {}, but this is {}"""

    status = 403
    code = "wrong-audience"


class UnknownPeer(ProtocolError):
    """Unknown peer {}: not a certified member of this office (send a hello first)"""

    status = 401
    code = "unknown-peer"


class ForeignOffice(ProtocolError):
    """Peer belongs to another office ({})"""

    status = 403
    code = "foreign-office"


class RevokedPeer(ProtocolError):
    """Peer {} has been removed from the office"""

    status = 403
    code = "revoked"

    def __init__(self, peer_id: str, evidence: bytes = b"") -> None:
        super().__init__(peer_id)
        self.evidence = evidence  # the office-signed revocation, sent with the refusal


class Forbidden(ProtocolError):
    """Forbidden: {}"""

    status = 403
    code = "forbidden"


class Superseded(Forbidden):
    """Superseded: {}"""

    # Not routed around: another holder that has not heard of the newer attempt yet would take the write.
    code = "superseded"


class NotFound(ProtocolError):
    """No such endpoint: {}"""

    status = 404
    code = "not-found"


class StoreRefused(ProtocolError):
    """Storage refused: {}"""

    status = 403
    code = "store-refused"


class DiskFull(ProtocolError):
    """This peer's disk is full ({}): it refuses writes until it has room again, and goes on serving reads"""

    status = 507
    code = "disk-full"


class FileExists(ProtocolError):
    """Stored already, with other bytes, and stored files are immutable: {}"""

    status = 409
    code = "exists"


class NoSuchFile(ProtocolError):
    """No such file here: {}"""

    status = 404
    code = "no-such-file"


class PeerUnreachable(PeerBackupError):
    """Cannot reach peer at {}: {}"""


class NotAHolder(PeerBackupError):
    """This peer does not hold the keys of backup node {}: only its admins and granted agents do ({})."""


class LogError(PeerBackupError):
    """Cannot append {} to the {} log: {}"""


class PeerRefused(PeerBackupError):
    """Peer at {} refused: {} ({})"""

    evidence = b""  # what the refusal carried for us to check (net/proto/refusal.py); never trusted as is

    @property
    def code(self) -> str:
        return str(self.args[2]) if len(self.args) > 2 else ""
