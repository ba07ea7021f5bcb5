"""The replicated logs under attack, against real daemons: every peer must refuse the same things.
This module holds what the tests of it (tests/daemon/test_log_*.py) share: the daemons as they see
them, the crafted events, the checks; the evil peer is tests/daemon/evil_peer.py.

Three daemons run (alpha the admin, beta, gamma). Other members of the office
(oscar, peggy, mallory, trudy, victor; frank in the fork office) joined with real invites but
never run a daemon: the test speaks for them with an *evil peer*, a small
aiohttp server in a thread of its own that holds the member's legitimate key
and speaks the real protocol with peerbackup's own envelope and message code
(whoami, hello, heartbeat, log heads, log pulls), while serving crafted log
content -- possibly different content to each daemon, since it sees who asks.

A daemon is made to pull from an evil peer the way the protocol allows any
member to: a signed hello (which teaches it the evil peer's address) and then
a signed heads request whose heads differ from its own, after which it syncs
back. The evil peer answers heartbeats with the caller's own digests, so no
sync happens unless the test asks for one.

Cases, each checked on every running daemon: a forged event (and a forged
fork proof), a tampered event, a fork (two events at one position shown to two
daemons), and an event by a removed writer relayed by another member after the
removal. Each must leave a `log.refused` / `log.fork` line with its reason, an
entry in log_alerts of `status --json`, nothing of it in `office log --json`,
and the same logs digest on every daemon. (Most checks read the admin API
answers those two commands print, which is quicker than a process each; the
fork and removal cases run the commands themselves.)

One office serves most of the tests (starting daemons is the slow part: tests/daemon/conftest.py);
every case uses its own writers, so the cases do not depend on one another's
order. The fork case has an office of its own. test_log_fork.py pins two
bugs found here (fork proofs compared as ordered pairs made forked peers
sync forever; a re-encoded event passed for a fork).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from peerbackup.core import codec
from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import COORDINATOR_ROLES
from peerbackup.core.events import CONTROL_LOG, EVENT_VERSION, decode_event, make_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import COORDINATOR_CLAIM, MEMBER_ADD
from peerbackup.errors import FormatError, UnsupportedVersion
from peerbackup.office.membership.home import Home, Identity
from tests.daemon.harness import Office, Peer, wait_for

SKEW = 120.0  # the default clock_skew (the harness does not change it)
# No coordinator is elected while a test runs (a peer waits one lease after starting), so the
# control log holds only what the test makes happen.
TIMINGS = {"lease": "600", "renew": "300"}
DAEMONS = ("alpha", "beta", "gamma")
# The other members may coordinate too (agent, storage, coordinator).
MEMBER_ROLES = {"sybil": ["storage"], "stan": ["storage"]}
WAIT = 20.0
# The members of the shared office (tests/daemon/conftest.py acme_office): each case uses its own.
ACME_MEMBERS = ("oscar", "peggy", "mallory", "trudy", "victor", "sybil", "walter", "rita", "stan", "cora", "ursula",
                "ned")


# ---- small helpers -----------------------------------------------------------------------------


def now_hlc() -> int:
    return hlcmod.pack(int(time.time() * 1000), 0)


def signed_event(signer: SigningKey, feed: str, seq: int, prev: bytes, kind: str, fields: dict[str, Any],
                 hlc: int | None = None) -> bytes:
    """An event of `feed`'s feed in the control log, signed by `signer` (make_event signs only as itself)."""
    body = codec.pack({"v": EVENT_VERSION, "log": CONTROL_LOG, "feed": feed, "seq": seq, "prev": prev,
                       "hlc": now_hlc() if hlc is None else hlc, "kind": kind, "f": fields})
    return codec.pack({"e": body, "s": signer.sign(body)})


def eid(raw: bytes) -> bytes:
    """An event's id, as peerbackup defines it."""
    return decode_event(raw).id


def peek(raw: bytes) -> tuple[str, str, int, bytes]:
    """(log, feed, seq, id) of an event, without trusting it. Bytes peerbackup would not even decode
    (say, once it insists on a canonical encoding) are read from their body and hashed whole."""
    try:
        ev = decode_event(raw)
    except (FormatError, UnsupportedVersion):
        body = codec.unpack_map(codec.unpack_map(raw, "test event")["e"], "test event body")
        return str(body["log"]), str(body["feed"]), int(body["seq"]), hashlib.sha256(raw).digest()
    return ev.log, ev.feed, ev.seq, ev.id


def genuine(key: SigningKey, seq: int, prev: bytes, term: int) -> bytes:
    """A coordinator claim signed by its writer, exactly as a daemon writes one."""
    return make_event(key, CONTROL_LOG, seq, prev, now_hlc(), COORDINATOR_CLAIM, {"term": term}).raw


_LINE = re.compile(r"^\S+ +\S+ +(\S+)(?: (.*))?$")  # "<time> <LEVEL> <event> key=value ..."
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def log_lines(peer: Peer, what: str) -> list[dict[str, Any]]:
    """The fields of every `what` line (e.g. log.refused) of a daemon's text log."""
    out = []
    for line in peer.log.read_text().splitlines():
        m = _LINE.match(line)
        if m is None or m.group(1) != what:
            continue
        out.append({k: json.loads(v) if v.startswith('"') else v for k, v in _FIELD.findall(m.group(2) or "")})
    return out


def lines_about(peer: Peer, what: str, feed: str | None, reason: str) -> list[dict[str, Any]]:
    return [x for x in log_lines(peer, what) if x.get("feed") == feed and reason in x.get("reason", "")]


def more_lines(node: Node, what: str, feed: str | None, reason: str, than: int) -> bool:
    return len(lines_about(node.peer, what, feed, reason)) > than


# ---- the daemons, as the test sees them ----------------------------------------------------------


@dataclass
class Node:
    """A running daemon: its harness handle, identity, peer id and peer-port address."""

    peer: Peer
    ident: Identity
    address: str

    @property
    def id(self) -> str:
        return self.ident.peer_id

    @property
    def name(self) -> str:
        return self.peer.name

    def digest(self) -> str:
        return str(self.peer.status()["logs_digest"])

    def wait_for_line(self, what: str, feed: str | None, reason: str, why: str, than: int = 0) -> None:
        """Until the daemon's log holds more than `than` `what` lines (e.g. log.refused) about `feed` with
        `reason`; `why` completes "<name> to ..." in the failure."""
        wait_for(partial(more_lines, self, what, feed, reason, than), WAIT, f"{self.name} to {why}")

    def control_log(self) -> list[dict[str, Any]]:
        code, events = self.peer.api("GET", "/v1/log")
        assert code == 200, events
        return list(events)


@dataclass
class Acme:
    office: Office
    nodes: list[Node]
    members: dict[str, Identity]  # joined, never started: evil peers speak for them

    @property
    def alpha(self) -> Node:
        return self.nodes[0]

    def converged(self) -> str:
        """Wait until every daemon holds the same logs; that digest."""
        def same() -> str | None:
            digests = {n.digest() for n in self.nodes}
            return digests.pop() if len(digests) == 1 else None
        return str(wait_for(same, WAIT, "every daemon to hold the same logs"))

    def cli_json(self, node: Node, *args: str) -> Any:
        return self.office.cli(*args, "--home", str(node.peer.home), "--json").json()


def start_office(office: Office, members: tuple[str, ...]) -> Acme:
    """alpha, beta and gamma running; `members` joined but never started; every log in agreement."""
    office.env["PEERBACKUP_CACHE_DIR"] = str(office.tmp / "cache")  # module scope: no per-test isolation fixture
    alpha = office.start(office.init("alpha"), mdns=False, timings=TIMINGS)

    def invite(roles: list[str] | None = None) -> str:
        code, out = alpha.api("POST", "/v1/invite", {"roles": roles or list(COORDINATOR_ROLES)})
        assert code == 200, out
        return str(out["token"])

    idents = {name: Home(office.join(name, invite(MEMBER_ROLES.get(name))).home).load() for name in members}
    peers = [alpha] + [office.start(office.join(name, invite()), mdns=False, timings=TIMINGS)
                       for name in DAEMONS[1:]]
    acme = Acme(office, [Node(p, Home(p.home).load(), p.address) for p in peers], idents)
    for n in acme.nodes:
        wait_for(partial(member_adds, n, len(members) + len(DAEMONS)), WAIT, f"{n.name} to hold every member.add")
    acme.converged()
    return acme



# ---- shared checks -------------------------------------------------------------------------------


def ids_in_log(node: Node) -> set[str]:
    return {e["id"] for e in node.control_log()}


def holds(node: Node, raw: bytes) -> bool:
    return eid(raw).hex() in ids_in_log(node)


def member_adds(node: Node, count: int) -> bool:
    return len([e for e in node.control_log() if e["kind"] == MEMBER_ADD]) == count


def office_log(acme: Acme, node: Node, cli: bool) -> list[dict[str, Any]]:
    """`peerbackup office log --json`, or the admin API answer it prints (quicker than a process)."""
    return list(acme.cli_json(node, "office", "log")) if cli else node.control_log()


def assert_healthy_and_alerted(acme: Acme, node: Node, expect: list[dict[str, Any]],
                               cli: bool = False) -> list[dict[str, Any]]:
    """`status --json` (or the admin API answer it prints) still answers, its log_alerts name each
    expected refusal, and nothing crashed."""
    assert node.peer.proc is not None and node.peer.proc.poll() is None, f"{node.name} died"
    st = acme.cli_json(node, "status") if cli else node.peer.status()
    assert st["name"] == node.name and st["peer_id"] == node.id
    for want in expect:
        hits = [a for a in st["log_alerts"]
                if a["verdict"] == want["verdict"] and a.get("feed") == want.get("feed")
                and want["reason"] in a["reason"] and a["source"].startswith(want["source"] + "@")]
        assert hits, f"{node.name}: no alert like {want} in {st['log_alerts']}"
    text = node.peer.log.read_text()
    for crash in ("peer.handler_failed", "daemon.task_failed", "daemon.loop_failed", "Traceback"):
        assert crash not in text, f"{node.name}: {crash} in {node.peer.log}"
    return list(st["log_alerts"])



def node_event(key: SigningKey, log: str, seq: int, prev: bytes, kind: str, fields: dict[str, Any]) -> bytes:
    return make_event(key, log, seq, prev, now_hlc(), kind, fields).raw



def read_control_events(node: Node) -> list[bytes]:
    """The raw control-log events a daemon stored (its events.db, read beside the running daemon)."""
    db = sqlite3.connect(f"file:{node.peer.home / 'events.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT raw FROM events WHERE log = ?", (CONTROL_LOG,))]
    finally:
        db.close()

