"""jobs: backups of a backup node, asked of the coordinator and dispatched by it to an agent.

- JobRequest (any member -> coordinator): back this node up now.
- Dispatch (coordinator -> agent): run this job, under this fencing token, before the deadline.
- JobReport (agent -> coordinator): how the job ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire
from peerbackup.net.proto.coordinator import Token, _token

REQUEST_PATH = "/v1/jobs/request"
DISPATCH_PATH = "/v1/jobs/dispatch"
REPORT_PATH = "/v1/jobs/report"
ACT_AS_PATH = "/v1/jobs/act-as"
STATES = ("done", "failed")
_JOB = re.compile(r"[a-z0-9-]{1,64}")


def _job(obj: dict[object, object], what: str) -> str:
    job: str = _wire.get(obj, "job", str, what)
    if not _JOB.fullmatch(job):
        raise Malformed(f"{what}: bad job id")
    return job


def _node(obj: dict[object, object], what: str) -> str:
    node: str = _wire.get(obj, "node", str, what)
    if not 0 < len(node) <= 64:
        raise Malformed(f"{what}: bad node name")
    return node


@dataclass(frozen=True)
class JobRequest:
    node: str

    def to_wire(self) -> bytes:
        return _wire.encode({"node": self.node})

    @classmethod
    def from_wire(cls, data: bytes) -> JobRequest:
        what = "job request"
        return cls(_node(_wire.decode(data, what), what))


@dataclass(frozen=True)
class JobAccepted:
    job: str
    agent: str
    token: Token

    def to_wire(self) -> bytes:
        return _wire.encode({"job": self.job, "agent": self.agent, "token": list(self.token)})

    @classmethod
    def from_wire(cls, data: bytes) -> JobAccepted:
        what = "job accepted"
        obj = _wire.decode(data, what)
        return cls(_job(obj, what), _wire.get(obj, "agent", str, what), _token(obj.get("token"), what))


@dataclass(frozen=True)
class Dispatch:
    job: str
    node: str
    token: Token  # the coordinator's fencing token: agents refuse one below the highest they know
    deadline_ms: int

    def to_wire(self) -> bytes:
        return _wire.encode({"job": self.job, "node": self.node, "token": list(self.token),
                             "deadline": self.deadline_ms})

    @classmethod
    def from_wire(cls, data: bytes) -> Dispatch:
        what = "dispatch"
        obj = _wire.decode(data, what)
        return cls(_job(obj, what), _node(obj, what), _token(obj.get("token"), what),
                   _wire.get(obj, "deadline", int, what))


@dataclass(frozen=True)
class JobReport:
    job: str
    node: str
    state: str
    snapshots: tuple[str, ...]
    message: str = ""

    def to_wire(self) -> bytes:
        return _wire.encode({"job": self.job, "node": self.node, "state": self.state,
                             "snapshots": list(self.snapshots), "message": self.message[:2000]})

    @classmethod
    def from_wire(cls, data: bytes) -> JobReport:
        what = "job report"
        obj = _wire.decode(data, what)
        state = _wire.get(obj, "state", str, what)
        if state not in STATES:
            raise Malformed(f"{what}: unknown state {state!r}")
        return cls(_job(obj, what), _node(obj, what), state, tuple(_wire.items(obj, "snapshots", str, what)),
                   _wire.get(obj, "message", str, what)[:2000])


@dataclass(frozen=True)
class ActAsRequest:
    """Agent -> coordinator: let me act as this node for this job (answered with a signed ActAs token)."""

    node: str
    job: str

    def to_wire(self) -> bytes:
        return _wire.encode({"node": self.node, "job": self.job})

    @classmethod
    def from_wire(cls, data: bytes) -> ActAsRequest:
        what = "act-as request"
        obj = _wire.decode(data, what)
        return cls(_node(obj, what), _job(obj, what))


@dataclass(frozen=True)
class ActAsReply:
    token: bytes

    def to_wire(self) -> bytes:
        return _wire.encode({"token": self.token})

    @classmethod
    def from_wire(cls, data: bytes) -> ActAsReply:
        what = "act-as reply"
        return cls(_wire.small_bytes(_wire.decode(data, what), "token", what))
