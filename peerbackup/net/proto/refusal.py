"""refusal: what a peer sends instead of an answer, with a reason code and a sentence."""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.net.proto import _wire


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str

    def to_wire(self) -> bytes:
        return _wire.encode({"code": self.code, "msg": self.message})

    @classmethod
    def from_wire(cls, data: bytes) -> Refusal:
        obj = _wire.decode(data, "refusal")
        code = _wire.get(obj, "code", str, "refusal")
        return cls(code=code[:64], message=_wire.get(obj, "msg", str, "refusal")[:1000])
