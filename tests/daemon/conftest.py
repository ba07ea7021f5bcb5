from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import Office


@pytest.fixture
def office(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Office]:
    o = Office(tmp_path)
    try:
        yield o
    finally:
        o.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(o.logs())
