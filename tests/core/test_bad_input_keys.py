"""Hostile and damaged key files and key sets (core/keys.py), and chunker parameters a repository's
configuration may hold: each fails with one of our own errors.

Like every test_bad_input_*.py module: nothing read back may crash with a library's own exception.
"""

from __future__ import annotations

from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.core.chunker import ChunkerParams, KiB, MiB
from peerbackup.core.crypto import KdfParams
from peerbackup.core.keys import KeyFile, KeySet
from peerbackup.errors import (
    FormatError,
    UnsupportedVersion,
    WrongPassword,
)
from tests.core._bad_input import KEYS, PASSWORD, flip, rand_from


@pytest.fixture(scope="module")
def keyfile_bytes() -> bytes:
    kf = KeyFile.create(KEYS, PASSWORD, KdfParams.weak(), rand_from(5), 0, "host", "user")
    return kf.to_bytes()


def test_keyfile_wrong_passphrase(keyfile_bytes: bytes) -> None:
    kf = KeyFile.from_bytes(keyfile_bytes)
    assert kf.open(PASSWORD) == KEYS
    for wrong in (b"", b"correct horse battery stapl", PASSWORD + b" "):
        with pytest.raises(WrongPassword):
            kf.open(wrong)


def test_keyfile_tampered_seal_or_nonce(keyfile_bytes: bytes) -> None:
    # A damaged key file cannot be told from a wrong passphrase: both fail to unseal.
    obj = codec.unpack(keyfile_bytes)
    for field in ("sealed", "nonce"):
        bad = dict(obj, **{field: flip(obj[field], 0, 1)})
        with pytest.raises(WrongPassword):
            KeyFile.from_bytes(codec.pack(bad)).open(PASSWORD)


def test_keyfile_newer_version(keyfile_bytes: bytes) -> None:
    obj = codec.unpack(keyfile_bytes)
    with pytest.raises(UnsupportedVersion) as info:
        KeyFile.from_bytes(codec.pack({**obj, "v": 2}))
    assert info.value.args == ("key file", 2, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"kdf": {"alg": "scrypt", "ops": 1, "mem": 8192}},
        {"kdf": {"alg": "argon2id", "ops": "1", "mem": 8192}},
        {"kdf": {"alg": "argon2id", "mem": 8192}},
        {"kdf": "argon2id"},
        {"salt": "salt"},
        {"nonce": None},
        {"sealed": []},
        {"host": 1},
        {"created": "now"},
        {"v": "1"},
    ],
)
def test_keyfile_rejects_bad_fields(keyfile_bytes: bytes, changes: dict[str, Any]) -> None:
    obj = codec.unpack(keyfile_bytes)
    with pytest.raises(FormatError):
        KeyFile.from_bytes(codec.pack({**obj, **changes}))


@pytest.mark.parametrize(
    "changes",
    [{"salt": b"short"}, {"kdf": {"alg": "argon2id", "ops": 0, "mem": 8192}}],
    ids=["short-salt", "zero-opslimit"],
)
def test_keyfile_bad_kdf_input_is_our_error(keyfile_bytes: bytes, changes: dict[str, Any]) -> None:
    obj = codec.unpack(keyfile_bytes)
    with pytest.raises((FormatError, WrongPassword)):
        KeyFile.from_bytes(codec.pack({**obj, **changes})).open(PASSWORD)


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [],
        {"data_keys": {0: b"k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 32}},
        {"id_key": b"i" * 31, "data_keys": {0: b"k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 31}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {"0": b"k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: "k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 32}, "epoch": 1},
        {"id_key": b"i" * 32, "data_keys": {}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": [b"k" * 32], "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 32}, "epoch": False},
    ],
)
def test_keyset_from_wire_rejects(wire: Any) -> None:
    with pytest.raises(FormatError):
        KeySet.from_wire(wire)


# ---- chunker parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        ChunkerParams(min_size=32, avg_size=1 * KiB, max_size=2 * KiB),  # min below 64
        ChunkerParams(min_size=8 * KiB, avg_size=4 * KiB, max_size=16 * KiB),  # min > avg
        ChunkerParams(min_size=1 * KiB, avg_size=8 * KiB, max_size=4 * KiB),  # avg > max
        ChunkerParams(min_size=2 * MiB, avg_size=3 * MiB, max_size=8 * MiB),
        ChunkerParams(min_size=1 * MiB, avg_size=5 * MiB, max_size=8 * MiB),
        ChunkerParams(min_size=1 * MiB, avg_size=2 * MiB, max_size=17 * MiB),
    ],
)
def test_chunker_params_validate(params: ChunkerParams) -> None:
    with pytest.raises(FormatError):
        params.validate()
    ChunkerParams().validate()  # the defaults are fine
