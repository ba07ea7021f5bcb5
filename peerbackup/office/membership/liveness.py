"""Liveness from signed heartbeats: alive -> suspect -> dead. Synchronous, no I/O.

Times are wall-clock seconds handed in by the caller: a laptop that slept
must find its peers dead on waking, which a monotonic clock would hide. A step
back of the wall clock moves every time heard back with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peerbackup.core.settings import Settings

ALIVE, SUSPECT, DEAD, UNKNOWN = "alive", "suspect", "dead", "unknown"


@dataclass(frozen=True)
class StateChange:
    peer_id: str
    old: str
    new: str
    silent_for: float | None  # seconds since last heard, None when never heard


@dataclass
class Liveness:
    settings: Settings
    last_heard: dict[str, float] = field(default_factory=dict)
    _reported: dict[str, str] = field(default_factory=dict)
    _latest: float = float("-inf")  # the latest `now` handed in

    def _observe(self, now: float) -> None:
        """A wall clock stepped back moves every time heard back with it: otherwise a peer heard just before
        a step of d seconds would look alive for d seconds more, dead or not (and a better-ranked peer that
        looks alive is waited for by every election)."""
        if now < self._latest:
            back = self._latest - now
            for peer_id in self.last_heard:
                self.last_heard[peer_id] -= back
        self._latest = now

    def heard(self, peer_id: str, now: float) -> None:
        self._observe(now)
        if now > self.last_heard.get(peer_id, float("-inf")):
            self.last_heard[peer_id] = now

    def forget(self, peer_id: str) -> None:
        self.last_heard.pop(peer_id, None)
        self._reported.pop(peer_id, None)

    def state(self, peer_id: str, now: float) -> str:
        self._observe(now)
        last = self.last_heard.get(peer_id)
        if last is None:
            return DEAD
        silent = now - last
        if silent < self.settings.suspect:
            return ALIVE
        if silent < self.settings.dead:
            return SUSPECT
        return DEAD

    def changes(self, peer_ids: list[str], now: float) -> list[StateChange]:
        """State changes since the last call, for the log; a peer first heard comes from "unknown"."""
        out = []
        for peer_id in peer_ids:
            new = self.state(peer_id, now)
            old = self._reported.get(peer_id)
            if old is None:
                if new == DEAD:
                    continue  # never heard in this run: nothing to report yet
                old = UNKNOWN
            if new != old:
                last = self.last_heard.get(peer_id)
                out.append(StateChange(peer_id, old, new, None if last is None else now - last))
            self._reported[peer_id] = new
        return out
