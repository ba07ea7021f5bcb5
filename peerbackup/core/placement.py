"""Where each pack lives: weighted rendezvous hashing over the storage peers. Pure, no I/O.

Every peer computes the same holders for a pack from the pack id and the list
of storage peers, so nobody has to ask everyone where a pack is; when a peer
joins or leaves, only the packs it scores highest for move (about 1/n of them).
A weight prefers always-on machines (a desktop over a laptop): with weighted
rendezvous scores, a peer of weight w wins about w/Σw of the first places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import blake3

_SCALE = float(2**64)


@dataclass(frozen=True)
class Candidate:
    peer_id: str
    weight: float = 1.0  # > 0: how much to prefer this peer
    free: int | None = None  # bytes left under its quota, None when unknown or unlimited


def score(pack_id: bytes, peer_id: str, weight: float) -> float:
    """Weighted rendezvous score (higher wins): -w / ln(u), u uniform in (0, 1) from the hash."""
    h = int.from_bytes(blake3.blake3(pack_id + b"\0" + peer_id.encode()).digest()[:8], "big")
    u = (h + 0.5) / _SCALE
    return -weight / math.log(u)


def place(pack_id: bytes, candidates: list[Candidate], replicas: int, source: str | None = None,
          size: int = 0) -> list[str]:
    """The holders of a pack, best first: `replicas` distinct peers with room for `size` bytes,
    the source machine only when there are not enough others."""
    fits = [c for c in candidates if c.weight > 0 and (c.free is None or c.free >= size)]
    ranked = sorted(fits, key=lambda c: (-score(pack_id, c.peer_id, c.weight), c.peer_id))
    others = [c.peer_id for c in ranked if c.peer_id != source]
    chosen = others[:replicas]
    if len(chosen) < replicas and source is not None and any(c.peer_id == source for c in fits):
        chosen.append(source)
    return chosen
