"""Shared decoding helpers of the message families."""

from __future__ import annotations

from typing import Any

from peerbackup.core import codec
from peerbackup.core.identity import is_peer_id
from peerbackup.errors import FormatError, Malformed, UnsupportedProtocol

MESSAGE_VERSION = 1
MAX_ITEMS = 1024  # members, revocations or addresses in one message: an office is tens of machines
MAX_ADDRESS = 300


def encode(obj: dict[str, Any]) -> bytes:
    return codec.pack({"v": MESSAGE_VERSION, **obj})


def decode(data: bytes, what: str) -> dict[Any, Any]:
    try:
        obj = codec.unpack_map(data, what)
        version = codec.field(obj, "v", int, what)
    except FormatError as exc:
        raise Malformed(str(exc)) from None
    if version != MESSAGE_VERSION:
        raise UnsupportedProtocol(version, MESSAGE_VERSION)
    return obj


def get(obj: dict[Any, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    try:
        return codec.field(obj, key, kind, what)
    except FormatError as exc:
        raise Malformed(str(exc)) from None


def items(obj: dict[Any, Any], key: str, kind: type, what: str) -> list[Any]:
    values: list[Any] = get(obj, key, list, what)
    if len(values) > MAX_ITEMS or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise Malformed(f"{what}: field {key!r} must be a list of at most {MAX_ITEMS} {kind.__name__}")
    return values


def hints(obj: dict[Any, Any], key: str, what: str) -> list[tuple[str, tuple[str, ...]]]:
    """[(peer id, addresses)] of a message's "peers" list, every id checked."""
    out = []
    for item in items(obj, key, dict, what):
        peer_id = get(item, "id", str, what)
        if not is_peer_id(peer_id):
            raise Malformed(f"{what}: bad peer id in hints")
        out.append((peer_id, addresses(item, "addrs", what)))
    return out


def addresses(obj: dict[Any, Any], key: str, what: str) -> tuple[str, ...]:
    values = items(obj, key, str, what)
    for v in values:
        if len(v) > MAX_ADDRESS or not v.isprintable():
            raise Malformed(f"{what}: bad address")
    return tuple(values)


def small_bytes(obj: dict[Any, Any], key: str, what: str, limit: int = 4096, default: bytes | None = None) -> bytes:
    """A signed token or grant carried in a message: bytes of at most `limit`."""
    value: bytes = get(obj, key, bytes, what) if default is None else obj.get(key, default)
    if not isinstance(value, bytes) or len(value) > limit:
        raise Malformed(f"{what}: field {key!r} must be at most {limit} bytes")
    return value
