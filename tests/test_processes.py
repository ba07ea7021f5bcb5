"""tests/processes.py keeps the `slow` mark true: a test that starts a process without it fails."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

INNER = """
import subprocess, sys
import pytest

def test_unmarked_starts_one():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

@pytest.mark.slow
def test_marked_starts_one():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_starts_none():
    assert sum(range(4)) == 6

@pytest.fixture
def office():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_by_fixture(office):
    pass
"""


@pytest.mark.slow  # its inner tests start processes
def test_an_unmarked_test_that_starts_a_process_fails_and_fixtures_mark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "tests.processes", "-p", "no:randomly", "-q")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*test_unmarked_starts_one started 1 process(es) but is not marked slow*"])
    # The fixture marks its users, so `-m "not slow"` leaves them out with the marked one.
    chosen = pytester.runpytest_inprocess("-p", "tests.processes", "-p", "no:randomly", "-q", "-m", "not slow")
    chosen.assert_outcomes(passed=2, errors=1, deselected=2)
