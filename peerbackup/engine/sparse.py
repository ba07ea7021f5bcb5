"""Sparse files: where a file's data is, and where its holes are.

A file node's content is its *data stream*: the file's bytes with the holes left
out, cut into chunks. Its holes are (offset, length) ranges of zeros in the file,
sorted and apart; the data stream fills the rest of the file in order (a chunk may
span a hole). Backup finds holes with SEEK_DATA/SEEK_HOLE and takes long aligned
runs of zeros as holes too; restore truncates the file to its size and writes
only the data, so holes stay holes (or, with --no-sparse, writes the zeros).

Synchronous: pure functions, and a reader over a descriptor it is handed (it
neither opens nor closes files).
"""

from __future__ import annotations

import bisect
import errno
import os
from collections.abc import Iterable, Iterator

Hole = tuple[int, int]  # (offset in the file, length)

# A run of zeros is taken as a hole when it covers a whole block of this size
# aligned at a multiple of it. 1 MiB: the default average chunk and the
# allocation slack a restore is allowed (a zero run of any length leaves at most
# two partial blocks, under 2 MiB, as data). Smaller blocks would turn the empty
# pages of databases and office files into holes and fragment restored files for
# no real gain; bigger ones would leave more zeros allocated. Checking costs one
# memcmp per MiB, after a three-byte sample has rejected almost every data block.
ZERO_RUN = 1024 * 1024
_ZEROS = bytes(ZERO_RUN)
_FILL = 1024 * 1024  # zeros written per call by fill_holes


def data_extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """(start, end) of each range of the file that may hold data, from SEEK_DATA/SEEK_HOLE; None when the
    file system cannot say (then the whole file counts as data)."""
    if not hasattr(os, "SEEK_DATA"):
        return None
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if end <= start:  # a file system that contradicts itself: trust none of it
                return None
            out.append((start, end))
            pos = end
    except OSError:
        return None
    return out


def is_zero(block: memoryview) -> bool:
    """Whether a block is all zeros; a few sampled bytes reject data blocks without the full compare."""
    n = len(block)
    if block[0] or block[n // 2] or block[n - 1]:
        return False
    return bytes(block) == (_ZEROS if n == ZERO_RUN else bytes(n))


def may_have_holes(size: int, allocated: int) -> bool:
    """Whether DataReader could find a hole in a file: one that allocates less than its size, or one long
    enough to hold a whole aligned ZERO_RUN of zeros. Any other file is read plainly: the reader's
    bookkeeping cost 3 s of CPU on 50,000 small files."""
    return size >= ZERO_RUN or allocated < size


class DataReader:
    """The data stream of a file (readinto, for the chunker): its bytes with the holes left out.

    Reads with pread from the descriptor it is handed. Holes are the file system's
    (asked only when the file allocates less than its size, so an ordinary file
    costs no extra system call) and every ZERO_RUN-aligned block of zeros read.
    Data that reaches the size given is read on to end of file, so a file that
    grew while read is read whole, as a plain read would (backup then reports it
    changed).
    """

    def __init__(self, fd: int, size: int, allocated: int | None = None, zero_run: int = ZERO_RUN) -> None:
        self.fd, self.size, self.zero_run = fd, size, zero_run
        self._probe = allocated is None or allocated < size
        self._extents: list[tuple[int, int]] | None = None
        self._next = 0  # index of the extent after the current one
        self._end = 0  # end of the current extent (-1: read to end of file)
        self.pos = 0  # file offset of the next byte to read
        self.delivered = 0  # data-stream bytes handed out
        self._pending = memoryview(b"")
        self._block: bytearray | None = None
        self._holes: list[tuple[int, int, int]] = []  # (offset, length, data-stream offset) in file order

    def _start(self) -> None:
        extents = data_extents(self.fd, self.size) if self._probe else None
        self._extents = [(0, -1)] if extents is None else extents
        if extents and extents[-1][1] >= self.size:  # data up to the size: read on to end of file
            self._extents[-1] = (extents[-1][0], -1)
        self._advance()

    def _advance(self) -> bool:
        """Move to the next extent, recording the hole before it; False at the end of the file's data."""
        assert self._extents is not None
        if self._next >= len(self._extents):
            self._hole(self.pos, self.size - self.pos)  # a trailing hole (nothing when pos reached size)
            self.pos = self._end = max(self.pos, self.size)
            return False
        start, self._end = self._extents[self._next]
        self._next += 1
        self._hole(self.pos, start - self.pos)
        self.pos = start
        return True

    def _hole(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        if self._holes and self._holes[-1][0] + self._holes[-1][1] == offset:
            o, n, d = self._holes[-1]
            self._holes[-1] = (o, n + length, d)
        else:
            self._holes.append((offset, length, self.delivered))

    def readinto(self, view: memoryview, /) -> int:
        if self._extents is None:
            self._start()
        z = self.zero_run
        while True:
            if self._pending:
                n = min(len(view), len(self._pending))
                view[:n] = self._pending[:n]
                self._pending = self._pending[n:]
                self.delivered += n
                return n
            if self._end >= 0 and self.pos >= self._end and not self._advance():
                return 0
            to_boundary = z - self.pos % z
            if to_boundary < z or 0 <= self._end < self.pos + z:
                # Up to the next block boundary (or the range's end), so the blocks after it are read whole.
                want = min(len(view), to_boundary if self._end < 0 else min(to_boundary, self._end - self.pos))
                return self._took(os.preadv(self.fd, [view[:want]], self.pos))
            # A whole aligned block: read it where it can be looked at before it is handed out.
            direct = len(view) >= z
            target = view[:z] if direct else self._scratch()
            got = os.preadv(self.fd, [target], self.pos)
            if got == z and is_zero(target):
                self._hole(self.pos, z)
                self.pos += z
                continue
            if direct or not got:
                return self._took(got)
            self.pos += got
            self._pending = target[:got]

    def _scratch(self) -> memoryview:
        if self._block is None:
            self._block = bytearray(self.zero_run)
        return memoryview(self._block)

    def _took(self, got: int) -> int:
        self.pos += got
        self.delivered += got
        if got == 0:
            # End of file before the end of the data range: the file shrank; no trailing hole is invented.
            assert self._extents is not None
            self._end, self._next = self.pos, len(self._extents)
            self.size = min(self.size, self.pos)
        return got

    def layout(self, data_len: int) -> tuple[int, list[Hole]]:
        """(size, holes) of the file whose data stream is the first data_len bytes handed out: what a
        snapshot records, consistent (data + holes = size) even when reading stopped early."""
        holes = [(o, n) for o, n, d in self._holes if d <= data_len]
        return data_len + sum(n for _, n in holes), holes


class HoleMap:
    """Places a file's data stream around its holes: data-stream offset -> file ranges."""

    def __init__(self, holes: Iterable[Hole]) -> None:
        self.holes = list(holes)
        self._data_at: list[int] = []  # data-stream offset at which each hole sits
        self._skip = [0]  # bytes of holes before hole i
        for o, n in self.holes:
            self._data_at.append(o - self._skip[-1])
            self._skip.append(self._skip[-1] + n)

    def ranges(self, data_off: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(file offset, offset in the piece, length) of each part of a piece of the data stream."""
        i = bisect.bisect_right(self._data_at, data_off)  # the holes that sit before this byte
        done = 0
        while done < length:
            d = data_off + done
            room = self._data_at[i] - d if i < len(self._data_at) else length - done
            n = min(length - done, room)
            if n > 0:
                yield d + self._skip[i], done, n
                done += n
            i += 1


def pwrite(fd: int, data: bytes | bytearray | memoryview, data_off: int, holes: HoleMap | None) -> None:
    """Write a piece of a file's data stream where it belongs in the file."""
    if holes is None:
        os.pwrite(fd, data, data_off)
        return
    view = memoryview(data)
    for file_off, at, n in holes.ranges(data_off, len(view)):
        os.pwrite(fd, view[at:at + n], file_off)


def fill_holes(fd: int, holes: Iterable[Hole]) -> None:
    """Write zeros over the holes (restore --no-sparse: file systems without holes, or a wish for
    allocated files)."""
    zeros = memoryview(bytes(_FILL))
    for o, n in holes:
        done = 0
        while done < n:
            done += os.pwrite(fd, zeros[:min(_FILL, n - done)], o + done)


def expand(holes: Iterable[Hole], pieces: Iterable[bytes]) -> Iterator[bytes]:
    """A file's bytes from the pieces of its data stream, its holes as zeros (a download)."""
    todo = iter(holes)
    nxt = next(todo, None)
    pos = 0
    for piece in pieces:
        view = memoryview(piece)
        while True:
            while nxt is not None and nxt[0] <= pos:
                yield from _zeros(nxt[1])
                pos += nxt[1]
                nxt = next(todo, None)
            if not view:
                break
            n = len(view) if nxt is None else min(len(view), nxt[0] - pos)
            yield bytes(view[:n])
            view, pos = view[n:], pos + n
    while nxt is not None:  # the holes after the last data
        yield from _zeros(nxt[1])
        nxt = next(todo, None)


def _zeros(n: int) -> Iterator[bytes]:
    while n > 0:
        yield bytes(min(n, _FILL))
        n -= _FILL
