"""Coordinator election by lease, without a quorum. Synchronous, no I/O, clock handed in.

Most laptops are off at night, so a majority is often impossible; the office
must still run its schedule. The rule: the live coordinator-eligible peer with
the lowest (rank, peer id) claims a term greater than any it has seen and holds
a lease it renews every `renew` seconds. A peer that just started waits one
lease first (it may hear the current coordinator), unless it knows no other member. So does a peer that
wakes from a pause (a stopped process, a suspended laptop): its view (who is alive, whose lease runs) is
as stale as a fresh start's, and claiming at once deposed a healthy coordinator. Fencing tokens are
(term, peer id), ordered lexicographically; every peer refuses a token lower
than the highest it has seen, and a coordinator that sees a higher token steps
down. A coordinator also steps down when its own lease ran out before it
renewed (a stalled loop, a laptop that slept: times are wall clock). A wall clock stepped back moves
every deadline back with it, so a step costs at most one lease of waiting, never the step's length.

Under a partition each side may elect its own coordinator; when it heals, the
higher token wins and the other steps down (docs/election.md says what stays safe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peerbackup.core.settings import Settings

Token = tuple[int, str]
NO_TOKEN: Token = (0, "")


@dataclass(frozen=True)
class Claim:
    token: Token
    new_term: bool  # False for a renewal


@dataclass(frozen=True)
class SteppedDown:
    token: Token
    reason: str


@dataclass(frozen=True)
class Woke:
    """The election was not ticked for `gap` seconds (longer than `suspect`): it listens a lease first."""

    gap: float


Action = Claim | SteppedDown | Woke


@dataclass
class Election:
    me: str
    rank: int
    eligible: bool
    settings: Settings
    started: float
    highest: Token = NO_TOKEN  # persisted by the daemon
    coordinator: str | None = None
    token: Token = NO_TOKEN  # the coordinator's token, as known here
    lease_until: float = 0.0
    last_renew: float = 0.0
    history: list[tuple[Token, float]] = field(default_factory=list)  # tokens this peer claimed
    last_tick: float | None = None  # when tick() last ran: a long gap is a pause

    @property
    def i_am(self) -> bool:
        return self.coordinator == self.me

    def current(self, now: float) -> str | None:
        """The coordinator whose lease is still running, as far as this peer knows."""
        if self.coordinator is not None and now < self.lease_until:
            return self.coordinator
        return None

    def tick(self, now: float, alive: list[tuple[int, str]], rank_of: dict[str, int]) -> list[Action]:
        """alive: (rank, peer id) of the coordinator-eligible peers heard recently, this one excluded;
        rank_of: the rank of every member, to compare with a holder no longer heard."""
        actions: list[Action] = []
        if self.last_tick is not None and now < self.last_tick:
            # The wall clock stepped back (NTP undoing a wrong step forward). Every deadline set before moves
            # back with it: a wait begun just before the step would otherwise last the step longer, and the
            # others wait for this better-ranked peer while it waits for its own clock (the soak's 89 s).
            back = self.last_tick - now
            self.started -= back
            self.last_renew -= back
            if self.lease_until:
                self.lease_until -= back
        if self.last_tick is not None and now - self.last_tick > self.settings.suspect:
            # Ticked every heartbeat or so: a gap longer than `suspect` is a pause (SIGSTOP, a suspended
            # laptop; `now` is wall clock, which counts a suspend where a monotonic clock does not). Whatever
            # it heard before is stale: every peer looks silent and every lease run out. Like a fresh start,
            # it listens one lease for the current coordinator's announcements before it may claim. A wall
            # clock stepped forward looks the same and costs the same: one lease of waiting.
            self.started = now
            actions.append(Woke(now - self.last_tick))
        self.last_tick = now
        if self.i_am:
            if now >= self.lease_until:
                actions.append(self._step_down("the lease ran out before it was renewed"))
            elif now - self.last_renew >= self.settings.renew:
                self.lease_until = now + self.settings.lease
                self.last_renew = now
                return [*actions, Claim(self.token, new_term=False)]
            else:
                return actions
        alone = all(p == self.me for p in rank_of)  # no other member known: nobody to wait for
        if not self.eligible or (now < self.started + self.settings.lease and not alone):
            return actions
        mine = (self.rank, self.me)
        if alive and min(alive) < mine:
            return actions  # a better-ranked peer is alive: it is the one to claim
        holder = self.current(now)
        if holder is not None and holder != self.me and (rank_of.get(holder, 2**32), holder) < mine:
            return actions  # a better-ranked holder, silent here: its lease must run out first
        # Nobody holds a lease, or a worse-ranked peer does: claim a higher term.
        self.highest = (self.highest[0] + 1, self.me)
        self.coordinator, self.token = self.me, self.highest
        self.lease_until = now + self.settings.lease
        self.last_renew = now
        self.history.append((self.token, now))
        actions.append(Claim(self.token, new_term=True))
        return actions

    def _step_down(self, reason: str) -> SteppedDown:
        token = self.token
        self.coordinator = None
        self.lease_until = 0.0
        return SteppedDown(token, reason)

    def on_announce(self, sender: str, token: Token, now: float) -> bool:
        """An announcement (claim or renewal) from sender; False when fenced off as stale."""
        if token[1] != sender or not self.check_fence(token):
            return False
        self.see(token)
        if sender != self.me:
            self.coordinator, self.token = sender, token
            self.lease_until = now + self.settings.lease  # our clock: no skew between peers matters
        return True

    def see(self, token: Token) -> SteppedDown | None:
        """A token seen anywhere (an announcement, a refusal's answer); a higher one fences us off."""
        if token <= self.highest:
            return None
        self.highest = token
        if self.i_am and token > self.token:
            return self._step_down(f"a higher token {token} was seen")
        return None

    def check_fence(self, token: Token) -> bool:
        """Whether a coordinator message under token may be obeyed (not stale): the one fence rule, for an
        announcement (on_announce) and a job's dispatch (office/jobs/runner.py) alike."""
        return token >= self.highest
