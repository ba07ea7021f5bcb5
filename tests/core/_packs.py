"""Helper shared by the core tests: a finished pack as one bytes object."""

from __future__ import annotations

from peerbackup.core.crypto import Random
from peerbackup.core.keys import KeySet
from peerbackup.core.pack import PackWriter


def finish_pack(w: PackWriter, keys: KeySet, rand: Random) -> tuple[bytes, bytes]:
    """PackWriter.finish() with the pack joined.

    finish() hands the pack over as a list of pieces (blob envelopes, sealed header,
    trailer) so a store can write it without a second copy; readers see one file.
    """
    pack_id, out = w.finish(keys, rand)
    data = out if isinstance(out, bytes) else b"".join(out)
    return pack_id, data
