"""How long each test takes, and the longest first when the suite runs on several workers.

`make test` runs the suite on pytest-xdist workers, each handed the next test as it gets free
(`--dist load`). The tests that take a minute or more (the soak, the prune properties, the
real-process office scenarios) then decide the wall time: started last, one of them alone would
keep a worker busy long after the others are done. So the workers take the tests in the order of
tests/durations.json, longest first (longest processing time first, the classic list-scheduling
rule); a test the file does not know keeps its place after them.

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


def longest_first(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """The known tests by their time, longest first; the others after them, in their own order."""
    timed = sorted((i for i in items if i.nodeid in seconds), key=lambda i: -seconds[i.nodeid])
    return timed + [i for i in items if i.nodeid not in seconds]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only on xdist workers: every worker must collect the same order, and a run in one process gains
    # nothing from it (its order stays the files').
    if hasattr(config, "workerinput"):
        items[:] = longest_first(items, known())


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
            _SEEN[report.nodeid] = {"wall": float(value[0]), "cpu": float(value[1])}


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("PEERBACKUP_DURATIONS")
    if not out or hasattr(session.config, "workerinput"):
        return  # the controller writes it, from every worker's reports
    table = {k: v for k, v in sorted(_SEEN.items(), key=lambda kv: -kv[1]["wall"]) if v["wall"] >= RECORD_FROM}
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in table.items()]
    Path(out).write_text("{\n" + ",\n".join(lines) + "\n}\n")
