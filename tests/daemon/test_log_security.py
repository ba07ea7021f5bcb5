"""The replicated logs under attack, against real daemons: every peer must refuse the same things.

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

One office serves most of the module (starting daemons is the slow part);
every case uses its own writers, so the cases do not depend on one another's
order. The fork case has an office of its own. The tests at the end of
sections 3 and 5 pin two bugs found here (fork proofs compared as ordered
pairs made forked peers sync forever; a re-encoded event passed for a fork).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from peerbackup.core import codec
from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import COORDINATOR_ROLES, Certificate, Revocation
from peerbackup.core.events import CONTROL_LOG, EVENT_VERSION, GENESIS, decode_event, make_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import COORDINATOR_CLAIM, MEMBER_ADD
from peerbackup.errors import FormatError, NotFound, ProtocolError, UnknownPeer, UnsupportedVersion
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import heartbeat, hello, logsync
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home, Identity
from tests.daemon.harness import Office, Peer, holds_for, post_raw, print_logs_if_failed, wait_for

SKEW = 120.0  # the default clock_skew (the harness does not change it)
# No coordinator is elected while a test runs (a peer waits one lease after starting), so the
# control log holds only what the test makes happen.
TIMINGS = {"lease": "600", "renew": "300"}
DAEMONS = ("alpha", "beta", "gamma")
# The other members may coordinate too (agent, storage, coordinator).
MEMBER_ROLES = {"sybil": ["storage"], "stan": ["storage"]}
WAIT = 20.0


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


@pytest.fixture(scope="module")
def acme_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acme]:
    office = Office(Path(tmp_path_factory.mktemp("acme")))
    try:
        yield start_office(office, ("oscar", "peggy", "mallory", "trudy", "victor", "sybil", "walter", "rita",
                                    "stan", "cora", "ursula", "ned"))
    finally:
        office.close()


@pytest.fixture
def acme(acme_office: Acme, request: pytest.FixtureRequest) -> Iterator[Acme]:
    yield acme_office
    print_logs_if_failed(request, acme_office.office.logs)


# ---- the evil peer -------------------------------------------------------------------------------


class EvilPeer:
    """A legitimate member's key in the hands of an attacker: a real peer server (own thread, own
    event loop) that serves crafted log heads and pulls, per requester."""

    def __init__(self, ident: Identity, nodes: list[Node]) -> None:
        self.ident = ident
        self.id = ident.peer_id
        self.keys = {n.id: n.ident.certificate.public_key for n in nodes}  # who may ask, and their keys
        self.certs: dict[str, bytes] = {self.id: ident.certificate.raw}  # sent with a feed's events
        self.address = ""
        self.requests: list[tuple[str, str]] = []  # (requester, path) of every verified request
        self.served: list[tuple[str, str, int, tuple[bytes, ...]]] = []  # (requester, feed, start, event ids)
        self._events: dict[str, list[bytes]] = {}  # requester peer id (or "*") -> the events it is shown
        self._forks: list[tuple[bytes, bytes]] = []
        self._greeted: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"evil-{ident.certificate.name}", daemon=True)

    # -- life cycle

    def __enter__(self) -> EvilPeer:
        self._thread.start()
        if not self._ready.wait(10) or self._failed is not None:
            self.__exit__()
            raise AssertionError(f"evil peer did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        assert not self._thread.is_alive(), "evil peer thread did not stop"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by __enter__
            self._failed = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            if self._runner is not None:
                self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=envelope.MAX_ENVELOPE + 1)
        app.router.add_get(hello.WHOAMI_PATH, self._whoami)
        app.router.add_post("/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.address = f"127.0.0.1:{port}"

    # -- what it serves (set from the test thread)

    def serve(self, events: dict[str, list[bytes]], forks: list[tuple[bytes, bytes]] | None = None) -> None:
        """events: requester peer id, or "*" for anyone else -> the events of any feed it is shown."""
        with self._lock:
            self._events = {k: list(v) for k, v in events.items()}
            self._forks = list(forks or [])

    def _shown(self, requester: str) -> list[bytes]:
        with self._lock:
            return self._events.get(requester, self._events.get("*", []))

    def heads_for(self, requester: str) -> logsync.Heads:
        best: dict[tuple[str, str], tuple[int, bytes]] = {}
        for raw in self._shown(requester):
            log, feed, seq, ident = peek(raw)  # not verified: forged and tampered events are shown too
            if best.get((log, feed), (0, b""))[0] < seq:
                best[(log, feed)] = (seq, ident)
        with self._lock:
            forks = tuple(self._forks)
        heads = tuple(logsync.Head(log, feed, seq, ident) for (log, feed), (seq, ident) in sorted(best.items()))
        return logsync.Heads(heads, forks)

    def pulls(self, requester: str, feed: str) -> list[tuple[int, tuple[bytes, ...]]]:
        with self._lock:
            return [(start, ids) for (who, f, start, ids) in self.served if who == requester and f == feed]

    def heads_requests(self, requester: str) -> int:
        with self._lock:
            return sum(1 for who, path in self.requests if who == requester and path == logsync.HEADS_PATH)

    # -- the protocol, server side

    async def _whoami(self, request: web.Request) -> web.Response:
        body = hello.WhoAmI(self.ident.certificate.raw, self.ident.office.to_wire()).to_wire()
        return web.Response(body=body, content_type=CONTENT_TYPE)

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            env = envelope.open_envelope(await request.read())
        except ProtocolError:
            return web.Response(status=400)  # nobody to address a signed refusal to
        h = env.header
        try:
            key = self.keys.get(h.issuer)
            if key is None:
                raise UnknownPeer(h.issuer)
            envelope.check(env, key, self.id, request.method, request.path, time.time(), SKEW)
            with self._lock:
                self.requests.append((h.issuer, request.path))
            body = self._handle(h.issuer, request.path, env.body)
            status = 200
        except ProtocolError as exc:
            body, status = Refusal(exc.code, str(exc)).to_wire(), exc.status
        data, _ = envelope.seal(self.ident.key, h.issuer, envelope.RESPONSE, h.path, body, time.time(),
                                secrets.token_bytes, reply_to=h.nonce)
        return web.Response(status=status, body=data, content_type=CONTENT_TYPE)

    def _handle(self, issuer: str, path: str, body: bytes) -> bytes:
        if path == hello.PATH:
            hello.Hello.from_wire(body)
            return hello.Hello(self.ident.certificate.raw, (self.address,)).to_wire()
        if path == heartbeat.PATH:
            # Echo the caller's digests: it sees nothing to sync or re-greet until the test says so.
            beat = heartbeat.Heartbeat.from_wire(body)
            return heartbeat.Heartbeat(beat.seq, beat.revocations_digest, beat.logs_digest).to_wire()
        if path == logsync.HEADS_PATH:
            logsync.Heads.from_wire(body)
            return self.heads_for(issuer).to_wire()
        if path == logsync.PULL_PATH:
            req = logsync.Pull.from_wire(body)
            mine = [(seq, raw) for raw in self._shown(issuer) for log, feed, seq, _ in [peek(raw)]
                    if (log, feed) == (req.log, req.feed) and seq >= req.start]
            events = [raw for _, raw in sorted(mine)][:req.limit]
            with self._lock:
                self.served.append((issuer, req.feed, req.start, tuple(peek(e)[3] for e in events)))
            return logsync.PullReply(tuple(events), self.certs.get(req.feed, b"")).to_wire()
        raise NotFound(path)

    # -- the protocol, client side (from the test thread)

    def call(self, node: Node, path: str, body: bytes) -> tuple[int, bytes]:
        """A signed request to a daemon; (status, body) of its answer, which must verify when it is a 200."""
        data, nonce = envelope.seal(self.ident.key, node.id, "POST", path, body, time.time(), secrets.token_bytes)
        status, raw = post_raw(node.address, path, data)
        env = envelope.open_envelope(raw)
        if status == 200:
            envelope.check(env, node.ident.certificate.public_key, self.id, envelope.RESPONSE, path, time.time(),
                           SKEW, reply_to=nonce)
        return status, env.body

    def poke(self, node: Node) -> None:
        """Make a daemon sync from us: hello (so it knows where we are), then heads that differ from its own."""
        if node.id not in self._greeted:
            status, body = self.call(node, hello.PATH, hello.Hello(self.ident.certificate.raw, (self.address,))
                                     .to_wire())
            assert status == 200, Refusal.from_wire(body)
            self._greeted.add(node.id)
        status, body = self.call(node, logsync.HEADS_PATH, self.heads_for(node.id).to_wire())
        assert status == 200, Refusal.from_wire(body)

    def settle(self, node: Node, timeout: float = WAIT, required: bool = True) -> bool:
        """Return once the daemon has finished a sync with us that started after this call: a sync
        with a peer starts only when none with it is running, so the second heads request the daemon
        sends us from now on proves the first sync (which saw what we serve now) is over. Each poke
        must show heads that differ from the daemon's, or it does not sync at all: then False, or a
        failure when `required`."""
        for round_ in range(2):
            before = self.heads_requests(node.id)

            def synced(before: int = before) -> bool:
                self.poke(node)
                time.sleep(0.1)
                return self.heads_requests(node.id) > before

            try:
                wait_for(synced, timeout, f"{node.name} to sync with {self.ident.certificate.name} (round {round_})")
            except AssertionError:
                if required:
                    raise
                return False
        return True


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


# ---- 1: forged events --------------------------------------------------------------------------------


def test_forged_events_and_a_forged_fork_proof_are_refused_on_every_peer(acme: Acme) -> None:
    oscar = acme.members["oscar"]
    alpha = acme.alpha
    before = acme.converged()
    alpha_office_key = alpha.ident.office_key
    assert alpha_office_key is not None
    stranger = SigningKey(bytes([0x5A]) * 32)
    eve = SigningKey(bytes([0xEE]) * 32)
    eve_cert = Certificate.issue(alpha_office_key, eve.public_key, "eve", ("admin", "coordinator"), 0,
                                 int(time.time()))

    with EvilPeer(oscar, acme.nodes) as evil:
        # alpha's feed as every daemon holds it: its head, and the head event's own bytes.
        status, raw = evil.call(alpha, logsync.HEADS_PATH, logsync.Heads((), ()).to_wire())
        assert status == 200
        (alpha_head,) = [h for h in logsync.Heads.from_wire(raw).heads if h.feed == alpha.id]
        status, raw = evil.call(alpha, logsync.PULL_PATH,
                                logsync.Pull(CONTROL_LOG, alpha.id, alpha_head.seq, 1).to_wire())
        assert status == 200
        (alpha_last,) = logsync.PullReply.from_wire(raw).events
        assert eid(alpha_last) == alpha_head.id
        last = decode_event(alpha_last)

        # oscar's own feed, signed by a key that is not oscar's.
        forged_claim = signed_event(stranger, oscar.peer_id, 1, GENESIS, COORDINATOR_CLAIM, {"term": 1})
        # The admin's feed, extended by oscar: "alpha adds eve as an admin" (a genuinely office-signed
        # certificate, so only the event's signature is wrong).
        forged_add = signed_event(oscar.key, alpha.id, alpha_head.seq + 1, alpha_head.id, MEMBER_ADD,
                                  {"cert": eve_cert.raw})
        # A fork proof that would freeze the admin's feed: its real head event and a twin oscar signed.
        twin = signed_event(oscar.key, alpha.id, last.seq, last.prev, MEMBER_ADD, {"cert": eve_cert.raw},
                            hlc=last.hlc)
        evil.serve({"*": [forged_claim, forged_add]}, forks=[(alpha_last, twin)])
        for n in acme.nodes:
            evil.poke(n)

        expect: list[dict[str, Any]] = [
            {"verdict": "refused", "feed": oscar.peer_id, "source": oscar.peer_id,
             "reason": f"forged or tampered: the signature of {oscar.peer_id} does not verify"},
            {"verdict": "refused", "feed": alpha.id, "source": oscar.peer_id,
             "reason": f"forged or tampered: the signature of {alpha.id} does not verify"},
            {"verdict": "refused", "feed": None, "source": oscar.peer_id, "reason": "fork proof with a forged event"},
        ]
        for n in acme.nodes:
            for want in expect:
                wait_for(partial(more_lines, n, "log.refused", want["feed"], want["reason"], 0), WAIT,
                         f"{n.name} to refuse: {want['reason']}")
            # The forgeries really were delivered to this daemon, by the protocol's own pull.
            assert (1, (eid(forged_claim),)) in evil.pulls(n.id, oscar.peer_id)
            assert (alpha_head.seq + 1, (eid(forged_add),)) in evil.pulls(n.id, alpha.id)

    for n in acme.nodes:
        assert_healthy_and_alerted(acme, n, expect)
        events = office_log(acme, n, cli=False)
        assert not [e for e in events if e["writer"] == oscar.peer_id]
        assert not [e for e in events if e["kind"] == MEMBER_ADD and e["fields"]["peer_id"] == eve.peer_id]
        assert eid(twin).hex() not in {e["id"] for e in events}
        assert max(e["seq"] for e in events if e["writer"] == alpha.id) == alpha_head.seq
        assert "eve" not in n.peer.peers()
        assert not lines_about(n.peer, "log.fork", alpha.id, ""), f"{n.name} froze the admin's feed"
    # Nothing of it was accepted anywhere, and the admin's feed was not frozen: the logs did not change.
    assert acme.converged() == before


# ---- 2: tampered events ------------------------------------------------------------------------------


def _retouched(raw: bytes, **body_changes: Any) -> bytes:
    """The event with fields of its signed body changed after signing; the signature kept."""
    outer = codec.unpack_map(raw, "test event")
    body = codec.unpack_map(outer["e"], "test event body")
    body.update(body_changes)
    return codec.pack({"e": codec.pack(body), "s": outer["s"]})


def _sig_flipped(raw: bytes) -> bytes:
    outer = codec.unpack_map(raw, "test event")
    sig = bytearray(outer["s"])
    sig[5] ^= 0x10
    return codec.pack({"e": outer["e"], "s": bytes(sig)})


def test_tampered_events_are_refused_on_every_peer_and_the_genuine_one_accepted(acme: Acme) -> None:
    peggy = acme.members["peggy"]
    before = acme.converged()
    real = genuine(peggy.key, 1, GENESIS, 7)
    real_term = decode_event(real).fields["term"]
    tampered = {
        "fields": _retouched(real, f={"term": 99}),
        "kind": _retouched(real, kind="member.revoke"),
        "hlc": _retouched(real, hlc=decode_event(real).hlc + 1),
        "signature": _sig_flipped(real),
    }
    reason = f"forged or tampered: the signature of {peggy.peer_id} does not verify"
    with EvilPeer(peggy, acme.nodes) as evil:
        for what, raw in tampered.items():
            assert decode_event(raw).key == decode_event(real).key and eid(raw) != eid(real), what
            evil.serve({"*": [raw]})
            counts = {n.id: len(lines_about(n.peer, "log.refused", peggy.peer_id, reason)) for n in acme.nodes}
            for n in acme.nodes:
                evil.poke(n)
            for n in acme.nodes:
                wait_for(partial(more_lines, n, "log.refused", peggy.peer_id, reason, counts[n.id]), WAIT,
                         f"{n.name} to refuse the event with its {what} tampered")
                assert (1, (eid(raw),)) in evil.pulls(n.id, peggy.peer_id), what
            assert acme.converged() == before, f"the event with its {what} tampered changed a log"
        expect = [{"verdict": "refused", "feed": peggy.peer_id, "source": peggy.peer_id, "reason": reason}]
        for n in acme.nodes:
            assert len(lines_about(n.peer, "log.refused", peggy.peer_id, reason)) >= len(tampered)
            assert_healthy_and_alerted(acme, n, expect)
            assert not [e for e in n.control_log() if e["writer"] == peggy.peer_id]

        # The refusals were about the tampering, not about peggy: her real event is accepted everywhere.
        evil.serve({"*": [real]})
        for n in acme.nodes:
            evil.poke(n)
        for n in acme.nodes:
            wait_for(partial(holds, n, real), WAIT, f"{n.name} to accept the genuine event")
    for n in acme.nodes:
        claims = [e for e in office_log(acme, n, cli=False) if e["writer"] == peggy.peer_id]
        assert [(c["seq"], c["kind"], c["fields"]["term"], c["id"]) for c in claims] == \
            [(1, COORDINATOR_CLAIM, real_term, eid(real).hex())]
    acme.converged()


# ---- 3: a fork ------------------------------------------------------------------------------------------


@dataclass
class Forked:
    acme: Acme
    evil: EvilPeer  # frank's
    first: bytes  # frank's seq 1, accepted everywhere
    ev_a: bytes  # frank's seq 2 as shown to alpha
    ev_b: bytes  # frank's seq 2 as shown to beta

    def wait_frozen(self) -> str:
        """Every daemon found the fork and froze frank's feed before seq 2; the agreed logs digest."""
        frank = self.acme.members["frank"]
        reason = f"fork: {frank.peer_id} signed two events at seq 2 of {CONTROL_LOG}; feed frozen at seq 1"
        for n in self.acme.nodes:
            wait_for(partial(more_lines, n, "log.fork", frank.peer_id, reason, 0), WAIT,
                     f"{n.name} to detect frank's fork")
        return self.acme.converged()


@pytest.fixture(scope="module")
def forked_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forked]:
    """An office of its own, where frank showed alpha and beta two different events at seq 2 (its own,
    so the fork's alerts stay apart from the first office's)."""
    office = Office(Path(tmp_path_factory.mktemp("forked")))
    try:
        acme = start_office(office, ("frank",))
        frank = acme.members["frank"]
        alpha, beta, _ = acme.nodes
        with EvilPeer(frank, acme.nodes) as evil:
            first = genuine(frank.key, 1, GENESIS, 3)
            evil.serve({"*": [first]})
            for n in acme.nodes:
                evil.poke(n)
            for n in acme.nodes:
                wait_for(partial(holds, n, first), WAIT, f"{n.name} to accept frank's seq 1")
            acme.converged()
            # Two different events at seq 2, both validly signed by frank: one shown to alpha, one to beta.
            # alpha and beta then differ; their heartbeats carry log digests, so they sync with each other
            # and gamma with them: every daemon must find the fork.
            ev_a = genuine(frank.key, 2, eid(first), 4)
            ev_b = genuine(frank.key, 2, eid(first), 5)
            evil.serve({alpha.id: [first, ev_a], beta.id: [first, ev_b], "*": [first]})
            evil.poke(alpha)
            evil.poke(beta)
            yield Forked(acme, evil, first, ev_a, ev_b)
    finally:
        office.close()


@pytest.fixture
def forked(forked_office: Forked, request: pytest.FixtureRequest) -> Iterator[Forked]:
    yield forked_office
    print_logs_if_failed(request, forked_office.acme.office.logs)


def test_fork_shown_to_two_peers_is_detected_everywhere_and_the_feed_frozen_alike(forked: Forked) -> None:
    acme, evil, first, ev_a, ev_b = forked.acme, forked.evil, forked.first, forked.ev_a, forked.ev_b
    frank = acme.members["frank"]
    alpha, beta, gamma = acme.nodes
    frozen = forked.wait_frozen()
    assert (2, (eid(ev_a),)) in evil.pulls(alpha.id, frank.peer_id)
    assert (2, (eid(ev_b),)) in evil.pulls(beta.id, frank.peer_id)
    assert all(start == 1 for start, _ in evil.pulls(gamma.id, frank.peer_id)), "gamma was shown only seq 1"

    # Shown the other branch now, a frozen daemon does not even pull it.
    pulled = {n.id: len(evil.pulls(n.id, frank.peer_id)) for n in acme.nodes}
    evil.serve({alpha.id: [first, ev_b], beta.id: [first, ev_a], gamma.id: [first, ev_a]})
    for n in acme.nodes:
        evil.settle(n)
        assert len(evil.pulls(n.id, frank.peer_id)) == pulled[n.id], n.name
    assert acme.converged() == frozen

    for n in acme.nodes:
        alerts = assert_healthy_and_alerted(acme, n, [], cli=True)
        forks = [a for a in alerts if a["verdict"] == "fork" and a.get("feed") == frank.peer_id]
        assert forks and all(a["seq"] == 2 and "frozen at" in a["reason"] for a in forks), (n.name, alerts)
        events = office_log(acme, n, cli=True)
        franks = [(e["seq"], e["id"]) for e in events if e["writer"] == frank.peer_id]
        assert franks == [(1, eid(first).hex())], (n.name, franks)
        assert not {eid(ev_a).hex(), eid(ev_b).hex()} & {e["id"] for e in events}


def test_known_fork_proof_in_other_order_does_not_start_a_sync(forked: Forked) -> None:
    acme, evil = forked.acme, forked.evil
    alpha = acme.nodes[0]
    forked.wait_frozen()
    status, raw = evil.call(alpha, logsync.HEADS_PATH, logsync.Heads((), ()).to_wire())
    assert status == 200
    mine = logsync.Heads.from_wire(raw)
    assert len(mine.forks) == 1
    a, b = mine.forks[0]
    # alpha's own heads back, and its own fork proof with the two events swapped, as beta holds it:
    # nothing alpha lacks, so nothing to sync for.
    evil.serve({"*": []}, forks=[(b, a)])
    before = evil.heads_requests(alpha.id)
    status, _ = evil.call(alpha, logsync.HEADS_PATH, logsync.Heads(mine.heads, ((b, a),)).to_wire())
    assert status == 200
    holds_for(lambda: evil.heads_requests(alpha.id) <= before, 3.0,
              "alpha not syncing back for a fork proof it already holds")


# ---- 4: a removed writer -----------------------------------------------------------------------------------


def test_event_by_removed_writer_relayed_after_removal_is_refused_on_every_peer(acme: Acme) -> None:
    mallory, trudy = acme.members["mallory"], acme.members["trudy"]
    first = genuine(mallory.key, 1, GENESIS, 2)
    with EvilPeer(mallory, acme.nodes) as evil:
        evil.serve({"*": [first]})
        for n in acme.nodes:
            evil.poke(n)
        for n in acme.nodes:
            wait_for(partial(holds, n, first), WAIT, f"{n.name} to accept mallory's claim")
        acme.converged()

        acme.office.cli("remove-peer", "--home", str(acme.alpha.peer.home), "mallory")

        def revoked(n: Node) -> bool:
            revokes = [e for e in n.control_log() if e["kind"] == "member.revoke"
                       and e["fields"]["peer_id"] == mallory.peer_id]
            return bool(revokes) and "mallory" not in n.peer.peers()

        for n in acme.nodes:
            wait_for(partial(revoked, n), WAIT, f"{n.name} to apply mallory's removal")
            (rev,) = [e for e in n.control_log() if e["kind"] == "member.revoke"
                      and e["fields"]["peer_id"] == mallory.peer_id]
            assert rev["fields"]["cutoff"] == {CONTROL_LOG: 1} and rev["writer"] == acme.alpha.id
            # mallory herself is refused at the door now.
            status, body = evil.call(n, logsync.HEADS_PATH, evil.heads_for(n.id).to_wire())
            assert (status, Refusal.from_wire(body).code) == (403, "revoked")
    before = acme.converged()

    # mallory's next event, validly signed by her, relayed by trudy (a member in good standing).
    second = genuine(mallory.key, 2, eid(first), 9)
    reason = f"written by {mallory.peer_id} after its removal (last accepted seq 1)"
    with EvilPeer(trudy, acme.nodes) as relay:
        relay.certs[mallory.peer_id] = mallory.certificate.raw
        relay.serve({"*": [first, second]})
        for n in acme.nodes:
            relay.poke(n)
        for n in acme.nodes:
            wait_for(partial(more_lines, n, "log.refused", mallory.peer_id, reason, 0), WAIT,
                     f"{n.name} to refuse mallory's event after her removal")
            assert (2, (eid(second),)) in relay.pulls(n.id, mallory.peer_id)
    assert acme.converged() == before

    expect = [{"verdict": "refused", "feed": mallory.peer_id, "source": trudy.peer_id, "reason": reason}]
    for n in acme.nodes:
        assert_healthy_and_alerted(acme, n, expect, cli=True)
        events = office_log(acme, n, cli=True)
        mallorys = [(e["seq"], e["id"]) for e in events if e["writer"] == mallory.peer_id]
        assert mallorys == [(1, eid(first).hex())], (n.name, mallorys)


def test_a_member_relaying_a_public_revocation_with_its_own_cutoff_erases_nothing(acme: Acme) -> None:
    """Issue 14, finding 1: after any remove-peer the revocation is public in the control log. A storage-only
    member running modified software wrote it again into its own feed with an empty cutoff, and every peer
    dropped every event the removed peer had ever written (its member.adds, the node keys it sealed).
    Now only an admin writes a removal, and the cutoff is the one signed inside the revocation."""
    rita, stan = acme.members["rita"], acme.members["stan"]
    first = genuine(rita.key, 1, GENESIS, 3)
    accepted_everywhere(acme, rita, first)
    acme.converged()
    acme.office.cli("remove-peer", "--home", str(acme.alpha.peer.home), "rita")
    for n in acme.nodes:
        wait_for(lambda n=n: "rita" not in n.peer.peers(), WAIT, f"{n.name} to apply rita's removal")  # type: ignore[misc]
    (revocation,) = [decode_event(raw).fields["revocation"] for raw in read_control_events(acme.alpha)
                     if decode_event(raw).kind == "member.revoke"
                     and Revocation.from_bytes(decode_event(raw).fields["revocation"],
                                               acme.alpha.ident.office.public_key).peer_id == rita.peer_id]
    relayed = make_event(stan.key, CONTROL_LOG, 1, GENESIS, now_hlc(), "member.revoke",
                         {"revocation": revocation, "cutoff": {}}).raw
    refused_everywhere(acme, stan, relayed, "is not an admin and cannot write a member's removal")
    for n in acme.nodes:
        assert holds(n, first), f"{n.name} dropped rita's claim"


def test_a_term_no_honest_peer_can_follow_is_refused_on_every_peer(acme: Acme) -> None:
    """Issue 14, finding 2: a coordinator-role member claiming term 2**64-1 in the control log made the next
    honest claim impossible to write, and every schedule stopped for good (the term was persisted)."""
    cora = acme.members["cora"]
    refused_everywhere(acme, cora, genuine(cora.key, 1, GENESIS, 2**64 - 1), "term must be an integer from 1")


def test_a_start_of_a_coming_slot_counts_only_from_a_granted_agent(acme: Acme) -> None:
    """Issue 14, finding 4: slot job ids are predictable, and any agent-role member could write the start of
    a coming slot's job under a claimed term: the coordinator took the slot as run and skipped it, and the
    missed-backup alert stayed silent. Such a start now counts only from a granted agent of the node."""
    ursula, ned = acme.members["ursula"], acme.members["ned"]
    alpha = acme.alpha
    acme.office.cli("node", "add", "payroll", "--home", str(alpha.peer.home))
    claim = genuine(ursula.key, 1, GENESIS, 20)
    start = node_event(ned.key, "node:payroll", 1, GENESIS, "job.started", {
        "job": "payroll-slot", "node": "payroll", "agent": ned.peer_id, "term": 20,
        "coordinator": ursula.peer_id, "deadline": int(time.time()) + 3600, "job_kind": "backup"})
    accepted_everywhere(acme, ursula, claim)
    accepted_everywhere(acme, ned, start, "node:payroll")

    def known(n: Node) -> bool:
        return bool(n.peer.api("GET", "/v1/ui/job?job=payroll-slot")[0] == 200)

    # Accepted on merge (ned has the agent role), but not a job: ned is no agent of payroll.
    assert not any(known(n) for n in acme.nodes)
    # Granted, the same start is what an agent whose coordinator died before its dispatch spread leaves.
    acme.office.cli("grant", "payroll", "ned", "--home", str(alpha.peer.home))
    for n in acme.nodes:
        wait_for(partial(known, n), WAIT, f"{n.name} to count the start of a granted agent")


def accepted_everywhere(acme: Acme, member: Identity, raw: bytes, log: str = CONTROL_LOG) -> None:
    """`member` serves `raw` in its own feed of `log`: every daemon holds it in that log."""
    def held(n: Node) -> bool:
        return eid(raw).hex() in {e["id"] for e in n.peer.api("GET", f"/v1/log?log={log}")[1]}

    with EvilPeer(member, acme.nodes) as evil:
        evil.serve({"*": [raw]})
        for n in acme.nodes:
            evil.poke(n)
        for n in acme.nodes:
            wait_for(partial(held, n), WAIT, f"{n.name} to hold {member.certificate.name}'s event in {log}")


def refused_everywhere(acme: Acme, member: Identity, raw: bytes, reason: str) -> None:
    """`member` (modified software, its own key) serves `raw` in its own feed: every daemon refuses it with
    `reason`, alerts, stays healthy, and the logs do not move."""
    before = acme.converged()
    with EvilPeer(member, acme.nodes) as evil:
        evil.serve({"*": [raw]})
        for n in acme.nodes:
            evil.poke(n)
        for n in acme.nodes:
            wait_for(partial(more_lines, n, "log.refused", member.peer_id, reason, 0), WAIT,
                     f"{n.name} to refuse {member.certificate.name}'s event")
    assert acme.converged() == before
    for n in acme.nodes:
        assert not holds(n, raw)
        assert_healthy_and_alerted(acme, n, [{"verdict": "refused", "feed": member.peer_id,
                                              "source": member.peer_id, "reason": reason}])


def read_control_events(node: Node) -> list[bytes]:
    """The raw control-log events a daemon stored (its events.db, read beside the running daemon)."""
    db = sqlite3.connect(f"file:{node.peer.home / 'events.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT raw FROM events WHERE log = ?", (CONTROL_LOG,))]
    finally:
        db.close()


# ---- 5: a re-encoded event ----------------------------------------------------------------------------


def test_reencoded_event_is_not_a_fork(acme: Acme) -> None:
    victor, trudy = acme.members["victor"], acme.members["trudy"]
    first = genuine(victor.key, 1, GENESIS, 11)
    with EvilPeer(victor, acme.nodes) as evil:
        evil.serve({"*": [first]})
        for n in acme.nodes:
            evil.poke(n)
        for n in acme.nodes:
            wait_for(partial(holds, n, first), WAIT, f"{n.name} to accept victor's claim")
    before = acme.converged()

    # trudy, without victor's key, shows victor's event with its two outer fields in the other order:
    # the same signed body, the same signature, other bytes, so another event id.
    outer = codec.unpack_map(first, "test event")
    reencoded = codec.pack({"s": outer["s"], "e": outer["e"]})
    assert reencoded != first and codec.unpack_map(reencoded, "test event") == outer
    with EvilPeer(trudy, acme.nodes) as relay:
        relay.certs[victor.peer_id] = victor.certificate.raw
        relay.serve({"*": [reencoded]})
        for n in acme.nodes:
            # It syncs (and must not take the bytes for a fork), or it sees nothing new at all.
            relay.settle(n, timeout=5.0, required=False)
    for n in acme.nodes:
        assert not lines_about(n.peer, "log.fork", victor.peer_id, ""), f"{n.name} froze victor's feed"
        assert eid(first).hex() in ids_in_log(n)
    assert acme.converged() == before


# ---- 6: who may write in a backup node's log ---------------------------------------------------------


def node_event(key: SigningKey, log: str, seq: int, prev: bytes, kind: str, fields: dict[str, Any]) -> bytes:
    return make_event(key, log, seq, prev, now_hlc(), kind, fields).raw


def test_a_node_log_takes_each_kind_from_its_role_and_counts_dispatches_of_claimed_terms(acme: Acme) -> None:
    sybil, oscar, walter = acme.members["sybil"], acme.members["oscar"], acme.members["walter"]
    alpha = acme.alpha
    acme.office.cli("node", "add", "ledger", "--home", str(alpha.peer.home))
    acme.converged()
    log = "node:ledger"

    def dispatch(key: SigningKey, seq: int, prev: bytes, job: str, term: int) -> bytes:
        return node_event(key, log, seq, prev, "job.dispatched", {
            "job": job, "node": "ledger", "agent": key.peer_id, "coordinator": key.peer_id, "term": term,
            "deadline": int(time.time()) + 3600, "job_kind": "backup"})

    # Refused on merge, the same on every peer: a storage-only member dispatching, and a member logging
    # a job's end in another agent's name.
    by_sybil = dispatch(sybil.key, 1, GENESIS, "sybil-job", 1)
    by_oscar = node_event(oscar.key, log, 1, GENESIS, "job.done", {"job": "j", "node": "ledger", "agent": alpha.id})
    refusals = [(sybil, by_sybil, f"{sybil.peer_id} has no coordinator role and cannot write job.dispatched"),
                (oscar, by_oscar, f"job.done names '{alpha.id}' as its agent, not its writer {oscar.peer_id}")]
    # Accepted on merge (walter may coordinate), but a dispatch under a term walter never claimed is no
    # dispatch: any member could otherwise have a coming slot skipped. Once he claims a term, his
    # dispatch under it counts.
    skipped = dispatch(walter.key, 1, GENESIS, "slot-to-skip", 1)
    claim = genuine(walter.key, 1, GENESIS, 12)
    counted = dispatch(walter.key, 2, eid(skipped), "walter-job", 12)
    for member, raw, reason in refusals:
        with EvilPeer(member, acme.nodes) as evil:
            evil.serve({"*": [raw]})
            for n in acme.nodes:
                evil.poke(n)
            for n in acme.nodes:
                wait_for(partial(more_lines, n, "log.refused", member.peer_id, reason, 0), WAIT,
                         f"{n.name} to refuse: {reason}")
    with EvilPeer(walter, acme.nodes) as evil:
        evil.serve({"*": [skipped, claim, counted]})
        for n in acme.nodes:
            evil.poke(n)

        def holds_both(n: Node) -> bool:
            held = {e["id"] for e in n.peer.api("GET", f"/v1/log?log={log}")[1]}
            return {eid(skipped).hex(), eid(counted).hex()} <= held

        for n in acme.nodes:
            wait_for(partial(holds_both, n), WAIT, f"{n.name} to hold walter's node events")
            wait_for(partial(holds, n, claim), WAIT, f"{n.name} to hold walter's claim")
    for n in acme.nodes:
        events = n.peer.api("GET", f"/v1/log?log={log}")[1]
        assert {e["writer"] for e in events} == {walter.peer_id}, events
        assert_healthy_and_alerted(acme, n, [{"verdict": "refused", "feed": m.peer_id, "source": m.peer_id,
                                              "reason": reason} for m, _, reason in refusals])
        # The dashboard's job lookup reads the node's job states (core/jobs.fold).
        code, found = n.peer.api("GET", "/v1/ui/job?job=walter-job")
        assert (code, found) == (200, {"job": "walter-job", "node": "ledger"})
        code, found = n.peer.api("GET", "/v1/ui/job?job=slot-to-skip")
        assert code != 200, found
    acme.converged()
