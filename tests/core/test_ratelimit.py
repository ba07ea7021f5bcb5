"""The upload limit's token bucket (core/ratelimit.py) and its asyncio shell (office/peerstore.UploadLimit)."""

from __future__ import annotations

import asyncio

import pytest

from peerbackup.core.ratelimit import TokenBucket
from peerbackup.errors import UsageError
from peerbackup.office.peerstore.client import UploadLimit

MIB = 1024 * 1024


def test_a_burst_goes_at_once_then_transfers_wait_their_share() -> None:
    b = TokenBucket(10 * MIB, now=100.0)
    assert b.reserve(10 * MIB, 100.0) == 0.0  # one second's worth is there from the start
    assert b.reserve(5 * MIB, 100.0) == pytest.approx(0.5)
    # A second caller at the same instant queues behind the first one's debt.
    assert b.reserve(5 * MIB, 100.0) == pytest.approx(1.0)


def test_a_transfer_larger_than_the_burst_is_paced_not_refused() -> None:
    b = TokenBucket(1 * MIB, now=0.0)
    assert b.reserve(16 * MIB, 0.0) == pytest.approx(15.0)
    # Once that time has passed the bucket is empty, not refilled beyond the debt.
    assert b.reserve(1 * MIB, 15.0) == pytest.approx(1.0)


def test_idle_time_refills_no_more_than_the_burst() -> None:
    b = TokenBucket(1 * MIB, now=0.0, burst=2 * MIB)
    b.reserve(2 * MIB, 0.0)
    assert b.reserve(2 * MIB, 3600.0) == 0.0
    assert b.reserve(1 * MIB, 3600.0) == pytest.approx(1.0)


def test_a_clock_that_steps_back_gives_no_tokens() -> None:
    b = TokenBucket(1 * MIB, now=50.0)
    b.reserve(1 * MIB, 50.0)
    assert b.reserve(1 * MIB, 10.0) == pytest.approx(1.0)


def test_the_average_rate_over_many_transfers_is_the_limit() -> None:
    rate = 4 * MIB
    b = TokenBucket(rate, now=0.0)
    now, sent = 0.0, 0
    for i in range(200):
        n = (i % 7 + 1) * 300_000
        now += b.reserve(n, now)  # each sender waits what it is told, then sends
        sent += n
    # Everything sent by `now`, less the first second's burst, went at the limit.
    assert (sent - rate) / now == pytest.approx(rate, rel=0.01)


@pytest.mark.parametrize("rate", [0, -5])
def test_no_limit_of_zero_or_less(rate: int) -> None:
    with pytest.raises(UsageError, match="must be positive"):
        TokenBucket(rate, now=0.0)


def test_the_asyncio_limit_sleeps_what_the_bucket_says(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(asyncio, "sleep", sleep)  # for this test only: no other coroutine runs
    limit = UploadLimit(2 * MIB, lambda: now[0])

    async def send() -> None:
        for _ in range(4):
            await limit.take(2 * MIB)

    asyncio.run(send())
    assert slept == pytest.approx([1.0, 1.0, 1.0])  # the first 2 MiB were the burst
    assert now[0] == pytest.approx(3.0)
