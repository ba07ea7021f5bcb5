"""What opens a repository before it is a `Repository`: its config file and its key files.

Key files are listed, unlocked by a passphrase and added; `current_user` also names a snapshot's user.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Iterator

from peerbackup.core.crypto import KdfParams, Random, content_hash
from peerbackup.core.keys import KeyFile, KeySet
from peerbackup.engine.config import RepoConfig
from peerbackup.errors import FormatError, NoSuchObject, NotARepository, WrongPassword
from peerbackup.storage.store import FileType, Store


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def read_config(store: Store) -> RepoConfig:
    try:
        data = store.get(FileType.CONFIG, "config")
    except NoSuchObject:
        raise NotARepository(store.location) from None
    return RepoConfig.from_bytes(data)


def key_files(store: Store) -> Iterator[tuple[str, KeyFile]]:
    for name, _ in store.list(FileType.KEY):
        try:
            yield name, KeyFile.from_bytes(store.get(FileType.KEY, name))
        except FormatError:
            continue


def unlock(store: Store, passphrase: bytes) -> tuple[KeySet, str]:
    """The key set and the name of the key file that the passphrase opens."""
    for name, kf in key_files(store):
        try:
            return kf.open(passphrase), name
        except WrongPassword:
            continue
    raise WrongPassword()


def add_key(
    store: Store, keys: KeySet, passphrase: bytes, *, kdf: KdfParams | None = None,
    rand: Random = os.urandom, now: Callable[[], float] = time.time,
) -> str:
    kf = KeyFile.create(
        keys, passphrase, kdf or KdfParams(), rand, int(now()), socket.gethostname(), current_user()
    )
    data = kf.to_bytes()
    name = content_hash(data).hex()
    store.put(FileType.KEY, name, data)
    return name
