"""A scheduled slot whose start is refused is not lost: it waits and starts when it can inside its window,
or, when it never can, the coordinator logs it `job.missed` with the reason (issue 16, cause 4)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.daemon.harness import Office, node_log, wait_for
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE, make_tree

EVERY, WINDOW = 20, 12


def node_events(office: Office, home: list[str], kind: str) -> list[dict[str, Any]]:
    return [e for e in node_log(home, NODE) if e["kind"] == kind]


def next_slot_after(t: float) -> int:
    return (int(t) // EVERY + 1) * EVERY


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def clear_of_a_slot(margin: float = 3.0) -> None:
    """Wait until no slot falls within `margin` seconds: which slot is a new schedule's first depends on the
    time its event gets, which a slot falling during the command would make either of two."""
    if next_slot_after(time.time()) - time.time() < margin:
        sleep_until(next_slot_after(time.time()) + 0.5)


def test_a_slot_refused_for_want_of_an_agent_waits_for_one_or_is_logged_missed(office: Office, tmp_path: Path) -> None:
    (a, b), _src, home = node_office(office, tmp_path, ["beta"], 2, 20_000, replicas=1)
    office.kill(b)  # the node's only agent is off
    wait_for(lambda: a.peers()["beta"]["state"] == "dead", 20, "beta dead on the coordinator")
    clear_of_a_slot()
    office.cli("schedule", "add", NODE, "--every", f"{EVERY}s", "--window", f"{WINDOW}s", *home)
    first = next_slot_after(time.time() + 1)

    # Its window passes without an agent: the slot is in the node's log as missed, once, with the refusal.
    wait_for(lambda: node_events(office, home, "job.missed"), first + WINDOW + 15 - time.time(),
             "the first slot logged missed")
    (missed,) = node_events(office, home, "job.missed")
    assert missed["slot"] == first and missed["node"] == NODE and missed["writer"] == a.peer_id
    assert missed["coordinator"] == a.peer_id and missed["term"] == a.status()["term"]
    assert "window closed" in missed["reason"] and "no agent of accounts can take the backup" in missed["reason"]
    assert not node_events(office, home, "job.dispatched")

    # The next slot comes due with no agent either; the agent is back a few seconds later, inside the window:
    # the slot starts then (it used to be passed over for good at its first refusal).
    second = next_slot_after(time.time())
    assert second == first + EVERY
    sleep_until(second + 3)
    assert not node_events(office, home, "job.dispatched")
    office.start(b, "--peer", a.address, mdns=False)
    wait_for(lambda: node_events(office, home, "job.dispatched"), second + WINDOW - time.time(),
             "the second slot dispatched inside its window")
    (dispatched,) = node_events(office, home, "job.dispatched")
    assert dispatched["slot"] == second and dispatched["agent"] == b.peer_id
    time.sleep(2)
    assert [e["slot"] for e in node_events(office, home, "job.missed")] == [first]  # never logged twice
    log = a.log.read_text()
    assert "job.not_started" in log and "job.missed" in log


def test_a_slot_whose_window_passes_with_no_coordinator_is_logged_missed_by_the_next(
        office: Office, tmp_path: Path) -> None:
    """The soak's silent misses: a coordinator stopped (or stepping down after a clock step) over a slot's whole
    window, and the next coordinator looked back one window only, so the slot was in no log. Now the next
    coordinator settles every slot after the last one the log shows: it logs that one missed."""
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a, "--roles", "agent,storage")), "--peer", a.address,
                     mdns=False)  # no coordinator but alpha
    home = ["--home", str(a.home)]
    src = tmp_path / "shared"
    make_tree(src, 2, 20_000)
    for args in (("node", "add", NODE, "--replicas", "1"), ("grant", NODE, "beta"), ("dataset", "add", NODE, str(src)),
                 ("schedule", "add", NODE, "--every", f"{EVERY}s", "--window", f"{WINDOW}s")):
        office.cli(*args, *home)
    wait_for(lambda: a.status()["coordinator"] == a.peer_id and b.status()["coordinator"] == a.peer_id, 20,
             "alpha coordinating")
    # The first slot is whichever came after the schedule's event: read it from the log, not the test's clock.
    first = min(e["slot"] for e in wait_for(lambda: node_events(office, home, "job.dispatched"), 2 * EVERY + WINDOW,
                                             "the first slot dispatched"))
    # alpha, the only coordinator, is stopped from before the next slot until well after its window closed.
    second = first + EVERY
    sleep_until(second - 4)
    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGSTOP)
    try:
        sleep_until(second + WINDOW + 8)  # past the window, and long enough that alpha's lease ran out
    finally:
        os.killpg(a.proc.pid, signal.SIGCONT)
    wait_for(lambda: [e for e in node_events(office, home, "job.missed") if e["slot"] == second], 40,
             "the slot of the coordinator's absence logged missed")
    [missed] = [e for e in node_events(office, home, "job.missed") if e["slot"] == second]
    assert "window closed" in missed["reason"] or "replaces it" in missed["reason"], missed
    assert second not in {e["slot"] for e in node_events(office, home, "job.dispatched")}
