"""Schedules: cron with time zones and daylight saving, intervals, windows, catch-up, retries, job ids."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbackup.core.schedule import Schedule, due, job_id, next_slot, retry_at, slots_after
from peerbackup.errors import UsageError

PARIS = "Europe/Paris"


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = "UTC") -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp()


def nightly(**kw: object) -> Schedule:
    return Schedule(id="s1", node="accounts", cron="0 2 * * *", tz=PARIS, **kw).check()  # type: ignore[arg-type]


def test_cron_in_the_office_time_zone_across_daylight_saving() -> None:
    s = nightly()
    # 2026-03-29: clocks jump from 2:00 to 3:00 in Paris; the 2 a.m. run happens at 3:00 that day.
    got = slots_after(s, ts(2026, 3, 27, 12, tz=PARIS), ts(2026, 3, 31, 12, tz=PARIS))
    assert got == [ts(2026, 3, 28, 2, tz=PARIS), ts(2026, 3, 29, 3, tz=PARIS), ts(2026, 3, 30, 2, tz=PARIS),
                   ts(2026, 3, 31, 2, tz=PARIS)]
    assert got[0] == ts(2026, 3, 28, 1)  # UTC+1 in winter
    assert got[3] == ts(2026, 3, 31, 0)  # UTC+2 in summer


def test_interval_slots_are_the_same_on_every_peer() -> None:
    s = Schedule(id="q", node="n", every=30).check()
    assert slots_after(s, 1000.0, 1100.0) == [1020.0, 1050.0, 1080.0]
    assert slots_after(s, 1020.0, 1049.9) == []
    assert next_slot(s, 1020.0) == 1050.0


def test_the_current_slot_is_due_once() -> None:
    s = nightly()
    slot = ts(2026, 6, 1, 2, tz=PARIS)
    (d,) = due(s, slot - 3600, slot + 5)
    assert d.slot == slot and not d.caught_up and d.job_id == job_id("accounts", "s1", slot)
    assert due(s, slot + 5, slot + 10) == []  # evaluated already


def test_missed_slots_catch_up_the_latest_inside_its_window_only() -> None:
    s = nightly(window=4 * 3600)
    down_since = ts(2026, 6, 1, 0, tz=PARIS)
    # Nobody ran for three nights; at 4:30 on the fourth the latest slot (2:00) is in its window.
    now = ts(2026, 6, 4, 4, 30, tz=PARIS)
    (d,) = due(s, down_since, now)
    assert d.slot == ts(2026, 6, 4, 2, tz=PARIS) and d.caught_up
    assert due(s, down_since, ts(2026, 6, 4, 6, 30, tz=PARIS)) == []  # its window closed at 6:00
    assert due(nightly(catch_up=False), down_since, now) == []


def test_interval_down_for_hours_does_not_replay() -> None:
    s = Schedule(id="q", node="n", every=30, window=60).check()
    got = due(s, 0.0, 100_000.0)
    assert [d.slot for d in got] == [99_990.0]


def test_job_ids_differ_by_node_schedule_and_slot() -> None:
    ids = {job_id("a", "s", 1.0), job_id("b", "s", 1.0), job_id("a", "t", 1.0), job_id("a", "s", 2.0)}
    assert len(ids) == 4 and all(len(i) == 24 for i in ids)


def test_retries_back_off_inside_the_window() -> None:
    s = nightly(retries=3, retry_delay=600, window=3 * 3600)
    assert [retry_at(s, 0.0, n) for n in (1, 2, 3, 4)] == [600.0, 1800.0, 4200.0, None]
    tight = nightly(retries=3, retry_delay=600, window=1000)
    assert [retry_at(tight, 0.0, n) for n in (1, 2)] == [600.0, None]



def test_a_job_no_agent_started_is_tried_again_soon_while_retries_and_window_last() -> None:
    """Every dispatch refused or unreachable (nothing ran): a lease after, not the back-off's 10 minutes that
    outlive a short window (the soak lost a slot so when a partition healed as it came due)."""
    s = nightly(retries=2, retry_delay=600, window=60)
    assert retry_at(s, 0.0, 1) is None  # the back-off alone: past the window, the slot is lost
    assert retry_at(s, 0.0, 1, unstarted_at=2.0, soon=15.0) == 17.0
    assert retry_at(s, 0.0, 2, unstarted_at=20.0, soon=15.0) == 35.0
    assert retry_at(s, 0.0, 3, unstarted_at=40.0, soon=15.0) is None  # the retries are spent
    assert retry_at(s, 0.0, 1, unstarted_at=50.0, soon=15.0) is None  # past the window
    assert retry_at(nightly(retries=0, window=60), 0.0, 1, unstarted_at=2.0, soon=15.0) is None  # retries off
    long = nightly(retries=3, retry_delay=600, window=3 * 3600)
    assert retry_at(long, 0.0, 1, unstarted_at=700.0, soon=15.0) == 600.0  # never later than the back-off


@pytest.mark.parametrize(("kw", "message"), [
    ({"cron": "61 * * * *"}, "invalid cron"),
    ({"cron": "0 2 * *"}, "invalid cron"),
    ({"cron": "", "every": 0}, "either a cron expression or an interval"),
    ({"cron": "0 2 * * *", "every": 30}, "either"),
    ({"every": 0.5, "cron": ""}, "--every"),
    ({"tz": "Mars/Olympus"}, "unknown time zone"),
    ({"tz": "../../etc/passwd"}, "unknown time zone"),
    ({"window": 0}, "--window"),
    ({"retries": -1}, "--retries"),
])
def test_bad_schedules_are_refused_with_a_reason(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"id": "s", "node": "n", "cron": "0 2 * * *", **kw}
    with pytest.raises(UsageError, match=message):
        Schedule(**args).check()  # type: ignore[arg-type]


@given(st.integers(1, 86400), st.floats(0, 1e9), st.floats(0, 1e6))
def test_interval_slots_are_increasing_and_inside_the_range(every: int, after: float, span: float) -> None:
    s = Schedule(id="q", node="n", every=every)
    got = slots_after(s, after, after + span)
    assert got == sorted(got) and all(after < t <= after + span for t in got)
    assert all(b - a == every for a, b in itertools.pairwise(got))
