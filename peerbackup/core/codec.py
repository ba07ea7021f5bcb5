"""The only module that touches msgpack.

Peer and repository input is untrusted, so decoding caps every container size
and turns every msgpack failure into one FormatError.
"""

from __future__ import annotations

from typing import Any

import msgpack

from peerbackup.errors import FormatError

# A tree of 100k entries or an index of 100k blobs stays well under these caps.
_MAX_LEN = 64 * 1024 * 1024


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes | bytearray | memoryview, what: str = "object") -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            max_bin_len=_MAX_LEN,
            max_str_len=_MAX_LEN,
            max_array_len=_MAX_LEN,
            max_map_len=_MAX_LEN,
        )
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise FormatError(what, f"not valid msgpack ({exc})") from exc


def unpack_map(data: bytes | bytearray | memoryview, what: str) -> dict[Any, Any]:
    obj = unpack(data, what)
    if not isinstance(obj, dict):
        raise FormatError(what, "expected a map")
    return obj


def field(obj: dict[Any, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """Fetch a required, typed field from a decoded map, or raise FormatError."""
    try:
        value = obj[key]
    except KeyError:
        raise FormatError(what, f"missing field {key!r}") from None
    if isinstance(value, bool) and kind in (int, (int,)):
        raise FormatError(what, f"field {key!r} has type bool, expected int")
    if not isinstance(value, kind):
        raise FormatError(what, f"field {key!r} has type {type(value).__name__}")
    return value
