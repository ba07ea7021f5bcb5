"""jobs: backups of a backup node, asked of the coordinator and dispatched by it to an agent.

- JobRequest (any member -> coordinator): back this node up now.
- Dispatch (coordinator -> agent): run this job (a backup, or a retention job: forget by the
  node's policy, then prune), under this fencing token, before the deadline.
- Logon (agent -> coordinator): a fresh challenge, which the agent's ActAsRequest carries back
  under its own signature: logging on proves the key now, whatever the clocks say.
- ActAsRequest / ActAsReply: the coordinator's signed act-as token for the job.
- JobProgress (agent -> coordinator): a heartbeat with the job's counters.
- JobReport (agent -> coordinator): how the job ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from peerbackup.core.nodelog import MAX_ATTEMPT
from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire
from peerbackup.net.proto.coordinator import Token, _token

REQUEST_PATH = "/v1/jobs/request"
DISPATCH_PATH = "/v1/jobs/dispatch"
REPORT_PATH = "/v1/jobs/report"
ACT_AS_PATH = "/v1/jobs/act-as"
LOGON_PATH = "/v1/jobs/logon"
RUNNING_PATH = "/v1/jobs/running"
PROGRESS_PATH = "/v1/jobs/progress"
STATES = ("done", "failed")
BACKUP, RETENTION = "backup", "retention"
KINDS = (BACKUP, RETENTION)
CHALLENGE_SIZE = 32
_JOB = re.compile(r"[a-z0-9-]{1,64}")

MAX_DIGEST = 64


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
    kind: str = BACKUP
    prune: bool = False  # a retention job: prune after forgetting
    attempt: int = 1  # which attempt of the job this is (core/jobs.py counts only the current one's end)
    # The digest of the office configuration (nodes, data sets, policies) the coordinator dispatched under:
    # an agent whose own differs catches up first. Empty from coordinators before it (and not sent then).
    config: bytes = b""

    def to_wire(self) -> bytes:
        obj: dict[str, object] = {"job": self.job, "node": self.node, "token": list(self.token),
                                  "deadline": self.deadline_ms, "kind": self.kind, "prune": self.prune,
                                  "attempt": self.attempt}
        if self.config:
            obj["config"] = self.config
        return _wire.encode(obj)

    @classmethod
    def from_wire(cls, data: bytes) -> Dispatch:
        what = "dispatch"
        obj = _wire.decode(data, what)
        kind = obj.get("kind", BACKUP)
        if kind not in KINDS:
            raise Malformed(f"{what}: unknown job kind {kind!r}")
        prune = obj.get("prune", False)
        if not isinstance(prune, bool):
            raise Malformed(f"{what}: field 'prune' must be true or false")
        attempt = obj.get("attempt", 1)  # dispatches before attempts were numbered: the first
        if not isinstance(attempt, int) or isinstance(attempt, bool) or not 1 <= attempt <= MAX_ATTEMPT:
            raise Malformed(f"{what}: field 'attempt' must be a whole number from 1 to {MAX_ATTEMPT}")
        config = obj.get("config", b"")
        if not isinstance(config, bytes) or len(config) > MAX_DIGEST:
            raise Malformed(f"{what}: field 'config' must be a digest of at most {MAX_DIGEST} bytes")
        return cls(_job(obj, what), _node(obj, what), _token(obj.get("token"), what),
                   _wire.get(obj, "deadline", int, what), kind, prune, attempt, config)


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
    challenge: bytes = b""  # from Logon: the request's signature over it is the agent's response

    def to_wire(self) -> bytes:
        return _wire.encode({"node": self.node, "job": self.job, "challenge": self.challenge})

    @classmethod
    def from_wire(cls, data: bytes) -> ActAsRequest:
        what = "act-as request"
        obj = _wire.decode(data, what)
        return cls(_node(obj, what), _job(obj, what), _challenge(obj, what))


def _challenge(obj: dict[object, object], what: str) -> bytes:
    value = obj.get("challenge")
    if not isinstance(value, bytes) or len(value) != CHALLENGE_SIZE:
        raise Malformed(f"{what}: field 'challenge' must be {CHALLENGE_SIZE} bytes (log on first)")
    return value


@dataclass(frozen=True)
class Logon:
    """Agent -> coordinator: I will act as this node for this job; the answer carries a challenge."""

    node: str
    job: str
    challenge: bytes = b""  # set in the coordinator's answer

    def to_wire(self) -> bytes:
        return _wire.encode({"node": self.node, "job": self.job, "challenge": self.challenge})

    @classmethod
    def from_wire(cls, data: bytes, answer: bool = False) -> Logon:
        what = "logon"
        obj = _wire.decode(data, what)
        return cls(_node(obj, what), _job(obj, what), _challenge(obj, what) if answer else b"")


@dataclass(frozen=True)
class JobProgress:
    """Agent -> coordinator, every progress_interval: how far the job is (a stalled job is re-dispatched)."""

    job: str
    node: str
    files: int  # files done
    nbytes: int  # bytes read (or found unchanged)
    files_seen: int  # found so far by the scan: the totals grow until the scan ends
    nbytes_seen: int
    errors: int = 0
    waiting: bool = False  # for another job of the agent's to end: alive, not stalled
    files_total: int = -1  # counted before the backup (-1: not known, e.g. a retention job)
    nbytes_total: int = -1

    def fields(self) -> dict[str, object]:
        return {"job": self.job, "node": self.node, "files": self.files, "bytes": self.nbytes,
                "files_seen": self.files_seen, "bytes_seen": self.nbytes_seen, "errors": self.errors,
                "waiting": self.waiting, "files_total": self.files_total, "bytes_total": self.nbytes_total}

    def to_wire(self) -> bytes:
        return _wire.encode(self.fields())

    @classmethod
    def from_wire(cls, data: bytes) -> JobProgress:
        return cls.parse(_wire.decode(data, "job progress"))

    @classmethod
    def parse(cls, obj: dict[object, object]) -> JobProgress:
        what = "job progress"
        counts = [_wire.get(obj, k, int, what) for k in ("files", "bytes", "files_seen", "bytes_seen", "errors")]
        totals: list[int] = []
        for k in ("files_total", "bytes_total"):
            t = obj.get(k, -1)  # agents before totals sent none
            if not isinstance(t, int) or isinstance(t, bool) or t < -1:
                raise Malformed(f"{what}: bad {k}")
            totals.append(t)
        if any(c < 0 for c in counts):
            raise Malformed(f"{what}: negative counter")
        files, nbytes, files_seen, nbytes_seen, errors = counts
        return cls(_job(obj, what), _node(obj, what), files, nbytes, files_seen, nbytes_seen, errors,
                   _wire.get(obj, "waiting", bool, what), totals[0], totals[1])


@dataclass(frozen=True)
class RunningJob:
    agent: str
    elapsed_ms: int
    progress: JobProgress


@dataclass(frozen=True)
class Running:
    """Coordinator -> any member: the jobs running now, as their heartbeats last said (for dashboards)."""

    jobs: tuple[RunningJob, ...] = ()

    def to_wire(self) -> bytes:
        return _wire.encode({"jobs": [{"agent": r.agent, "elapsed": r.elapsed_ms, "progress": r.progress.fields()}
                                      for r in self.jobs]})

    @classmethod
    def from_wire(cls, data: bytes) -> Running:
        what = "running jobs"
        out = []
        for item in _wire.items(_wire.decode(data, what), "jobs", dict, what):
            progress = item.get("progress")
            if not isinstance(progress, dict):
                raise Malformed(f"{what}: a job without progress")
            elapsed = _wire.get(item, "elapsed", int, what)
            if elapsed < 0:
                raise Malformed(f"{what}: negative elapsed time")
            out.append(RunningJob(_wire.get(item, "agent", str, what), elapsed, JobProgress.parse(progress)))
        return cls(tuple(out))


@dataclass(frozen=True)
class ActAsReply:
    token: bytes
    # The hybrid logical clock of the coordinator's act_as.issued event: the agent's clock moves past it, so
    # its job.started lists after the events that let it start. 0 from coordinators before it (not sent).
    hlc: int = 0

    def to_wire(self) -> bytes:
        obj: dict[str, object] = {"token": self.token}
        if self.hlc:
            obj["hlc"] = self.hlc
        return _wire.encode(obj)

    @classmethod
    def from_wire(cls, data: bytes) -> ActAsReply:
        what = "act-as reply"
        obj = _wire.decode(data, what)
        hlc = obj.get("hlc", 0)
        if not isinstance(hlc, int) or isinstance(hlc, bool) or not 0 <= hlc < 2 ** 63:
            raise Malformed(f"{what}: field 'hlc' must be a whole number from 0 to 2**63 - 1")
        return cls(_wire.small_bytes(obj, "token", what), hlc)
