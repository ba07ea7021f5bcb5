"""The holder served by real daemons: who may write into a node's namespace, and what is refused."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import blake3

from peerbackup.core.actas import ActAs
from peerbackup.core.crypto import content_hash
from peerbackup.core.identity import SigningKey
from peerbackup.core.settings import Settings
from peerbackup.errors import PeerRefused
from peerbackup.net import envelope
from peerbackup.net.client import PeerClient
from peerbackup.net.proto import store as proto
from peerbackup.office.membership.home import Home
from peerbackup.storage.store import FileType
from tests.daemon.harness import Office, Peer, wait_for

RNG = random.Random(11)


def call(as_peer: Peer, target: Peer, path: str, body: bytes, upload: bytes | None = None,
         framed: bool = False, raw: bool = False) -> Any:
    """One signed request from as_peer's key to target: the store reply (with the bytes a framed
    answer carries in .data) or, with `raw`, the reply's bytes; (code, message) if refused."""
    key = Home(as_peer.home).load().key
    as_bytes = raw
    target_id, target_key = target.peer_id, Home(target.home).load().key.public_key

    async def run() -> Any:
        async with aiohttp.ClientSession() as session:
            client = PeerClient(key, Settings(request_timeout=10), time.time, RNG.randbytes, session)
            try:
                raw, rest = await client.exchange(target.address, target_id, path, body, lambda _e: target_key,
                                                  envelope.BULK_BODY, None if upload is None else [upload],
                                                  framed)
            except PeerRefused as exc:
                return exc.code, str(exc)
            if as_bytes:
                return bytes(raw)
            reply = proto.Reply.from_wire(raw)
            if framed:
                assert len(rest) == reply.size and content_hash(rest) == reply.hash
                return proto.Reply(data=bytes(rest), size=reply.size, hash=reply.hash)
            return reply

    return asyncio.run(run())


def put(as_peer: Peer, target: Peer, node: str, name: str, data: bytes, ftype: FileType = FileType.DATA,
        act_as: bytes = b"") -> Any:
    head = proto.Put(proto.FileRef(node, ftype, name), len(data), content_hash(data), act_as).to_wire()
    return call(as_peer, target, proto.PUT_PATH, head, upload=data)


def get(as_peer: Peer, target: Peer, ref: proto.FileRef, offset: int = 0, length: int = -1) -> Any:
    return call(as_peer, target, proto.GET_PATH, proto.Get(ref, offset, length).to_wire(), framed=True)


@dataclass
class Holders:
    """alpha (admin, coordinator), beta (granted agent of `accounts`), gamma (storage only, a 300K quota) and
    eve (a member never granted, never started); alpha's term and its act-as token for beta."""

    a: Peer
    b: Peer
    g: Peer
    eve: Peer
    term: int
    a_key: SigningKey
    b_key: SigningKey
    tok: bytes = b""

    def token(self, signer: SigningKey | None = None, agent: str | None = None, node: str = "accounts",
              valid: int = 3600, t: int | None = None) -> bytes:
        return ActAs.issue(signer or self.a_key, self.term if t is None else t, agent or self.b.peer_id, node,
                           "job-1", int(time.time()), valid).raw


def test_store_capabilities_and_refusals(office: Office) -> None:
    h = start_holders(office)
    name, data = agent_writes_only_with_the_coordinators_token(h)
    refused_writes_and_reads(h, name, data)
    deletes_only_with_a_prune_token_of_its_agent(h, name)
    revoked_agent_writes_no_more(office, h)


def start_holders(office: Office) -> Holders:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a)), mdns=False)
    g = office.start(office.join("gamma", office.invite(a, "--roles", "storage")), "--storage-quota", "300K",
                     mdns=False)
    eve = office.join("eve", office.invite(a))  # a member, never granted
    office.cli("node", "add", "accounts", "--home", str(a.home))
    office.cli("grant", "accounts", "beta", "--home", str(a.home))
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, g)}) == 1
             and {p.status()["coordinator"] for p in (a, b, g)} == {a.peer_id}, 20, "the grant and alpha everywhere")
    term = int(a.status()["term"])
    a_key, b_key = Home(a.home).load().key, Home(b.home).load().key
    return Holders(a, b, g, eve, term, a_key, b_key)


def agent_writes_only_with_the_coordinators_token(h: Holders) -> tuple[str, bytes]:
    """Stored, read back, listed and proven with a valid token, refused with any other; (name, data)."""
    a, b, g, term, a_key, b_key = h.a, h.b, h.g, h.term, h.a_key, h.b_key
    token = h.token
    tok = h.tok = token()
    data = RNG.randbytes(100_000)
    name = content_hash(data).hex()
    # An agent writes as the node only with the coordinator's act-as token naming it: not without one, not
    # with one for another agent or node, signed by a peer that is not the term's coordinator, or expired.
    for bad, why in ((b"", "takes the coordinator's act-as token"),
                     (token(agent=a.peer_id), "not the peer that sent it"),
                     (token(node="design"), "not accounts"),
                     (token(signer=b_key), "was not the coordinator of term"),
                     (token(t=term + 5), "was not the coordinator of term"),
                     (b"\x81\xa1x\x01", "act-as token refused")):
        code, msg = put(b, g, "accounts", name, data, act_as=bad)
        assert code == "forbidden" and why in msg, (why, msg)
    expired = ActAs.issue(a_key, term, b.peer_id, "accounts", "job-0", int(time.time()) - 7200, 60).raw
    code, msg = put(b, g, "accounts", name, data, act_as=expired)
    assert code == "forbidden" and "expired" in msg
    reply = put(b, g, "accounts", name, data, act_as=tok)
    assert isinstance(reply, proto.Reply) and reply.stored
    again = put(b, g, "accounts", name, data, act_as=tok)
    assert isinstance(again, proto.Reply) and not again.stored  # a retried upload
    got = get(b, g, proto.FileRef("accounts", FileType.DATA, name), 10, 100)
    assert isinstance(got, proto.Reply) and got.data == data[10:110]
    listed = call(a, g, proto.LIST_PATH, proto.Listing("accounts", FileType.DATA).to_wire())
    assert isinstance(listed, proto.Reply) and listed.items == ((name, len(data)),)
    nonce = RNG.randbytes(32)
    proof = call(b, g, proto.CHALLENGE_PATH,
                 proto.Challenge(proto.FileRef("accounts", FileType.DATA, name), nonce, 500, 4000).to_wire())
    assert isinstance(proof, proto.Reply) and proof.data == blake3.blake3(nonce + data[500:4500]).digest()

    return name, data


def refused_writes_and_reads(h: Holders, name: str, data: bytes) -> None:
    a, b, g, eve, tok = h.a, h.b, h.g, h.eve, h.tok
    # Refused: a member without the node's keys, bytes that do not match their name, a node name that
    # escapes, a file that is not there, the quota, an unknown node.
    code, msg = put(eve, g, "accounts", name, data)
    assert code == "forbidden" and "only its admins and granted agents" in msg
    tampered = bytearray(data)
    tampered[0] ^= 1
    code, msg = put(b, g, "accounts", name, bytes(tampered), act_as=tok)
    assert code == "store-refused" and "do not match their name" in msg
    code, msg = put(b, g, "../../etc", name, data)
    assert code == "forbidden" and "no backup node" in msg
    missing = get(b, g, proto.FileRef("accounts", FileType.DATA, "ab" * 32))
    assert isinstance(missing, tuple) and missing[0] == "no-such-file"
    big = RNG.randbytes(250_000)
    code, msg = put(b, g, "accounts", content_hash(big).hex(), big, act_as=tok)
    assert code == "store-refused" and "quota" in msg.lower()
    code, msg = put(b, g, "nosuch", name, data)
    assert code == "forbidden"
    # Bulk frames that lie: fewer bytes than the signed size, bytes that are not the signed hash, a size
    # over the limit. Nothing is stored and the holder keeps serving.
    other = RNG.randbytes(5000)
    ref = proto.FileRef("accounts", FileType.DATA, content_hash(other).hex())
    short = call(b, g, proto.PUT_PATH, proto.Put(ref, 6000, content_hash(other), tok).to_wire(), upload=other)
    assert isinstance(short, tuple) and short[0] == "malformed" and "5000 of 6000 bytes" in short[1]
    code, msg = call(b, g, proto.PUT_PATH, proto.Put(ref, 5000, bytes(32), tok).to_wire(),
                     upload=other)
    assert code == "store-refused" and "signed hash" in msg
    code, msg = call(b, g, proto.PUT_PATH, proto.Put(ref, 64 * 1024 * 1024, content_hash(other)).to_wire(),
                     upload=other)
    assert code == "malformed" and "at most" in msg
    listed = call(a, g, proto.LIST_PATH, proto.Listing("accounts", FileType.DATA).to_wire())
    assert isinstance(listed, proto.Reply) and [n for n, _ in listed.items] == [name]



def deletes_only_with_a_prune_token_of_its_agent(h: Holders, name: str) -> None:
    a, b, g, term, a_key, tok = h.a, h.b, h.g, h.term, h.a_key, h.tok
    # Deleting: a backup job's token only adds; a retention job's ("prune" scope) deletes, for its agent only.
    def delete(peer: Any, ref: proto.FileRef, act_as: bytes) -> Any:
        return call(peer, g, proto.DELETE_PATH, proto.Delete(ref, act_as=act_as).to_wire())

    ref = proto.FileRef("accounts", FileType.DATA, name)
    code, msg = delete(b, ref, tok)
    assert code == "forbidden" and "only adds" in msg
    pruner = ActAs.issue(a_key, term, b.peer_id, "accounts", "retention-1", int(time.time()), 600, "prune").raw
    code, msg = delete(a, ref, pruner)
    assert code == "forbidden" and "not the peer that sent it" in msg
    done = delete(b, ref, pruner)
    assert isinstance(done, proto.Reply) and done.stored
    listed = call(a, g, proto.LIST_PATH, proto.Listing("accounts", FileType.DATA).to_wire())
    assert isinstance(listed, proto.Reply) and listed.items == ()
    assert "store.delete" in g.log.read_text()



def revoked_agent_writes_no_more(office: Office, h: Holders) -> None:
    a, b, g, tok = h.a, h.b, h.g, h.tok
    # After revoke, beta may no longer write for the node.
    office.cli("revoke", "accounts", "beta", "--home", str(a.home))
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, g)}) == 1, 20, "the revocation on gamma")
    other = RNG.randbytes(1000)
    code, _ = put(b, g, "accounts", content_hash(other).hex(), other, act_as=tok)
    assert code == "forbidden"  # its token does not help: it holds no keys of the node any more
    for p in (g,):
        assert p.proc is not None and p.proc.poll() is None
        assert "peer.handler_failed" not in p.log.read_text()
