"""Fixtures of the multi-host tests: a private LAN of network namespaces, daemons inside it, all removed after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import print_logs_if_failed
from tests.netns.lan import Lan, NetnsDenied, NetOffice, namespaces, remove_stale


@pytest.fixture(scope="session", autouse=True)
def _stale_namespaces() -> None:
    # A run killed before its teardown leaves pbn<pid>-… namespaces (and maybe daemons) behind.
    removed = remove_stale()
    if removed:
        print(f"removed stale namespaces of earlier runs: {', '.join(removed)}")


@pytest.fixture
def make_lan() -> Iterator[Callable[[int], Lan]]:
    """make_lan(n): a switch namespace with a bridge and n hosts on 10.77.0.11…; deleted at teardown."""
    made: list[Lan] = []

    def make(n: int) -> Lan:
        lan = Lan(n)
        made.append(lan)
        try:
            return lan.create()
        except NetnsDenied as exc:
            pytest.skip(f"network namespaces need CAP_SYS_ADMIN: {exc}")

    try:
        yield make
    finally:
        errors = []
        for lan in made:
            try:
                lan.destroy()
            except AssertionError as exc:
                errors.append(str(exc))
        ours = [ns for ns in namespaces() if any(ns.startswith(lan.tag + "-") for lan in made)]
        assert not errors and not ours, f"namespaces not removed: {errors} {ours}"


@pytest.fixture
def office(make_lan: Callable[[int], Lan], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NetOffice]:
    # Depends on make_lan, so its daemons are killed before the namespaces go.
    o = NetOffice(tmp_path)
    try:
        yield o
    finally:
        o.close()
        print_logs_if_failed(request, o.logs)
