"""The daemon's timings (core/settings.py): durations parsed, defaults, overrides, and the invariants
between the timings enforced.
"""

from __future__ import annotations

import pytest

from peerbackup.core.settings import Settings, parse_duration
from peerbackup.errors import UsageError
from tests.daemon.harness import FAST


@pytest.mark.parametrize(("text", "seconds"), [
    ("1.5", 1.5), ("0", 0.0), ("500ms", 0.5), ("30s", 30.0), ("15m", 900.0), ("1h", 3600.0), ("7d", 604800.0),
    (" 2 s ", 2.0), ("0.25s", 0.25), ("10", 10.0), ("1.5h", 5400.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1", "1x", "1.", ".5", "1e3", "abc", "1 2", "5 minutes", "1S", "ms"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration(text)


def test_settings_defaults_and_nonce_keep() -> None:
    s = Settings()
    assert 0 < s.heartbeat < s.suspect < s.dead
    assert s.nonce_keep == 2 * s.clock_skew


def test_with_overrides_applies_durations() -> None:
    s = Settings().with_overrides(["heartbeat=200ms", "suspect = 1s", "dead=2", "clock-skew=1m",
                                   "request_timeout=500ms"])
    assert (s.heartbeat, s.suspect, s.dead, s.clock_skew, s.request_timeout) == (0.2, 1.0, 2.0, 60.0, 0.5)
    assert s.lease == Settings().lease
    assert Settings().with_overrides([]) == Settings()
    assert Settings().with_overrides(["gc_grace=1d"]).gc_grace == 86400.0


@pytest.mark.parametrize("item", ["heartbeat", "nope=1s", "=1s", "heartbeat=fast", "heartbeat=-1", "nonce_keep=1"])
def test_with_overrides_refuses_bad_items(item: str) -> None:
    with pytest.raises(UsageError):
        Settings().with_overrides([item])


@pytest.mark.parametrize("kwargs", [
    {"heartbeat": 0.0}, {"heartbeat": 8.0}, {"heartbeat": 9.0}, {"suspect": 15.0}, {"suspect": 20.0},
    {"dead": 8.0}, {"dead": 1.0}, {"heartbeat": 1.0, "suspect": 3.0, "dead": 3.0},
    {"clock_skew": 0.0}, {"request_timeout": 0.0}, {"renew": 15.0}, {"renew": 0.0},
])
def test_settings_invariants_are_enforced(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Settings(**kwargs)


def test_with_overrides_checks_the_invariants() -> None:
    with pytest.raises(UsageError, match="heartbeat < suspect < dead"):
        Settings().with_overrides(["suspect=1h"])
    with pytest.raises(UsageError, match="heartbeat < suspect < dead"):
        Settings().with_overrides(["heartbeat=10s"])
    assert Settings(heartbeat=1, suspect=3, dead=6).dead == 6


def test_loaded_timings_leave_a_late_heartbeat_time_to_arrive() -> None:
    """Issue 16, cause 5: a heartbeat answered late (request_timeout) is followed by the next one a heartbeat
    later; suspect must be longer than both, or a slow answer makes a peer suspect. The defaults were 2 + 5 > 6."""
    d = Settings()
    assert d.heartbeat + d.request_timeout < d.suspect
    for items in (["suspect=6s"], ["request_timeout=7s"], ["heartbeat=250ms", "suspect=1s", "request_timeout=1s"]):
        with pytest.raises(UsageError, match=r"heartbeat \+ request_timeout < suspect"):
            Settings().with_overrides(items)
    harness = Settings().with_overrides([f"{k}={v}" for k, v in FAST.items()])  # the daemon tests' timings
    assert harness.heartbeat + harness.request_timeout < harness.suspect
