"""probe: is a data set's folder there on an agent? Asked by an admin before `dataset add`.

- PathCheck (admin -> granted agent of the node): this node, this absolute path.
- PathState (agent -> admin): what the agent found there: ok (a directory it can read), missing,
  not a directory, or not readable, with a short detail.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire

PATH = "/v1/datasets/check"
OK, MISSING, NOT_A_DIRECTORY, NOT_READABLE = "ok", "missing", "not a directory", "not readable"
STATES = (OK, MISSING, NOT_A_DIRECTORY, NOT_READABLE)
MAX_PATH = 4096  # PATH_MAX
MAX_DETAIL = 300


@dataclass(frozen=True)
class PathCheck:
    node: str
    path: str

    def to_wire(self) -> bytes:
        return _wire.encode({"node": self.node, "path": self.path})

    @classmethod
    def from_wire(cls, data: bytes) -> PathCheck:
        what = "path check"
        obj = _wire.decode(data, what)
        node, path = _wire.get(obj, "node", str, what), _wire.get(obj, "path", str, what)
        if not 0 < len(node) <= 64:
            raise Malformed(f"{what}: bad node name")
        if not path.startswith("/") or len(path) > MAX_PATH or "\0" in path:
            raise Malformed(f"{what}: the path must be absolute, at most {MAX_PATH} characters, without NUL")
        return cls(node, path)


@dataclass(frozen=True)
class PathState:
    state: str
    detail: str = ""

    def to_wire(self) -> bytes:
        return _wire.encode({"state": self.state, "detail": self.detail[:MAX_DETAIL]})

    @classmethod
    def from_wire(cls, data: bytes) -> PathState:
        what = "path state"
        obj = _wire.decode(data, what)
        state = _wire.get(obj, "state", str, what)
        if state not in STATES:
            raise Malformed(f"{what}: unknown state {state[:40]!r}")
        return cls(state, _wire.get(obj, "detail", str, what)[:MAX_DETAIL])
