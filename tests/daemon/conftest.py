from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.evil_peer import Forked, fork_office
from tests.daemon.harness import Office, print_logs_if_failed
from tests.daemon.logsec import ACME_MEMBERS, Acme, start_office
from tests.daemon.trio import Records, recording


@pytest.fixture
def office(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Office]:
    o = Office(tmp_path)
    try:
        yield o
    finally:
        o.close()
        print_logs_if_failed(request, o.logs)


# The two offices of the log-security tests (test_log_*.py), each started once for the whole package and
# shared by its tests in several modules: starting three daemons is what those tests cost. tests/timing.py
# runs the tests of one such fixture on one worker, so a worker starts it at most once.


@pytest.fixture(scope="package")
def acme_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acme]:
    office = Office(Path(tmp_path_factory.mktemp("acme")))
    try:
        yield start_office(office, ACME_MEMBERS)
    finally:
        office.close()


@pytest.fixture
def acme(acme_office: Acme, request: pytest.FixtureRequest) -> Iterator[Acme]:
    yield acme_office
    print_logs_if_failed(request, acme_office.office.logs)


@pytest.fixture(scope="package")
def forked_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forked]:
    office = Office(Path(tmp_path_factory.mktemp("forked")))
    try:
        with fork_office(office) as forked:
            yield forked
    finally:
        office.close()


@pytest.fixture
def forked(forked_office: Forked, request: pytest.FixtureRequest) -> Iterator[Forked]:
    yield forked_office
    print_logs_if_failed(request, forked_office.acme.office.logs)


@pytest.fixture
def records() -> Iterator[Records]:
    """Every record the in-process daemons of a test (tests/daemon/trio.py) log, and aiohttp's."""
    with recording() as handler:
        yield handler
