"""refusal: what a peer sends instead of an answer, with a reason code and a sentence."""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.net.proto import _wire

MAX_EVIDENCE = 4096  # an office-signed revocation is ~200 bytes


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    # Something the refused peer can check for itself, whoever relays it: for "revoked", the office-signed
    # revocation (a removed peer learns it was removed, though every member refuses to talk to it).
    evidence: bytes = b""

    def to_wire(self) -> bytes:
        obj: dict[str, object] = {"code": self.code, "msg": self.message}
        if self.evidence:
            obj["ev"] = self.evidence
        return _wire.encode(obj)

    @classmethod
    def from_wire(cls, data: bytes) -> Refusal:
        obj = _wire.decode(data, "refusal")
        code = _wire.get(obj, "code", str, "refusal")
        evidence = _wire.get(obj, "ev", bytes, "refusal") if "ev" in obj else b""
        if len(evidence) > MAX_EVIDENCE:
            evidence = b""  # not what a refusal carries: ignored, the refusal still stands
        return cls(code=code[:64], message=_wire.get(obj, "msg", str, "refusal")[:1000], evidence=evidence)
