from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import Office, print_logs_if_failed


@pytest.fixture
def office(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Office]:
    o = Office(tmp_path)
    try:
        yield o
    finally:
        o.close()
        print_logs_if_failed(request, o.logs)
