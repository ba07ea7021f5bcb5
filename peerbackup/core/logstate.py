"""The merge rules of the replicated logs, in memory, free of I/O.

`LogState.add` decides what one received event does; the daemon persists the
outcome. The rules make the final state a function of the *set* of events
seen, whatever order they arrive in (tested with Hypothesis):

- an event is accepted only when its writer's signature verifies, it extends
  the writer's feed by one (seq = head + 1, prev = head's id), its HLC time is
  not too far ahead, and the writer had the authority for its kind (in a
  node's log: core/nodelog.py);
- a second, different event at a (log, feed, seq) already held is a **fork**:
  both are kept as proof, the feed is frozen just before the fork, and every
  event from the fork on is dropped; proofs travel so every peer freezes the
  feed at the lowest fork point it learns of;
- a **revocation** event (carrying the office-signed revocation) records the
  revoked writer's last accepted seq per log; the writer's later events are
  dropped and refused. Only an admin writes one, and the cutoff is the one the
  office key signed inside the revocation (older revocations carried it in the
  admin's event only). Several revocations of one peer: the lowest cutoff wins.
  A valid revocation event is kept as evidence and travels with the heads even
  when its own feed later drops it (a fork, its writer's removal), so its
  cutoff applies everywhere whatever the order of arrival.

Verdicts: accepted, duplicate, pending (a predecessor or the writer's
certificate is missing: fetch and retry), refused (with the reason), fork.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from peerbackup.core import alerts, authority, nodelog
from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import Certificate, Revocation
from peerbackup.core.events import CONTROL_LOG, GENESIS, Event, decode_event, make_event, signed_by
from peerbackup.core.identity import SigningKey
from peerbackup.core.nodes import Node, check_node_name, fold_nodes
from peerbackup.errors import FormatError, UnsupportedVersion

ACCEPTED, DUPLICATE, PENDING, REFUSED, FORK = "accepted", "duplicate", "pending", "refused", "fork"

MEMBER_ADD, MEMBER_REVOKE, COORDINATOR_CLAIM = (authority.MEMBER_ADD, authority.MEMBER_REVOKE,
                                               authority.COORDINATOR_CLAIM)


@dataclass(frozen=True)
class Outcome:
    verdict: str
    reason: str = ""
    event: Event | None = None
    removed: tuple[Event, ...] = ()
    proof: tuple[bytes, bytes] | None = None  # a new fork proof to persist and spread
    evidence: bytes | None = None  # a new revocation event to keep as evidence and spread


@dataclass(frozen=True)
class OfficeConfig:
    """What every peer derives from the control log."""

    members: dict[str, Certificate]
    revoked: dict[str, dict[str, int]]  # peer id -> {log: last accepted seq}
    coordinator_terms: list[tuple[int, str]]  # (term, peer id) claimed, in log order
    nodes: dict[str, Node] = field(default_factory=dict)
    alerts: alerts.AlertConfig = field(default_factory=alerts.AlertConfig)
    removed_nodes: dict[str, Node] = field(default_factory=dict)  # node remove: kept, with keys, until purged

    def digest(self) -> bytes:
        h = hashlib.sha256(b"peerbackup office config\0")
        for peer_id in sorted(self.members):
            h.update(peer_id.encode() + self.members[peer_id].raw)
        for peer_id in sorted(self.revoked):
            h.update(peer_id.encode() + repr(sorted(self.revoked[peer_id].items())).encode())
        for name in sorted(self.nodes):
            h.update(repr(self.nodes[name].describe()).encode())
        for name in sorted(self.removed_nodes):
            h.update(repr(self.removed_nodes[name].describe()).encode())
        if self.alerts.since:  # only once configured: offices without alerts keep their digest
            h.update(repr(self.alerts.describe()).encode())
        return h.digest()


@dataclass
class LogState:
    office_key: bytes
    max_ahead_ms: int
    events: dict[tuple[str, str, int], Event] = field(default_factory=dict)
    heads: dict[tuple[str, str], int] = field(default_factory=dict)
    certs: dict[str, Certificate] = field(default_factory=dict)
    cutoffs: dict[str, dict[str, int]] = field(default_factory=dict)
    frozen: dict[tuple[str, str], tuple[int, bytes, bytes]] = field(default_factory=dict)
    revocation_evidence: dict[bytes, bytes] = field(default_factory=dict)  # event id -> raw
    hlc: int = 0
    known_logs: Callable[[str], bool] = field(default=lambda log: log == CONTROL_LOG)
    # config() derived from events and cutoffs; dropped whenever either changes. Every storage
    # request and every status asks for it, so it is not rebuilt from the whole log each time.
    _config: OfficeConfig | None = field(default=None, repr=False, compare=False)

    # ---- certificates (from hellos and joins, and from member.add events) -----------------

    def add_cert(self, cert: Certificate) -> None:
        known = self.certs.get(cert.peer_id)
        if known is None or known.issued < cert.issued:
            self.certs[cert.peer_id] = cert

    # ---- receiving ---------------------------------------------------------------------

    def add(self, raw: bytes, now_ms: int) -> Outcome:
        try:
            ev = decode_event(raw)
        except (FormatError, UnsupportedVersion) as exc:
            return Outcome(REFUSED, f"malformed event: {exc}")
        if not self.known_logs(ev.log):
            return Outcome(REFUSED, f"unknown log {ev.log!r}", ev)
        cert = self.certs.get(ev.feed)
        if cert is None:
            return Outcome(PENDING, f"writer {ev.feed} is not known yet", ev)
        if not signed_by(ev, cert.public_key):
            return Outcome(REFUSED, f"forged or tampered: the signature of {ev.feed} does not verify", ev)
        evidence = self._evidence(ev, cert)
        out = self._place(ev, cert, now_ms)
        if evidence is not None:
            out = replace(out, removed=evidence + out.removed, evidence=ev.raw)
        return out

    def _evidence(self, ev: Event, cert: Certificate) -> tuple[Event, ...] | None:
        """A valid member.revoke counts wherever its event ends up (accepted, or dropped by a fork or
        a cutoff of the feed that carries it): the removed events, or None when not new evidence."""
        if ev.log != CONTROL_LOG or ev.kind != MEMBER_REVOKE or ev.id in self.revocation_evidence:
            return None
        if self._authority(ev, cert):
            return None
        self.revocation_evidence[ev.id] = ev.raw
        return self._apply_revocation(ev)

    def add_evidence(self, raw: bytes) -> Outcome:
        """A revocation event a peer holds as evidence (its feed may have dropped it)."""
        try:
            ev = decode_event(raw)
        except (FormatError, UnsupportedVersion) as exc:
            return Outcome(REFUSED, f"malformed revocation evidence: {exc}")
        cert = self.certs.get(ev.feed)
        if cert is None:
            return Outcome(PENDING, f"writer {ev.feed} is not known yet", ev)
        if ev.log != CONTROL_LOG or ev.kind != MEMBER_REVOKE or not signed_by(ev, cert.public_key):
            return Outcome(REFUSED, "not a signed revocation event", ev)
        if ev.id in self.revocation_evidence:
            return Outcome(DUPLICATE, "", ev)
        removed = self._evidence(ev, cert)
        if removed is None:
            return Outcome(REFUSED, "revocation evidence without authority", ev)
        return Outcome(ACCEPTED, "", ev, removed, evidence=ev.raw)

    def _place(self, ev: Event, cert: Certificate, now_ms: int) -> Outcome:
        frozen = self.frozen.get((ev.log, ev.feed))
        held = self.events.get(ev.key)
        if held is not None:
            if held.id == ev.id:
                return Outcome(DUPLICATE, "", ev)
            return self._fork(held, ev)
        if frozen is not None and ev.seq >= frozen[0]:
            return Outcome(REFUSED, f"feed {ev.feed} of {ev.log} is frozen at seq {frozen[0] - 1} after a fork", ev)
        # A removed writer's feeds end at the recorded seq; a log the revocation did not list, at 0.
        cutoff = self.cutoffs[ev.feed].get(ev.log, 0) if ev.feed in self.cutoffs else None
        if cutoff is not None and ev.seq > cutoff:
            return Outcome(REFUSED, f"written by {ev.feed} after its removal (last accepted seq {cutoff})", ev)
        head = self.heads.get((ev.log, ev.feed), 0)
        if ev.seq > head + 1:
            return Outcome(PENDING, f"seq {ev.seq} follows a gap (have up to {head})", ev)
        if ev.seq <= head:
            # Below our head but not held: an older event dropped by a cutoff or a freeze.
            return Outcome(REFUSED, f"seq {ev.seq} of {ev.feed} was dropped", ev)
        expected = GENESIS if head == 0 else self.events[(ev.log, ev.feed, head)].id
        if ev.prev != expected:
            return Outcome(REFUSED, f"broken chain: seq {ev.seq} does not follow the held seq {head}", ev)
        try:
            new_hlc = hlcmod.receive(self.hlc, ev.hlc, now_ms, self.max_ahead_ms)
        except FormatError as exc:
            return Outcome(REFUSED, str(exc), ev)
        reason = self._authority(ev, cert)
        if reason:
            return Outcome(REFUSED, reason, ev)
        self.hlc = new_hlc
        self.events[ev.key] = ev
        self._config = None
        self.heads[(ev.log, ev.feed)] = ev.seq
        removed: tuple[Event, ...] = ()
        if ev.kind == MEMBER_ADD and ev.log == CONTROL_LOG:
            self.add_cert(Certificate.from_bytes(ev.fields["cert"], self.office_key))
        if ev.kind == MEMBER_REVOKE and ev.log == CONTROL_LOG:
            removed = self._apply_revocation(ev)
        return Outcome(ACCEPTED, "", ev, removed)

    def _authority(self, ev: Event, cert: Certificate) -> str:
        """The one table of rights (core/authority.py) decides; nothing else grants any."""
        node = ev.log.removeprefix(nodelog.NODE_LOG_PREFIX)
        return authority.refusal(authority.CONTROL if ev.log == CONTROL_LOG else authority.NODE, node, ev.kind,
                                 ev.fields, ev.feed, cert, self.office_key, hlcmod.wall_ms(ev.hlc) / 1000)

    def _apply_revocation(self, ev: Event) -> tuple[Event, ...]:
        rev = Revocation.from_bytes(ev.fields["revocation"], self.office_key)
        cutoff: dict[str, int] = ev.fields["cutoff"]
        current = self.cutoffs.get(rev.peer_id)
        # Only the logs the revocations list: an unlisted log means 0 wherever it is read, and an
        # entry made from what happened to have arrived would differ between replicas.
        merged = {}
        for log in set(cutoff) | set(current or {}):
            values = [cutoff.get(log, 0)] + ([current.get(log, 0)] if current is not None else [])
            merged[log] = min(values)
        self.cutoffs[rev.peer_id] = merged
        self._config = None
        return self._drop(rev.peer_id, lambda log, seq: seq > merged.get(log, 0))

    def _drop(self, feed: str, doomed: Callable[[str, int], bool], log_only: str | None = None) -> tuple[Event, ...]:
        removed = []
        for key in sorted(k for k in self.events if k[1] == feed and (log_only is None or k[0] == log_only)):
            ev = self.events[key]
            if doomed(ev.log, ev.seq):
                removed.append(self.events.pop(key))
                self._config = None
        for ev in removed:
            remaining = [s for (lg, fd, s) in self.events if lg == ev.log and fd == feed]
            self.heads[(ev.log, feed)] = max(remaining, default=0)
        return tuple(removed)

    def _fork(self, held: Event, ev: Event) -> Outcome:
        point = ev.seq
        current = self.frozen.get((ev.log, ev.feed))
        if current is not None and current[0] <= point:
            return Outcome(FORK, f"fork of {ev.feed} at seq {point}; already frozen at {current[0] - 1}", ev)
        first, second = sorted((held.raw, ev.raw))  # the same pair, in the same order, on every peer
        self.frozen[(ev.log, ev.feed)] = (point, first, second)
        removed = self._drop(ev.feed, lambda log, seq: seq >= point, log_only=ev.log)
        return Outcome(FORK, f"fork: {ev.feed} signed two events at seq {point} of {ev.log}; feed frozen at "
                             f"seq {point - 1}", ev, removed, (first, second))

    def add_fork_proof(self, raw_a: bytes, raw_b: bytes) -> Outcome:
        """A fork proof from a peer: two different events signed by one writer at one position."""
        try:
            a, b = decode_event(raw_a), decode_event(raw_b)
        except (FormatError, UnsupportedVersion) as exc:
            return Outcome(REFUSED, f"malformed fork proof: {exc}")
        cert = self.certs.get(a.feed)
        if not self.known_logs(a.log):
            return Outcome(REFUSED, f"fork proof in unknown log {a.log!r}")
        if a.key != b.key or a.id == b.id:
            return Outcome(REFUSED, "not a fork proof: the events are not two versions of one position")
        if cert is None:
            return Outcome(PENDING, f"writer {a.feed} is not known yet")
        if not (signed_by(a, cert.public_key) and signed_by(b, cert.public_key)):
            return Outcome(REFUSED, "fork proof with a forged event")
        held = self.events.get(a.key)
        return self._fork(held if held is not None else a, b if held is None or held.id != b.id else a)

    # ---- writing -----------------------------------------------------------------------

    def append(self, key: SigningKey, log: str, kind: str, fields: dict[str, Any], now_ms: int) -> Outcome:
        head = self.heads.get((log, key.peer_id), 0)
        prev = GENESIS if head == 0 else self.events[(log, key.peer_id, head)].id
        ev = make_event(key, log, head + 1, prev, hlcmod.tick(self.hlc, now_ms), kind, fields)
        return self.add(ev.raw, now_ms)

    # ---- reading -----------------------------------------------------------------------

    def ordered(self, log: str = CONTROL_LOG) -> list[Event]:
        return sorted((e for e in self.events.values() if e.log == log), key=Event.order)

    def head_list(self) -> list[tuple[str, str, int, bytes]]:
        return sorted((log, feed, seq, self.events[(log, feed, seq)].id)
                      for (log, feed), seq in self.heads.items() if seq > 0)

    def proofs(self) -> list[tuple[bytes, bytes]]:
        return [(a, b) for (_, a, b) in (self.frozen[k] for k in sorted(self.frozen))]

    def digest(self) -> bytes:
        h = hashlib.sha256(b"peerbackup logs\0")
        for log, feed, seq, eid in self.head_list():
            h.update(f"{log}\0{feed}\0{seq}\0".encode() + eid)
        for (log, feed) in sorted(self.frozen):
            h.update(f"frozen\0{log}\0{feed}\0{self.frozen[(log, feed)][0]}\0".encode())
        for eid in sorted(self.revocation_evidence):
            h.update(b"revocation\0" + eid)
        return h.digest()

    def config(self) -> OfficeConfig:
        if self._config is None:
            self._config = self._derive_config()
        return self._config

    def _derive_config(self) -> OfficeConfig:
        members: dict[str, tuple[int, Certificate]] = {}
        terms = []
        ordered = self.ordered(CONTROL_LOG)
        for ev in ordered:
            if ev.kind == MEMBER_ADD:
                cert = Certificate.from_bytes(ev.fields["cert"], self.office_key)
                members[cert.peer_id] = (ev.hlc, cert)
            elif ev.kind == COORDINATOR_CLAIM:
                terms.append((int(ev.fields["term"]), ev.feed))
        nodes = fold_nodes(ordered)
        return OfficeConfig(
            members={p: c for p, (_, c) in members.items() if p not in self.cutoffs},
            revoked={p: dict(c) for p, c in self.cutoffs.items()},
            coordinator_terms=terms,
            nodes={name: n for name, n in nodes.items() if not n.removed},
            alerts=alerts.derive_config(ordered),
            removed_nodes={name: n for name, n in nodes.items() if n.removed},
        )


def valid_log_name(log: str) -> bool:
    """The control log, or a backup node's event log `node:NAME` (any well-formed node name: its
    events may arrive before the node.add that creates it)."""
    if log == CONTROL_LOG:
        return True
    if not log.startswith(nodelog.NODE_LOG_PREFIX):
        return False
    try:
        check_node_name(log.removeprefix(nodelog.NODE_LOG_PREFIX))
    except FormatError:
        return False
    return True
