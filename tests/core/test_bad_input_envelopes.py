"""Hostile and damaged envelopes (core/objects.py, core/compress.py): every tampering fails with one of our
own errors.

Repository files come from disks and, later, from peers: nothing read back may
crash with a stray KeyError, struct.error or library exception. Integrity damage
is DecryptError or FormatError; a file from a newer program is UnsupportedVersion.
"""

from __future__ import annotations

import random

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from peerbackup.core import compress
from peerbackup.core.crypto import keyed_id
from peerbackup.core.objects import HEADER_SIZE, OVERHEAD, Kind, open_object
from peerbackup.errors import (
    DecryptError,
    FormatError,
    UnsupportedVersion,
)
from tests.core._bad_input import FUZZ, KEYS, OTHER_KEYS, crafted_envelope, envelope, flip, rand_from


@pytest.mark.parametrize("data", [b"x" * 100, random.Random(3).randbytes(100)],
                         ids=["compressed", "raw"])
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_byte_is_detected(data: bytes, mask: int) -> None:
    env = envelope(data=data)
    assert open_object(KEYS, Kind.DATA, env, b"ctx", "blob") == data
    for pos in range(len(env)):
        bad = flip(env, pos, mask)
        with pytest.raises((DecryptError, FormatError, UnsupportedVersion)) as info:
            open_object(KEYS, Kind.DATA, bad, b"ctx", "blob")
        err = info.value
        # Which error is raised is fixed by the byte that was hit.
        if pos == 0:
            # The version is read before anything can be authenticated (a newer format may
            # lay out the rest differently), so a higher version reads as "upgrade".
            assert isinstance(err, UnsupportedVersion if bad[0] > 1 else DecryptError)
        elif pos == 1:
            assert isinstance(err, FormatError) and "kind" in str(err)
        elif pos == 2:
            assert isinstance(err, DecryptError)  # compression byte: authenticated header
        elif pos < HEADER_SIZE:
            assert isinstance(err, FormatError) and "epoch" in str(err)
        else:
            assert isinstance(err, DecryptError)  # nonce, ciphertext or tag


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=5))
def test_random_tampering_only_raises_our_errors(flips: list[tuple[int, int]]) -> None:
    env = envelope()
    bad = bytearray(env)
    for pos, mask in flips:
        bad[pos % len(env)] ^= mask
    if bytes(bad) == env:
        return  # two flips cancelled out
    with pytest.raises((DecryptError, FormatError, UnsupportedVersion)) as info:
        open_object(KEYS, Kind.DATA, bytes(bad), b"ctx", "blob")
    if isinstance(info.value, UnsupportedVersion):
        assert bad[0] > 1


@pytest.mark.parametrize("sealed_as", list(Kind))
@pytest.mark.parametrize("opened_as", list(Kind))
def test_wrong_kind_is_format_error(sealed_as: Kind, opened_as: Kind) -> None:
    env = envelope(kind=sealed_as)
    if sealed_as == opened_as:
        assert open_object(KEYS, opened_as, env, b"ctx", "o") == b"x" * 100
    else:
        with pytest.raises(FormatError, match="expected a"):
            open_object(KEYS, opened_as, env, b"ctx", "o")


def test_wrong_context_is_decrypt_error() -> None:
    # A blob is bound to its id: a pack entry pointing at another blob's bytes is caught.
    id_a = keyed_id(KEYS.id_key, b"a")
    id_b = keyed_id(KEYS.id_key, b"b")
    env = envelope(data=b"a", ctx=id_a)
    assert open_object(KEYS, Kind.DATA, env, id_a, "blob") == b"a"
    for ctx in (id_b, b"", id_a[:-1], id_a + b"\x00"):
        with pytest.raises(DecryptError):
            open_object(KEYS, Kind.DATA, env, ctx, "blob")


def test_unknown_epoch_is_format_error() -> None:
    rotated = KEYS.rotated(rand_from(1))
    env = envelope(keys=rotated)  # sealed under epoch 1
    assert env[3:7] == b"\x00\x00\x00\x01"
    with pytest.raises(FormatError, match="epoch 1"):
        open_object(KEYS, Kind.DATA, env, b"ctx", "o")  # KEYS only knows epoch 0


def test_wrong_key_is_decrypt_error() -> None:
    with pytest.raises(DecryptError):
        open_object(OTHER_KEYS, Kind.DATA, envelope(), b"ctx", "o")


def test_truncated_or_extended_envelope() -> None:
    env = envelope()
    for n in range(len(env)):
        exc = FormatError if n < OVERHEAD else DecryptError
        with pytest.raises(exc):
            open_object(KEYS, Kind.DATA, env[:n], b"ctx", "o")
    with pytest.raises(DecryptError):
        open_object(KEYS, Kind.DATA, env + b"\x00", b"ctx", "o")


@pytest.mark.parametrize("version", [2, 3, 255])
def test_newer_envelope_version(version: int) -> None:
    # Checked first: a newer envelope is reported as such even with an unknown epoch and
    # a body this version cannot authenticate.
    env = crafted_envelope(version=version, epoch=99)
    with pytest.raises(UnsupportedVersion) as info:
        open_object(KEYS, Kind.DATA, env, b"ctx", "blob")
    assert info.value.args == ("blob", version, 1)


def test_authenticated_unknown_compression_is_format_error() -> None:
    env = crafted_envelope(method=7)
    with pytest.raises(FormatError, match="compression method 7"):
        open_object(KEYS, Kind.DATA, env, b"ctx", "o")


def test_authenticated_corrupt_zstd_is_format_error() -> None:
    frame = zstandard.ZstdCompressor().compress(b"abc" * 100)
    for payload in (b"not zstd at all", frame[:-4], b""):
        env = crafted_envelope(method=compress.ZSTD, payload=payload)
        with pytest.raises(FormatError, match="zstd"):
            open_object(KEYS, Kind.DATA, env, b"ctx", "o")


def test_decompress_unknown_method() -> None:
    with pytest.raises(FormatError):
        compress.decompress(2, b"abc", 3, "c")


def test_decompress_rejects_output_longer_than_raw_length() -> None:
    method, payload = compress.compress(b"a" * 1000)
    assert method == compress.ZSTD
    with pytest.raises(FormatError):
        compress.decompress(method, payload, 10, "c")
