"""Content-defined chunking (FastCDC) over file objects.

Synchronous and pure: it reads the file object it is handed and yields chunks,
so the same code serves a local file, a pipe or a test's BytesIO.

Chunks are memoryviews into a block buffer that is never reused, so no chunk
is copied (a copy costs as much as the chunking itself); a chunk keeps its
block alive until it is dropped. pyfastcdc's own cut_stream is 3x slower than
cutting read blocks with cut_buf, which is why the streaming is done here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

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


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Chunker:
    def __init__(self, params: ChunkerParams, block_size: int = 2 * MiB) -> None:
        params.validate()
        self.params = params
        # Any block size gives the same cuts (the last, possibly forced, cut of a
        # block is carried into the next); small blocks keep memory low, since a
        # chunk in flight pins its whole block.
        self.block_size = block_size
        self._cdc = FastCDC(
            avg_size=params.avg_size, min_size=params.min_size, max_size=params.max_size,
            normalized_chunking=1,
        )

    def chunks(self, f: Readable, size_hint: int = -1) -> Iterator[memoryview]:
        """Yield the chunks of f, reading it block by block.

        size_hint (the file's expected size) lets a small file be read in one
        call into a buffer of the right size.
        """
        carry = b""
        first = True
        while True:
            want = self.block_size
            if first and 0 <= size_hint < self.block_size:
                want = size_hint + 1  # one more byte to see EOF without a second read
            first = False
            buf = bytearray(len(carry) + want)
            buf[: len(carry)] = carry
            view = memoryview(buf)
            filled = len(carry)
            eof = False
            while filled < len(buf):
                n = f.readinto(view[filled:])
                if not n:
                    eof = True
                    break
                filled += n
            if filled == 0:
                return
            data = view[:filled]
            if eof and filled <= self.params.min_size:
                # FastCDC never cuts below min_size: a small file is one chunk.
                yield data
                return
            cuts = [(c.offset, c.length) for c in self._cdc.cut_buf(data)]
            if not eof and len(cuts) > 1:
                # The last cut ends at the block's end, not at a content boundary:
                # carry it into the next block.
                last_off, _ = cuts.pop()
                carry = bytes(data[last_off:])
            elif not eof:
                carry = bytes(data)
                cuts = []
            else:
                carry = b""
            for off, length in cuts:
                yield data[off:off + length]
            if eof:
                return
