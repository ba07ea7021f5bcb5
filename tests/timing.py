"""How long each test takes, and the longest first when the suite runs on several workers.

`make test` runs the suite on pytest-xdist workers, each handed the next test (or the next group of
tests that share an office built once: SHARED) as it gets free (`--dist loadgroup`). The tests that take
a minute or more (the soak, the prune properties, the real-process office scenarios) then decide the
wall time: started last, one of them alone would keep a worker busy long after the others are done.
So the workers take the tests in the order of tests/durations.json, longest first (longest processing
time first, the classic list-scheduling rule); a test the file does not know keeps its place after them.

`PEERBACKUP_DURATIONS=FILE make test` writes that file anew from the run: each test's wall time
(setup, call and teardown) and its CPU time, its own process's and its children's (the daemons and
command lines it started), for the tests of a second or more.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TABLE = Path(__file__).with_name("durations.json")
RECORD_FROM = 1.0  # seconds: shorter tests are not worth a line


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def known() -> dict[str, float]:
    try:
        table = json.loads(TABLE.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v["wall"]) for k, v in table.items() if isinstance(v, dict) and "wall" in v}


# Fixtures that build an office once for a module, a package or a session: the tests that share one run on one worker
# (xdist_group), or each worker that ran one of them would build the office again.
# The group is named after the fixture.
SHARED = frozenset({"acme_office", "forked_office", "peer_office"})


def group_of(item: pytest.Item) -> str | None:
    return next((f for f in getattr(item, "fixturenames", ()) if f in SHARED), None)


def longest_first(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """The tests by their time, longest first, the tests of one group together (their time is the group's);
    the tests the table does not know after them, in their own order."""
    units: dict[str, list[pytest.Item]] = {}
    for i in items:
        units.setdefault(group_of(i) or i.nodeid, []).append(i)
    total = {k: sum(seconds.get(i.nodeid, 0.0) for i in u) for k, u in units.items()}
    timed = sorted((k for k in units if total[k] > 0), key=lambda k: -total[k])
    return [i for k in timed for i in units[k]] + [i for k, u in units.items() if total[k] == 0 for i in u]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (it adds them to the test ids)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only on xdist workers: every worker must collect the same order, and a run in one process gains
    # nothing from it (its order stays the files').
    if hasattr(config, "workerinput"):
        for item in items:
            if (group := group_of(item)) is not None:
                item.add_marker(pytest.mark.xdist_group(group))
        items[:] = longest_first(items, known())


@pytest.hookimpl(tryfirst=True)  # before xdist sends the workers' test ids to the scheduler
def pytest_collection_finish(session: pytest.Session) -> None:
    """xdist (3.8) marks a grouped test by adding "@group" to the private `_nodeid`, but pytest 9.2 reads a
    test's id from `_id`: the scheduler never saw a group, and each worker that ran a test of a shared office
    built that office again (six acme offices on six workers). The id is made to carry the group again."""
    if not hasattr(session.config, "workerinput"):
        return
    try:
        from _pytest.nodeid import NodeId  # pytest 9.2 and later
    except ImportError:
        return  # earlier pytest reads `_nodeid`, where xdist put the group
    for item in session.items:
        grouped = getattr(item, "_nodeid", "")
        if "@" in grouped and "@" not in item.nodeid:
            item._id = NodeId.parse(grouped)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    item.stash[_START] = (time.monotonic(), _cpu())
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when == "teardown" and _START in item.stash:
        wall0, cpu0 = item.stash[_START]
        rep = outcome.get_result()  # type: ignore[attr-defined]
        rep.user_properties.append(("timing", (round(time.monotonic() - wall0, 2), round(_cpu() - cpu0, 2))))


_START = pytest.StashKey[tuple[float, float]]()
_SEEN: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "timing" and isinstance(value, tuple | list):
            # xdist adds "@group" to the id of a grouped test
            _SEEN[report.nodeid.split("@")[0]] = {"wall": float(value[0]), "cpu": float(value[1])}


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("PEERBACKUP_DURATIONS")
    if not out or hasattr(session.config, "workerinput"):
        return  # the controller writes it, from every worker's reports
    table = {k: v for k, v in sorted(_SEEN.items(), key=lambda kv: -kv[1]["wall"]) if v["wall"] >= RECORD_FROM}
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in table.items()]
    Path(out).write_text("{\n" + ",\n".join(lines) + "\n}\n")
