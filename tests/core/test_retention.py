"""apply_policy: which snapshots a forget policy keeps, and why."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core.retention import (
    DEFAULT_GROUP_BY,
    GroupKey,
    GroupPlan,
    Policy,
    SnapInfo,
    apply_policy,
    group_key,
    parse_group_by,
    plan,
    removals,
)
from peerbackup.errors import RetentionRefused, UsageError

UTC = dt.UTC
CET = dt.timezone(dt.timedelta(hours=1))


def t(year: int, month: int, day: int, hour: int = 12, minute: int = 0,
      tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz)


Snaps = list[tuple[str, dt.datetime]]


def keep_of(snaps: Snaps, policy: Policy) -> list[str]:
    return apply_policy(snaps, policy)[0]


# ---- single rules ---------------------------------------------------------------------


def test_keep_last() -> None:
    snaps = [(f"s{i}", t(2024, 1, 1 + i)) for i in range(5)]
    keep, remove, reasons = apply_policy(snaps, Policy(last=3))
    # Both lists come newest first.
    assert keep == ["s4", "s3", "s2"]
    assert remove == ["s1", "s0"]
    assert reasons == {"s4": ["last"], "s3": ["last"], "s2": ["last"]}


def test_keep_last_more_than_exist() -> None:
    snaps = [("a", t(2024, 1, 1)), ("b", t(2024, 1, 2))]
    assert apply_policy(snaps, Policy(last=10)) == (["b", "a"], [], {"b": ["last"], "a": ["last"]})


def test_keep_hourly_newest_of_each_hour() -> None:
    snaps = [
        ("h10a", t(2024, 3, 1, 10, 5)), ("h10b", t(2024, 3, 1, 10, 55)),
        ("h11a", t(2024, 3, 1, 11, 0)), ("h11b", t(2024, 3, 1, 11, 59)),
        # No snapshot at 12:00: an hour without snapshots does not use up the count.
        ("h13", t(2024, 3, 1, 13, 30)),
    ]
    keep, remove, reasons = apply_policy(snaps, Policy(hourly=3))
    assert keep == ["h13", "h11b", "h10b"]
    assert remove == ["h11a", "h10a"]
    assert reasons == {"h13": ["hourly"], "h11b": ["hourly"], "h10b": ["hourly"]}


def test_keep_daily() -> None:
    snaps = [
        ("d1-morning", t(2024, 5, 1, 8)), ("d1-evening", t(2024, 5, 1, 20)),
        ("d2", t(2024, 5, 2, 9)),
        ("d4-a", t(2024, 5, 4, 0, 0)), ("d4-b", t(2024, 5, 4, 23, 59)),
    ]
    keep, remove, _ = apply_policy(snaps, Policy(daily=2))
    assert keep == ["d4-b", "d2"]
    assert remove == ["d4-a", "d1-evening", "d1-morning"]
    assert keep_of(snaps, Policy(daily=3)) == ["d4-b", "d2", "d1-evening"]


def test_keep_weekly_uses_iso_weeks_across_new_year() -> None:
    # 2020-12-31 (Thu) and 2021-01-03 (Sun) are both in ISO week 2020-W53;
    # 2021-01-04 (Mon) starts 2021-W01. Calendar years would split the first two.
    snaps = [
        ("thu", t(2020, 12, 31)), ("sun", t(2021, 1, 3)), ("mon", t(2021, 1, 4)),
        ("prev-week", t(2020, 12, 27)),  # Sunday of 2020-W52
    ]
    assert t(2020, 12, 31).isocalendar()[:2] == (2020, 53)
    assert keep_of(snaps, Policy(weekly=2)) == ["mon", "sun"]
    assert keep_of(snaps, Policy(weekly=3)) == ["mon", "sun", "prev-week"]


def test_keep_monthly() -> None:
    snaps = [
        ("jan-1", t(2024, 1, 1)), ("jan-31", t(2024, 1, 31)),
        ("feb-29", t(2024, 2, 29)),
        ("apr-1", t(2024, 4, 1)), ("apr-2", t(2024, 4, 2)),
    ]
    keep, remove, _ = apply_policy(snaps, Policy(monthly=2))
    assert keep == ["apr-2", "feb-29"]
    assert remove == ["apr-1", "jan-31", "jan-1"]


def test_keep_yearly() -> None:
    snaps = [
        ("2021", t(2021, 6, 1)), ("2022-a", t(2022, 1, 1)), ("2022-b", t(2022, 12, 31, 23)),
        ("2024", t(2024, 2, 1)),
    ]
    assert keep_of(snaps, Policy(yearly=2)) == ["2024", "2022-b"]
    assert keep_of(snaps, Policy(yearly=5)) == ["2024", "2022-b", "2021"]


# ---- combinations ---------------------------------------------------------------------


def test_combined_rules_union_and_all_reasons() -> None:
    snaps = [
        ("jan", t(2024, 1, 15)),
        ("feb-1", t(2024, 2, 1)),
        ("feb-27", t(2024, 2, 27)),
        ("feb-28-am", t(2024, 2, 28, 8)),
        ("feb-28-pm", t(2024, 2, 28, 18)),
    ]
    keep, remove, reasons = apply_policy(snaps, Policy(last=1, daily=2, monthly=3, yearly=1))
    assert keep == ["feb-28-pm", "feb-27", "jan"]
    assert remove == ["feb-28-am", "feb-1"]
    # The newest snapshot is kept by four rules and lists each of them, in rule order.
    assert reasons == {
        "feb-28-pm": ["last", "daily", "monthly", "yearly"],
        "feb-27": ["daily"],
        "jan": ["monthly"],
    }


def test_rules_count_independently() -> None:
    # keep-last 2 does not use up keep-daily: daily still counts from the newest day.
    snaps = [(f"d{i}", t(2024, 7, 1 + i)) for i in range(4)]
    keep, _, reasons = apply_policy(snaps, Policy(last=2, daily=3))
    assert keep == ["d3", "d2", "d1"]
    assert reasons == {"d3": ["last", "daily"], "d2": ["last", "daily"], "d1": ["daily"]}


def test_every_rule_at_once() -> None:
    snaps = [(f"s{i:03}", t(2020, 1, 1) + dt.timedelta(hours=7 * i)) for i in range(800)]
    policy = Policy(last=2, hourly=3, daily=4, weekly=3, monthly=6, yearly=3)
    keep, remove, reasons = apply_policy(snaps, policy)
    assert set(keep) | set(remove) == {sid for sid, _ in snaps}
    assert not set(keep) & set(remove)
    assert set(reasons) == set(keep)
    counts = {name: sum(name in r for r in reasons.values())
              for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly")}
    # 800 snapshots 7 h apart span 2020-01-01 .. 2020-08-21: one calendar year only.
    assert counts == {"last": 2, "hourly": 3, "daily": 4, "weekly": 3, "monthly": 6, "yearly": 1}


# ---- edge cases -----------------------------------------------------------------------


def test_empty_policy_keeps_nothing() -> None:
    snaps = [("a", t(2024, 1, 1)), ("b", t(2024, 1, 2))]
    assert Policy().empty()
    assert not Policy(yearly=1).empty()
    # apply_policy itself keeps nothing: refusing an empty policy is the caller's job.
    assert apply_policy(snaps, Policy()) == ([], ["b", "a"], {})


def test_no_snapshots() -> None:
    assert apply_policy([], Policy(last=3, daily=2)) == ([], [], {})


def test_ties_are_broken_by_id_whatever_the_input_order() -> None:
    same = t(2024, 1, 1, 12)
    snaps = [("b", same), ("a", same), ("c", same), ("z", t(2024, 1, 1, 11))]
    expected = apply_policy(snaps, Policy(last=1, daily=1))
    # Equal times: the greater id counts as the newer one.
    assert expected == (["c"], ["b", "a", "z"], {"c": ["last", "daily"]})
    rng = random.Random(0)
    for _ in range(10):
        shuffled = list(snaps)
        rng.shuffle(shuffled)
        assert apply_policy(shuffled, Policy(last=1, daily=1)) == expected


def test_buckets_follow_each_snapshots_own_time_zone() -> None:
    # 23:30 UTC on 1 March is 00:30 on 2 March in CET: the caller's local time decides
    # the day, so in CET these are two days and in UTC one.
    late_utc = t(2024, 3, 1, 23, 30)
    early_utc = t(2024, 3, 1, 22, 0)
    in_utc = [("late", late_utc), ("early", early_utc)]
    in_cet = [("late", late_utc.astimezone(CET)), ("early", early_utc.astimezone(CET))]
    assert keep_of(in_utc, Policy(daily=5)) == ["late"]
    assert keep_of(in_cet, Policy(daily=5)) == ["late", "early"]


def test_order_uses_absolute_time_across_zones() -> None:
    # 10:00 UTC+1 is earlier than 09:30 UTC: sorting compares instants, not wall clocks.
    snaps = [("cet", t(2024, 1, 1, 10, tz=CET)), ("utc", t(2024, 1, 1, 9, 30))]
    assert keep_of(snaps, Policy(last=1)) == ["utc"]


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_keep_last_n(n: int) -> None:
    snaps = [(f"s{i}", t(2024, 1, 1 + i)) for i in range(4)]
    keep = keep_of(snaps, Policy(last=n))
    assert keep == [f"s{i}" for i in range(3, 3 - min(n, 4), -1)]


# ---- properties -----------------------------------------------------------------------

times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(UTC)
)
policies = st.builds(Policy, *(st.integers(0, 4) for _ in range(6)))


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(times, max_size=30), policies)
def test_partition_and_counts(stamps: list[dt.datetime], policy: Policy) -> None:
    snaps = [(f"s{i:02}", ts) for i, ts in enumerate(stamps)]
    keep, remove, reasons = apply_policy(snaps, policy)
    assert sorted(keep + remove) == sorted(sid for sid, _ in snaps)
    assert set(reasons) == set(keep)
    assert all(reasons[sid] for sid in keep)
    # Each rule keeps at most its count, and keep-last exactly min(n, len).
    for name in ("hourly", "daily", "weekly", "monthly", "yearly"):
        assert sum(name in r for r in reasons.values()) <= getattr(policy, name)
    assert sum("last" in r for r in reasons.values()) == min(policy.last, len(snaps))
    # The newest snapshot is kept by any non-empty policy.
    if snaps and not policy.empty():
        newest = max(snaps, key=lambda s: (s[1], s[0]))[0]
        assert keep[0] == newest
    # Adding to a policy never removes more.
    bigger = Policy(*(getattr(policy, f) + 1 for f in
                      ("last", "hourly", "daily", "weekly", "monthly", "yearly")))
    assert set(keep) <= set(apply_policy(snaps, bigger)[0])


# ---- groups: the safety rules of docs/repository.md ---------------------------------------
# Snapshots of several sources (host and paths), at instants clustered around daylight-saving nights and
# spread over years, seen in zones whose offsets move by 30 minutes, 1 hour, or not at all; ties and
# duplicate times included. Each rule below is one of the four the module docstring promises.

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham"]
# UTC instants of DST changes: EU spring and autumn 2024, US spring and autumn 2024, Lord Howe April 2024.
DST_NIGHTS = [dt.datetime(2024, 3, 31, 1, tzinfo=UTC), dt.datetime(2024, 10, 27, 1, tzinfo=UTC),
              dt.datetime(2024, 3, 10, 7, tzinfo=UTC), dt.datetime(2024, 11, 3, 6, tzinfo=UTC),
              dt.datetime(2024, 4, 6, 15, tzinfo=UTC)]
SOURCES = [("alpha", ("/srv/a",)), ("alpha", ("/srv/b",)), ("beta", ("/srv/a",)), ("beta", ("/srv/a", "/srv/b"))]

instants = st.one_of(
    st.builds(lambda base, minutes: base + dt.timedelta(minutes=minutes),
              st.sampled_from(DST_NIGHTS), st.integers(-3 * 24 * 60, 3 * 24 * 60)),
    st.datetimes(min_value=dt.datetime(2019, 1, 1), max_value=dt.datetime(2031, 1, 1), timezones=st.just(UTC)),
)
any_policy = st.builds(Policy, *(st.sampled_from([0, 0, 1, 2, 3, -1]) for _ in range(6))).filter(
    lambda p: not p.empty())
group_bys = st.sampled_from([DEFAULT_GROUP_BY, ("paths",), ("host",), (), ("host", "paths", "tags")])


@st.composite
def snapshot_sets(draw: st.DrawFn) -> list[SnapInfo]:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    items = draw(st.lists(st.tuples(st.sampled_from(SOURCES), instants, st.booleans()), max_size=40))
    return [SnapInfo(f"{i:04x}" + "0" * 60, when.astimezone(zone), host, paths, ("nightly",) if tagged else ())
            for i, ((host, paths), when, tagged) in enumerate(items)]


def _keeps(plans: list[GroupPlan]) -> dict[GroupKey, set[str]]:
    return {p.key: set(p.keep) for p in plans}


@settings(max_examples=300, derandomize=True, deadline=None)
@given(snapshot_sets(), any_policy, group_bys)
def test_no_group_ever_loses_its_newest_snapshot(snaps: list[SnapInfo], policy: Policy,
                                                 by: tuple[str, ...]) -> None:
    plans = plan(snaps, policy, by)
    assert sorted(removals(plans) + [sid for p in plans for sid in p.keep]) == sorted(s.id for s in snaps)
    for p in plans:
        members = [s for s in snaps if group_key(s, by) == p.key]
        assert max(members, key=lambda s: (s.time, s.id)).id in p.keep, p.describe()


@settings(max_examples=300, derandomize=True, deadline=None)
@given(snapshot_sets(), any_policy, group_bys)
def test_forgetting_is_idempotent(snaps: list[SnapInfo], policy: Policy, by: tuple[str, ...]) -> None:
    first = plan(snaps, policy, by)
    kept = {sid for p in first for sid in p.keep}
    again = plan([s for s in snaps if s.id in kept], policy, by)
    assert removals(again) == []
    assert _keeps(again) == _keeps(first)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(snapshot_sets(), any_policy, group_bys, st.sampled_from(SOURCES), instants)
def test_a_new_snapshot_never_makes_another_groups_snapshot_go(
        snaps: list[SnapInfo], policy: Policy, by: tuple[str, ...], source: tuple[str, tuple[str, ...]],
        when: dt.datetime) -> None:
    zone = snaps[0].time.tzinfo if snaps else UTC
    new = SnapInfo("f" * 64, when.astimezone(zone), source[0], source[1])
    before, after = _keeps(plan(snaps, policy, by)), _keeps(plan([*snaps, new], policy, by))
    for key, kept in before.items():
        if key != group_key(new, by):
            assert after[key] == kept


@settings(max_examples=200, derandomize=True, deadline=None)
@given(snapshot_sets(), any_policy)
def test_each_group_is_planned_as_if_it_were_alone(snaps: list[SnapInfo], policy: Policy) -> None:
    for p in plan(snaps, policy, DEFAULT_GROUP_BY):
        alone = [s for s in snaps if group_key(s, DEFAULT_GROUP_BY) == p.key]
        assert apply_policy([(s.id, s.time) for s in alone], policy)[0] == p.keep


def test_the_readme_policy_keeps_both_folders_of_one_repository() -> None:
    # The reported loss: two folders backed up together each night, `--keep-daily 7 --keep-weekly 4`. Planned
    # over all snapshots together the folder backed up a second earlier lost every snapshot.
    night = dt.datetime(2026, 11, 30, 2, tzinfo=UTC)
    snaps = [SnapInfo(f"{folder}{d}", night + dt.timedelta(days=d, seconds=i), "office", (f"/srv/{folder}",))
             for d in range(10) for i, folder in enumerate(("a", "b"))]
    plans = plan(snaps, Policy(daily=7, weekly=4), ("host", "paths"))
    assert {p.key: len(p.keep) for p in plans} == {(("host", "office"), ("paths", "/srv/a")): 7,
                                                   (("host", "office"), ("paths", "/srv/b")): 7}
    # Without grouping (`--group-by none`, the old behaviour) the daily rule keeps one folder only.
    alone = plan(snaps, Policy(daily=7), ())
    assert {s[0] for s in alone[0].keep} == {"b"}


def test_held_groups_keep_everything() -> None:
    snaps = [SnapInfo(f"s{i}", t(2024, 1, 1 + i), "n", ("/gone" if i % 2 else "/here",)) for i in range(6)]
    plans = plan(snaps, Policy(last=1), ("paths",),
                 hold=lambda key: "removed" if dict(key)["paths"] == "/gone" else "")
    by_path = {dict(p.key)["paths"]: p for p in plans}
    assert by_path["/gone"].held == "removed" and by_path["/gone"].remove == []
    assert len(by_path["/gone"].keep) == 3 and by_path["/here"].keep == ["s4"]


def test_a_plan_that_would_lose_a_group_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard stands even if a future rule goes wrong: a planner that drops the newest snapshot of a
    group makes plan() raise instead of returning something to delete."""
    import peerbackup.core.retention as retention

    snaps = [SnapInfo(f"s{i}", t(2024, 1, 1 + i), "h", ("/p",)) for i in range(3)]
    monkeypatch.setattr(retention, "apply_policy", lambda pairs, policy: ([], [sid for sid, _ in pairs], {}))
    with pytest.raises(RetentionRefused, match="every snapshot"):
        plan(snaps, Policy(last=1))


def test_group_by_parsing() -> None:
    assert parse_group_by("host,paths") == ("host", "paths")
    assert parse_group_by("paths,host") == ("host", "paths")
    assert parse_group_by("none") == () and parse_group_by("") == ()
    for bad in ("hosts", "host,host", "paths;tags"):
        with pytest.raises(UsageError):
            parse_group_by(bad)
    with pytest.raises(UsageError):
        plan([], Policy())
    with pytest.raises(UsageError):
        Policy(last=-2).check()


def test_minus_one_keeps_without_limit() -> None:
    snaps = [(f"s{i}", t(2024, 1, 1 + i)) for i in range(5)]
    assert len(keep_of(snaps, Policy(last=-1))) == 5
    assert len(keep_of(snaps, Policy(daily=-1))) == 5
