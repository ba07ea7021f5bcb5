"""zstd compression that gives up where it does not pay.

Office data is half already-compressed media; storing those chunks raw saves
the decompression on restore and never grows them.
"""

from __future__ import annotations

import threading

import zstandard

from peerbackup.errors import FormatError

NONE = 0
ZSTD = 1

# Measured on the office set (docs/benchmark.md): level 3 matches restic's
# repository size; level 1 is 1.8x faster but 15 % larger on text.
DEFAULT_LEVEL = 3
# Below this saving the chunk is stored raw.
MIN_SAVING = 0.03

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # ZstdCompressor objects are not thread-safe: one per thread and level.
    cache = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def compress(data: bytes | memoryview, level: int = DEFAULT_LEVEL) -> tuple[int, bytes]:
    """Return (method, payload); method is NONE when compression saves too little."""
    if level <= 0 or len(data) < 64:
        return NONE, bytes(data)
    out: bytes = _compressor(level).compress(data)
    if len(out) > len(data) * (1 - MIN_SAVING):
        return NONE, bytes(data)
    return ZSTD, out


def decompress(method: int, payload: bytes, raw_length: int, what: str) -> bytes:
    if method == NONE:
        return payload
    if method != ZSTD:
        raise FormatError(what, f"unknown compression method {method}")
    try:
        out: bytes = _decompressor().decompress(payload, max_output_size=raw_length)
    except zstandard.ZstdError as exc:
        raise FormatError(what, f"corrupt zstd data ({exc})") from exc
    return out
