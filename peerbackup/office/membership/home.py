"""A peer's home: its identity, its office, its state and its lock.

Layout (all files 0600, the directory 0700):
    identity.key      Ed25519 seed of this peer
    office            office name and public key
    certificate       this peer's certificate, signed by the office key
    office.key        the office key's seed: admins only
    state.db          SQLite: members, revocations, addresses, nonces, invites, election
    events.db         SQLite: the replicated logs (events, fork proofs, HLC)
    held/             files this peer stores for backup nodes (ciphertext only)
    admin.token       secret the local admin API wants in X-Peerbackup-Token
    admin.json        where the running daemon's admin API listens
    lock              flock'ed by whoever runs on this home
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from peerbackup.core import codec
from peerbackup.core.certs import Certificate, Office
from peerbackup.core.identity import SigningKey
from peerbackup.errors import FormatError, HomeError, HomeLocked, NotInitialised

IDENTITY, OFFICE, CERTIFICATE, OFFICE_KEY = "identity.key", "office", "certificate", "office.key"
STATE_DB, ADMIN_TOKEN, ADMIN_ENDPOINT, LOCK = "state.db", "admin.token", "admin.json", "lock"
EVENTS_DB = "events.db"
HELD = "held"  # what this peer stores for the office's backup nodes
CACHE = "cache"  # the engine's index and file caches of the node repositories this peer backs up
TOKEN_HEADER = "X-Peerbackup-Token"  # the admin API's token travels in this header, never in a cookie


def default_home() -> Path:
    """The platform's per-user data directory, as a user of Syncthing or restic would expect."""
    env = os.environ.get("PEERBACKUP_HOME")
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "peerbackup"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", str(Path.home() / "AppData" / "Local"))) / "peerbackup"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "peerbackup"


def write_private(path: Path, data: bytes) -> None:
    """temp -> fsync -> rename -> fsync dir, created 0600 so no other user ever reads a secret."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def rewrite_private(path: Path, data: bytes) -> None:
    """write_private, or, when the disk has no room for a new file, over the old one's bytes in place.

    For small files a daemon rewrites at every start (its admin token and address): a peer killed while its
    disk was full must still start and serve its peers. In place is not atomic, so it is only the fallback."""
    try:
        write_private(path, data)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise exc from None
        try:
            if os.fstat(fd).st_size < len(data):
                raise exc from None  # growing it needs room too
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Identity:
    key: SigningKey
    office: Office
    certificate: Certificate
    office_key: SigningKey | None  # only on admins

    @property
    def peer_id(self) -> str:
        return self.key.peer_id


class Home:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()

    def file(self, name: str) -> Path:
        return self.path / name

    def create_dir(self) -> None:
        """The home holds this peer's secret key and the invite secrets: a directory of this user's own,
        0700. One that exists already (made by a plain `mkdir`, or by an older version) is tightened; one
        that belongs to another user, or a shared directory such as /tmp, is refused: whoever may rename
        files in it could replace the secrets."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.stat(self.path)
        if st.st_uid != os.geteuid():
            raise HomeError(f"the home {self.path} belongs to user id {st.st_uid}, not to this user "
                            f"({os.geteuid()}): give peerbackup a directory of your own (--home)")
        if st.st_mode & stat.S_ISVTX:
            raise HomeError(f"{self.path} is a shared directory (sticky bit): give peerbackup a directory "
                            "of its own inside it (--home)")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.path, 0o700)

    def initialised(self) -> bool:
        return self.file(CERTIFICATE).exists()

    def load(self) -> Identity:
        if not self.initialised():
            raise NotInitialised(self.path)
        try:
            key = SigningKey(codec.field(codec.unpack_map(self.file(IDENTITY).read_bytes(), "identity"),
                                         "seed", bytes, "identity"))
            office = Office.from_wire(codec.unpack_map(self.file(OFFICE).read_bytes(), "office"))
            cert = Certificate.from_bytes(self.file(CERTIFICATE).read_bytes(), office.public_key)
            office_key = None
            if self.file(OFFICE_KEY).exists():
                office_key = SigningKey(codec.field(codec.unpack_map(self.file(OFFICE_KEY).read_bytes(), "office key"),
                                                    "seed", bytes, "office key"))
        except OSError as exc:
            raise HomeError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except FormatError as exc:
            raise HomeError(f"the home {self.path} is damaged: {exc}") from None
        if cert.public_key != key.public_key:
            raise HomeError(f"the home {self.path} is damaged: the certificate is not for this peer's key")
        if office_key is not None and office_key.public_key != office.public_key:
            raise HomeError(f"the home {self.path} is damaged: office.key is not the office's key")
        return Identity(key=key, office=office, certificate=cert, office_key=office_key)

    def save(self, ident: Identity) -> None:
        """Write a new identity; the certificate last, since its presence means "initialised"."""
        self.create_dir()
        write_private(self.file(IDENTITY), codec.pack({"v": 1, "seed": ident.key.seed}))
        write_private(self.file(OFFICE), codec.pack(ident.office.to_wire()))
        if ident.office_key is not None:
            write_private(self.file(OFFICE_KEY), codec.pack({"v": 1, "seed": ident.office_key.seed}))
        write_private(self.file(CERTIFICATE), ident.certificate.raw)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's flock: the daemon for its life, init/join/recover while they write."""
        self.create_dir()
        fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise HomeLocked(self.path, other) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the flock

    def admin_endpoint(self) -> tuple[str, str]:
        """(base URL, token) of the running daemon's admin API, as the CLI finds them."""
        try:
            info = json.loads(self.file(ADMIN_ENDPOINT).read_text())
            token = self.file(ADMIN_TOKEN).read_text().strip()
            return str(info["url"]), token
        except (OSError, ValueError, KeyError, TypeError):
            from peerbackup.errors import DaemonNotRunning
            raise DaemonNotRunning(self.path) from None
