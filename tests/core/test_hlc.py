"""The hybrid logical clock (core/hlc.py): packing, ticking with the wall clock, receiving a remote time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import hlc as hlcmod
from peerbackup.errors import FormatError
from tests.core._logstate import AHEAD_MS, NOW_MS


def test_hlc_pack_round_trip() -> None:
    t = hlcmod.pack(NOW_MS, 7)
    assert (hlcmod.wall_ms(t), hlcmod.counter(t)) == (NOW_MS, 7)
    assert hlcmod.pack(NOW_MS, 0) > hlcmod.pack(NOW_MS - 1, 65535)


def test_hlc_tick_follows_the_wall_clock_and_never_goes_back() -> None:
    assert hlcmod.tick(0, NOW_MS) == hlcmod.pack(NOW_MS, 0)
    last = hlcmod.pack(NOW_MS, 3)
    assert hlcmod.tick(last, NOW_MS + 1) == hlcmod.pack(NOW_MS + 1, 0)
    assert hlcmod.tick(last, NOW_MS) == hlcmod.pack(NOW_MS, 4)  # same millisecond: the counter moves
    assert hlcmod.tick(last, NOW_MS - 5000) == hlcmod.pack(NOW_MS, 4)  # the wall clock went back: still forward


def test_hlc_counter_overflow_moves_to_the_next_millisecond() -> None:
    full = hlcmod.pack(NOW_MS, 65535)
    assert hlcmod.tick(full, NOW_MS) == hlcmod.pack(NOW_MS + 1, 0)
    assert hlcmod.tick(full, NOW_MS - 10) == hlcmod.pack(NOW_MS + 1, 0)


def test_hlc_receive_moves_past_the_remote_time() -> None:
    mine = hlcmod.pack(NOW_MS, 0)
    remote = hlcmod.pack(NOW_MS + 50_000, 9)
    got = hlcmod.receive(mine, remote, NOW_MS, AHEAD_MS)
    assert got == hlcmod.pack(NOW_MS + 50_000, 10)
    # A remote time behind ours leaves the wall clock in charge.
    assert hlcmod.receive(mine, hlcmod.pack(NOW_MS - 9000, 0), NOW_MS + 1, AHEAD_MS) == hlcmod.pack(NOW_MS + 1, 0)
    # Exactly at the limit is accepted.
    assert hlcmod.receive(mine, hlcmod.pack(NOW_MS + AHEAD_MS, 0), NOW_MS, AHEAD_MS) > mine


def test_hlc_receive_refuses_a_remote_far_ahead() -> None:
    with pytest.raises(FormatError, match="ahead"):
        hlcmod.receive(0, hlcmod.pack(NOW_MS + AHEAD_MS + 1, 0), NOW_MS, AHEAD_MS)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(-3, 3), st.integers(0, 65535)), min_size=1, max_size=40))
def test_hlc_is_monotonic(steps: list[tuple[bool, int, int]]) -> None:
    last, wall = 0, NOW_MS
    for is_receive, delta, remote_counter in steps:
        wall += delta  # the wall clock may go back, too
        if is_receive:
            remote = hlcmod.pack(wall + delta * 100, remote_counter)
            t = hlcmod.receive(last, remote, wall, AHEAD_MS)
            assert t > remote
        else:
            t = hlcmod.tick(last, wall)
        assert t > last
        assert hlcmod.wall_ms(t) >= wall
        last = t
