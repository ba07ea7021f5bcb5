"""Shared by the election tests (test_election*.py): the short timings, the start time, one Election
with a fake clock, and the claims among its actions.
"""

from __future__ import annotations

from peerbackup.core.settings import Settings
from peerbackup.office.coordination.election import NO_TOKEN, Action, Claim, Election, Token

S = Settings(heartbeat=0.5, suspect=1.5, dead=3, lease=3, renew=1)
T0 = 1_700_000_000.0


def election(me: str = "PEER-B", rank: int = 100, eligible: bool = True, started: float = T0,
             highest: Token = NO_TOKEN) -> Election:
    return Election(me=me, rank=rank, eligible=eligible, settings=S, started=started, highest=highest)


def claims(actions: list[Action]) -> list[Claim]:
    return [a for a in actions if isinstance(a, Claim)]
