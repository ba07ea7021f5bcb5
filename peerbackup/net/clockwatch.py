"""Clock differences seen with peers, kept so that `status` can say so (not only the log).

A peer whose clock is off by more than `clock_skew` has every signed message
refused, and looks dead to the others while it believes them dead. Each side
sees half of it: the server notes the peers whose (signature-verified) requests
it refused for their timestamp, the client the peers that refused ours. Pure:
the caller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECENT = 300.0  # a refusal older than this is history, not the current state


@dataclass
class ClockWatch:
    theirs: dict[str, tuple[float, float]] = field(default_factory=dict)  # peer -> (its clock - ours, when)
    refused_by: dict[str, tuple[str, float]] = field(default_factory=dict)  # peer -> (its refusal, when)

    def saw(self, peer: str, offset: float, now: float) -> None:
        """We refused a verified message of `peer` whose timestamp was `offset` s from our clock."""
        self.theirs[peer] = (offset, now)

    def refused(self, peer: str, message: str, now: float) -> None:
        """`peer` refused our message for its timestamp."""
        self.refused_by[peer] = (message[:300], now)

    def suspect(self, now: float, others: int) -> bool:
        """Is it our clock that is off? Only when most of the other members refuse us for it: one peer
        with a wrong clock refuses everyone, and must not make the healthy ones doubt their own."""
        recent = sum(1 for _, at in self.refused_by.values() if now - at < RECENT)
        return others > 0 and recent * 2 > others

    def report(self, now: float) -> dict[str, dict[str, object]]:
        return {"peers_off": {p: round(off) for p, (off, at) in sorted(self.theirs.items()) if now - at < RECENT},
                "refused_by": {p: msg for p, (msg, at) in sorted(self.refused_by.items()) if now - at < RECENT}}
