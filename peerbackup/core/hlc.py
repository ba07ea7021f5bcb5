"""Hybrid logical clock: wall-clock milliseconds with a counter, packed in one int.

An HLC time never goes backwards, and a received time moves ours forward, so
events are ordered consistently with what each writer had seen. A remote time
further ahead of our wall clock than the accepted skew is refused: a peer with
a clock far in the future must not drag everyone's clock with it.
"""

from __future__ import annotations

from peerbackup.errors import FormatError

_COUNTER_BITS = 16
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1


def pack(wall_ms: int, counter: int) -> int:
    return (wall_ms << _COUNTER_BITS) | counter


def wall_ms(t: int) -> int:
    return t >> _COUNTER_BITS


def counter(t: int) -> int:
    return t & _COUNTER_MAX


def tick(last: int, now_ms: int) -> int:
    """The time of a local event: after `last` and no earlier than the wall clock."""
    if now_ms > wall_ms(last):
        return pack(now_ms, 0)
    if counter(last) == _COUNTER_MAX:
        return pack(wall_ms(last) + 1, 0)
    return last + 1


def receive(last: int, remote: int, now_ms: int, max_ahead_ms: int) -> int:
    """Our time after seeing a remote time; FormatError when the remote is too far ahead."""
    if wall_ms(remote) > now_ms + max_ahead_ms:
        raise FormatError("event", f"its clock is {(wall_ms(remote) - now_ms) / 1000:.0f} s ahead of ours "
                                   f"(at most {max_ahead_ms / 1000:.0f} s is accepted)")
    return tick(max(last, remote), now_ms)
