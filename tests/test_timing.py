"""tests/timing.py: the tests that share an office built once (SHARED) run on one xdist worker."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ("pytester",)

INNER = """
import os
import pytest

@pytest.fixture(scope="package")
def acme_office():
    return os.environ["PYTEST_XDIST_WORKER"]

@pytest.mark.parametrize("i", range(8))
def test_shares_the_office(acme_office, i, tmp_path_factory):
    out = tmp_path_factory.getbasetemp().parent.parent / "workers"
    out.mkdir(exist_ok=True)
    (out / f"{i}-{acme_office}").touch()

@pytest.mark.parametrize("i", range(8))
def test_alone(i):
    pass
"""


@pytest.mark.slow  # xdist starts worker processes
def test_the_tests_of_a_shared_office_run_on_one_worker(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the worker processes import tests.timing
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "tests.timing", "-p", "no:randomly", "-n", "3",
                                           "--dist", "loadgroup", "-q", f"--basetemp={pytester.path / 'tmp'}")
    result.assert_outcomes(passed=16)
    workers = {p.name.split("-", 1)[1] for p in (pytester.path / "workers").iterdir()}
    assert len(list((pytester.path / "workers").iterdir())) == 8 and len(workers) == 1, workers
