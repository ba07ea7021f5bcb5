"""core/schedule.settle: a slot seen due is started, waits, or is logged missed with why; never lost silently,
never both run and missed, never missed twice, whatever the refusals and the coordinators that come and go
(issue 16, cause 4)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core.certs import Certificate
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import ACCEPTED
from peerbackup.core.nodelog import JOB_MISSED, missed_slots
from peerbackup.core.schedule import Schedule, settle, slots_after
from tests.core._logstate import NOW, OFFICE_KEY, Feed, add, new_state

TICK = 2.0


def test_a_refused_slot_waits_then_is_missed_with_the_refusal() -> None:
    s = Schedule(id="s", node="n", every=60, window=30).check()
    start, missed, waiting = settle(s, {60.0: ""}, set(), 61.0)
    assert start is not None and start.slot == 60.0 and not missed and waiting == {60.0: ""}
    start, missed, waiting = settle(s, {60.0: "no agent alive"}, set(), 89.0)
    assert start is not None and waiting == {60.0: "no agent alive"}  # still inside its window: tried again
    start, (m,), waiting = settle(s, {60.0: "no agent alive"}, set(), 90.0)
    assert start is None and waiting == {} and m.slot == 60.0
    assert "window closed" in m.reason and "no agent alive" in m.reason


def test_a_later_slot_replaces_an_older_one_and_a_taken_slot_is_left_alone() -> None:
    s = Schedule(id="s", node="n", every=60, window=300).check()
    start, (m,), waiting = settle(s, {60.0: "refused", 120.0: ""}, set(), 121.0)
    assert start is not None and start.slot == 120.0 and m.slot == 60.0 and "60 s later replaces it" in m.reason
    # The latest was run (by another coordinator): the older one is replaced all the same, nothing starts.
    start, (m,), waiting = settle(s, {60.0: "", 120.0: ""}, {120.0}, 121.0)
    assert start is None and m.slot == 60.0 and waiting == {}
    # Catch-up off: a slot still refused a minute after its time is missed, as due() would not start it.
    off = Schedule(id="s", node="n", every=600, window=300, catch_up=False).check()
    start, (m,), _ = settle(off, {600.0: "refused"}, set(), 661.0)
    assert start is None and "catch-up is off" in m.reason


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), window=st.sampled_from([30.0, 90.0, 250.0]), catch_up=st.booleans())
def test_coordinators_coming_and_going_never_lose_a_slot_run_it_twice_or_miss_it_twice(
        seed: int, window: float, catch_up: bool) -> None:
    """The coordinator's loop (office/jobs/scheduler.py _slots) over 40 minutes: coordinators deposed at random with
    their memory, gaps without one, starts refused at random. The node's log is the only shared memory."""
    rng = random.Random(seed)
    s = Schedule(id="s", node="n", every=60, window=window, catch_up=catch_up).check()
    started: dict[float, int] = {}
    missed: list[float] = []
    coordinated: list[float] = []  # the ticks at which a coordinator ran
    evaluated: float | None = None
    waiting: dict[float, str] = {}
    now = 1000.0
    while now < 1000 + 2400:
        now += TICK
        if rng.random() < 0.02:  # deposed: the next coordinator starts from the log alone
            evaluated, waiting = None, {}
            now += rng.choice([0.0, 10.0, 70.0, 400.0])  # the gap before another one runs
            continue
        coordinated.append(now)
        since = max(evaluated if evaluated is not None else now - s.window, 1000.0)
        evaluated = now
        for t in slots_after(s, since, now):
            if now - t < s.window:
                waiting.setdefault(t, "")
        taken = {t for t in waiting if t in started or t in missed}
        start, never, waiting = settle(s, waiting, taken, now)
        missed += [m.slot for m in never]
        if start is None:
            continue
        assert not any(t > start.slot for t in started), "an older slot started after a newer one"
        if rng.random() < 0.5:
            waiting[start.slot] = "refused"
        else:
            started[start.slot] = started.get(start.slot, 0) + 1
            del waiting[start.slot]
    assert all(n == 1 for n in started.values()), "a slot started twice"
    assert len(missed) == len(set(missed)), "a slot logged missed twice"
    assert not set(missed) & set(started), "a slot both run and missed"
    # Every slot that a coordinator watched for its whole window (and a tick beyond) is settled.
    for t in slots_after(s, 1000.0, now - s.window - 2 * TICK):
        watched = [c for c in coordinated if t <= c <= t + s.window + TICK]
        if len(watched) >= int(s.window / TICK) + 1:
            assert t in started or t in missed, f"slot {t} lost silently"


def test_only_a_claimed_coordinators_missed_counts_and_the_first_stands() -> None:
    coord, other = SigningKey(b"\x11" * 32), SigningKey(b"\x12" * 32)
    certs = [Certificate.issue(OFFICE_KEY, k.public_key, n, ("coordinator",), 100, NOW)
             for k, n in ((coord, "c"), (other, "o"))]
    state = new_state(*certs, node_logs=True)
    log = "node:n"
    mine, theirs = Feed(coord, log=log), Feed(other, log=log)
    for feed, key, slot, reason in ((mine, coord, 60, "first"), (mine, coord, 60, "second"),
                                    (theirs, other, 120, "a look-alike")):
        out = add(state, feed.next(JOB_MISSED, {"node": "n", "schedule": "s", "slot": slot, "reason": reason,
                                                "term": 3, "coordinator": key.peer_id}))
        assert out.verdict == ACCEPTED, out.reason
    got = missed_slots(state.ordered(log), {(3, coord.peer_id)})
    assert list(got) == [("s", 60)] and got[("s", 60)]["reason"] == "first"
