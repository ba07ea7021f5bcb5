"""The `slow` mark means "starts a process" (a daemon, the CLI, a browser, a network namespace's), and holds.

A test that uses a fixture starting processes is marked at collection. Every other test is watched: one
that starts a process without the mark fails, naming what it ran, so `pytest -m "not slow"` (the quick
loop: the in-process suite) stays free of processes. A process started in a module's or session's shared
fixture counts for the test that set it up first.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

# Fixtures that start processes: real daemons, the CLI as a subprocess, a shared office, a browser.
PROCESS_FIXTURES = frozenset({"office", "cli", "acme_office", "forked_office", "peer_office", "make_lan", "browser"})

# Short system commands a test uses to set a file up are not what the mark is about.
SETUP_TOOLS = frozenset({"mount", "umount", "cp", "chattr", "setfacl"})

_started: list[str] = []
_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]


def _watched(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> Any:
    argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    if argv and argv[0].rsplit("/", 1)[-1] not in SETUP_TOOLS:
        _started.append(" ".join(argv))
    return _execute_child(self, args, *rest, **kw)


subprocess.Popen._execute_child = _watched  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    del _started[:]
    yield
    if _started and item.get_closest_marker("slow") is None:
        # Reported as this test's failure on the terminal and in the exit status.
        item.ihook.pytest_runtest_logreport(report=pytest.TestReport(
            item.nodeid, item.location, {}, "failed",
            f"{item.nodeid} started {len(_started)} process(es) but is not marked slow "
            f"(tests/processes.py); the first: {_started[0][:200]}", "teardown", []))
