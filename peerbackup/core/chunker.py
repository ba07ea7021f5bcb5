"""Content-defined chunking (FastCDC) over file objects.

Synchronous and pure: it reads the file object it is handed and yields chunks,
so the same code serves a local file, a pipe or a test's BytesIO.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

from peerbackup.errors import FormatError

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 512 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 8 * MiB

    def validate(self) -> None:
        # pyfastcdc's own limits.
        if not (64 <= self.min_size <= self.avg_size <= self.max_size):
            raise FormatError("chunker parameters", "need min <= avg <= max")
        if self.min_size > 1 * MiB or self.avg_size > 4 * MiB or self.max_size > 16 * MiB:
            raise FormatError("chunker parameters", "beyond FastCDC's limits")


class Chunker:
    def __init__(self, params: ChunkerParams) -> None:
        params.validate()
        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size, min_size=params.min_size, max_size=params.max_size,
            normalized_chunking=1,
        )

    def chunks(self, f: BinaryIO) -> Iterator[bytes]:
        """Yield the chunks of f. Each is a copy: pyfastcdc reuses its buffer."""
        for chunk in self._cdc.cut_stream(f):
            yield bytes(chunk.data)

    def chunks_of(self, data: bytes) -> Iterator[bytes]:
        for chunk in self._cdc.cut_buf(data):
            yield bytes(chunk.data)
