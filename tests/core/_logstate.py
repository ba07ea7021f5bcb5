"""Shared by the tests of the replicated logs' merge rules (core/logstate.py): the office's keys and
certificates, a hand-built feed whose seq, prev and HLC the tests control, and small event helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import codec
from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import COORDINATOR_ROLES, ROLES, Certificate, Revocation
from peerbackup.core.events import CONTROL_LOG, GENESIS, Event, make_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import (
    COORDINATOR_CLAIM,
    LogState,
    Outcome,
    valid_log_name,
)

OFFICE_KEY = SigningKey(b"\x51" * 32)
OTHER_OFFICE_KEY = SigningKey(b"\x52" * 32)
ADMIN = SigningKey(b"\x61" * 32)  # A: every role, rank 0
BOB = SigningKey(b"\x62" * 32)  # B: the default roles
CAROL = SigningKey(b"\x63" * 32)  # C: the default roles (the one that forks)
DAVE = SigningKey(b"\x64" * 32)  # D: the default roles (the one that is removed)
PLAIN = SigningKey(b"\x65" * 32)  # an agent only: not coordinator-eligible
NOW = 1_700_000_000
NOW_MS = NOW * 1000
AHEAD_MS = 120_000

CERT_A = Certificate.issue(OFFICE_KEY, ADMIN.public_key, "alpha", ROLES, 0, NOW)
CERT_B = Certificate.issue(OFFICE_KEY, BOB.public_key, "bravo", COORDINATOR_ROLES, 100, NOW)
CERT_C = Certificate.issue(OFFICE_KEY, CAROL.public_key, "charlie", COORDINATOR_ROLES, 100, NOW)
CERT_D = Certificate.issue(OFFICE_KEY, DAVE.public_key, "delta", COORDINATOR_ROLES, 100, NOW)
CERT_PLAIN = Certificate.issue(OFFICE_KEY, PLAIN.public_key, "plain", ("agent",), 100, NOW)
FOREIGN_CERT = Certificate.issue(OTHER_OFFICE_KEY, BOB.public_key, "bravo", COORDINATOR_ROLES, 100, NOW)
ALL_CERTS = (CERT_A, CERT_B, CERT_C, CERT_D, CERT_PLAIN)
NODE_D = "node:dave-files"


def hlc_at(ms: int, counter: int = 0) -> int:
    return hlcmod.pack(ms, counter)


def new_state(*certs: Certificate, node_logs: bool = False) -> LogState:
    s = LogState(office_key=OFFICE_KEY.public_key, max_ahead_ms=AHEAD_MS)
    if node_logs:
        s.known_logs = valid_log_name
    for c in certs:
        s.add_cert(c)
    return s


def claim(term: int) -> dict[str, Any]:
    return {"term": term}


def revoke_fields(peer: SigningKey, cutoff: dict[str, int], office_key: SigningKey = OFFICE_KEY,
                  at: int = NOW, signed: bool = True) -> dict[str, Any]:
    """A member.revoke's fields as remove-peer writes them: the cutoff signed inside the revocation too
    (signed=False: as an older version wrote them, the cutoff in the event only)."""
    rev = Revocation.issue(office_key, peer.peer_id, at, "left", cutoff if signed else None)
    return {"revocation": rev.raw, "cutoff": cutoff}


@dataclass
class Feed:
    """One writer's chain in one log, built by hand so tests control seq, prev and HLC."""

    key: SigningKey
    log: str = CONTROL_LOG
    chain: list[Event] = field(default_factory=list)
    clock: int = NOW_MS - 60_000

    def next(self, kind: str = COORDINATOR_CLAIM, fields: dict[str, Any] | None = None,
             hlc: int | None = None) -> Event:
        prev = self.chain[-1].id if self.chain else GENESIS
        self.clock += 10
        ev = make_event(self.key, self.log, len(self.chain) + 1, prev, hlc_at(self.clock) if hlc is None else hlc,
                        kind, claim(len(self.chain) + 1) if fields is None else fields)
        self.chain.append(ev)
        return ev

    def branch(self, at: int) -> Feed:
        """Another chain that shares this one's events before seq `at`: what a forking writer signs."""
        return Feed(self.key, self.log, list(self.chain[:at - 1]), self.clock + 5)


def raw_event(signer: SigningKey, body_obj: dict[str, Any]) -> bytes:
    body = codec.pack(body_obj)
    return codec.pack({"e": body, "s": signer.sign(body)})


def body_of(ev: Event) -> dict[str, Any]:
    return codec.unpack_map(ev.body, "event")


def add(s: LogState, ev: Event | bytes, now_ms: int = NOW_MS) -> Outcome:
    return s.add(ev.raw if isinstance(ev, Event) else ev, now_ms)


def forked_carol(length: int = 4, at: int = 2) -> tuple[list[Event], list[Event]]:
    """Carol's chain of `length` events, and a second chain signed by her that differs from seq `at` on."""
    a = Feed(CAROL)
    main = [a.next() for _ in range(length)]
    b = a.branch(at)
    other = [b.next(fields=claim(1000 + i)) for i in range(2)]
    return main, other
