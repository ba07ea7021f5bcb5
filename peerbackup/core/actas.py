"""Act-as tokens (issue 6, groundwork): the coordinator's word that an agent may act as a node.

When a backup is due, the coordinator dispatches it to an agent; the agent asks to
act as the node, and the coordinator, after checking the grant, answers with this
token: (agent, node, job, term, expiry, scope), signed with the coordinator's own key. A
storage peer accepts writes for the node with it only when the request's signer is
the agent it names, the signer of the token held the coordinator role for that
term (the control log's coordinator claims say who), and it has not expired: a copied
token is useless to anyone else, for another node, or later. A backup job's token
("backup" scope) only adds files; deleting (forget and prune) takes a token of a
retention job the coordinator dispatched ("prune" scope). Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peerbackup.core import codec
from peerbackup.core.identity import SigningKey, is_peer_id, verify
from peerbackup.errors import FormatError, UnsupportedVersion

TOKEN_VERSION = 1
MAX_VALIDITY = 24 * 3600  # a job's window is at most 7 days, but a token is renewed, not long-lived
BACKUP, PRUNE = "backup", "prune"
SCOPES = (BACKUP, PRUNE)


@dataclass(frozen=True)
class ActAs:
    coordinator: str
    term: int
    agent: str
    node: str
    job: str
    issued: int
    expires: int
    scope: str = BACKUP
    raw: bytes = b""

    @classmethod
    def issue(cls, key: SigningKey, term: int, agent: str, node: str, job: str, now: int,
              valid_for: int, scope: str = BACKUP) -> ActAs:
        if not 0 < valid_for <= MAX_VALIDITY:
            raise FormatError("act-as token", f"validity must be 1 s to {MAX_VALIDITY} s")
        body = codec.pack({"v": TOKEN_VERSION, "coordinator": key.peer_id, "term": term, "agent": agent,
                           "node": node, "job": job, "issued": now, "expires": now + valid_for, "scope": scope})
        return cls.from_bytes(codec.pack({"body": body, "sig": key.sign(body)}), key.public_key)

    @classmethod
    def from_bytes(cls, data: bytes, coordinator_key: bytes) -> ActAs:
        """Parse and verify against the public key of the coordinator it names (the caller looks that
        key up by the unverified `coordinator_of(data)` and checks the term's claim)."""
        what = "act-as token"
        outer = codec.unpack_map(data, what)
        body, sig = codec.field(outer, "body", bytes, what), codec.field(outer, "sig", bytes, what)
        obj = codec.unpack_map(body, what)
        version = codec.field(obj, "v", int, what)
        if version > TOKEN_VERSION:
            raise UnsupportedVersion(what, version, TOKEN_VERSION)
        token = cls(coordinator=codec.field(obj, "coordinator", str, what), term=codec.field(obj, "term", int, what),
                    agent=codec.field(obj, "agent", str, what), node=codec.field(obj, "node", str, what),
                    job=codec.field(obj, "job", str, what), issued=codec.field(obj, "issued", int, what),
                    expires=codec.field(obj, "expires", int, what),
                    scope=obj.get("scope", BACKUP),  # tokens before scopes were backup tokens
                    raw=bytes(data))
        if not is_peer_id(token.coordinator) or not is_peer_id(token.agent):
            raise FormatError(what, "bad peer id")
        if token.term < 1 or not 0 < token.expires - token.issued <= MAX_VALIDITY or len(token.job) > 64:
            raise FormatError(what, "bad term, validity or job")
        if token.scope not in SCOPES:
            raise FormatError(what, "unknown scope")
        if not verify(coordinator_key, body, sig):
            raise FormatError(what, "the coordinator's signature does not verify")
        return token

    def refusal(self, node: str, signer: str, now: float, claims: list[tuple[int, str]], skew: float,
                delete: bool = False, names: Callable[[str], str] = str) -> str:
        """'' when the token lets `signer` write (or, with `delete`, delete) for `node` now, else why not
        (`names` names peers in it)."""
        if self.node != node:
            return f"the act-as token is for backup node {self.node}, not {node}"
        if self.agent != signer:
            return f"the act-as token names {names(self.agent)}, not the peer that sent it"
        if not self.issued - skew <= now <= self.expires + skew:
            return "the act-as token has expired" if now > self.expires else "the act-as token is not valid yet"
        if (self.term, self.coordinator) not in claims:
            return f"{names(self.coordinator)} was not the coordinator of term {self.term}"
        if delete and self.scope != PRUNE:
            return ("the act-as token is a backup job's, which only adds: deleting takes the token of a retention "
                    "job the coordinator dispatched")
        return ""


def coordinator_of(data: bytes) -> str:
    """Who claims to have signed a token, unverified: to find the key to verify it with."""
    return _claimed(data, "coordinator")


def job_of(data: bytes) -> str:
    """The job a token names, unverified: for a token its holder has already checked."""
    return _claimed(data, "job")


def _claimed(data: bytes, name: str) -> str:
    what = "act-as token"
    body = codec.field(codec.unpack_map(data, what), "body", bytes, what)
    return str(codec.field(codec.unpack_map(body, what), name, str, what))
