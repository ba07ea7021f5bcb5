"""A repository in a local directory: a USB disk, a NAS or SMB mount.

Only plain immutable files and atomic renames, so it works on file systems
where SQLite's WAL does not. Every write is temp -> fsync -> rename -> fsync
directory, so a crash leaves either the whole file or none of it.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from peerbackup.errors import NoSuchObject, ObjectExists, StoreError, StoreFull
from peerbackup.storage.store import MUTABLE, FileType, Payload

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some network file systems refuse fsync on directories; the rename still happened.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _open_ro(path: Path | str) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


class _FdCache:
    """Open read-only descriptors of recently read packs, shared by threads (pread)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._busy: dict[str, int] = {}
        self._doomed: set[str] = set()
        self._lock = threading.Lock()

    def acquire(self, path: str) -> int:
        with self._lock:
            if path in self._doomed:  # deleted while another thread still reads it
                raise FileNotFoundError(path)
            fd = self._fds.get(path)
            if fd is not None:
                self._fds.move_to_end(path)
            else:
                fd = _open_ro(path)  # FileNotFoundError propagates
                self._fds[path] = fd
            self._busy[path] = self._busy.get(path, 0) + 1
            self._evict()
            return fd

    def release(self, path: str) -> None:
        with self._lock:
            n = self._busy.get(path, 0) - 1
            if n > 0:
                self._busy[path] = n
                return
            self._busy.pop(path, None)
            if path in self._doomed:
                self._doomed.discard(path)
                fd = self._fds.pop(path, None)
                if fd is not None:
                    os.close(fd)
            self._evict()

    def forget(self, path: str) -> None:
        with self._lock:
            if path in self._busy:
                self._doomed.add(path)
            elif path in self._fds:
                os.close(self._fds.pop(path))

    def _evict(self) -> None:
        for p in list(self._fds):
            if len(self._fds) <= self.size:
                break
            if p not in self._busy:
                os.close(self._fds.pop(p))


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in _FULL:
        return StoreFull(what)
    return StoreError(f"writing {what}: {exc.strerror or exc}")


class _LocalUpload:
    """LocalStore.upload(): a temp file at the top of the kind's directory (list() skips it),
    opened with the first piece; fsync and rename on commit; removed on abort or any failure,
    after which the upload refuses to go on (a later piece would start a new file)."""

    def __init__(self, store: LocalStore, ftype: FileType) -> None:
        self._store, self._ftype = store, ftype
        self._tmp: Path | None = None
        self._fd: int | None = None
        self._ended = False

    def write(self, piece: bytes | bytearray) -> None:
        what = f"{self._ftype.value}/(upload)"
        if self._ended:
            raise StoreError(f"writing {what}: the upload failed or was aborted")
        try:
            if self._fd is None:
                root = self._store.root
                base = root if self._ftype == FileType.CONFIG else root / self._ftype.value
                self._store._ensure_dir(base)
                self._tmp = base / f"{TMP_PREFIX}{secrets.token_hex(8)}"
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                                   0o666)
            view = memoryview(piece)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self.abort()
            raise _store_error(exc, what) from exc

    def commit(self, name: str) -> None:
        what = f"{self._ftype.value}/{name}"
        try:
            if self._fd is None:
                self.write(b"")
            assert self._fd is not None and self._tmp is not None
            if self._store.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._store._place(self._tmp, self._ftype, name)
            self._tmp, self._ended = None, True
        except OSError as exc:
            self.abort()
            raise _store_error(exc, what) from exc
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._ended = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


class LocalStore:
    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.fsync = fsync
        self._made: set[Path] = set()
        self._fds = _FdCache()

    def _path(self, ftype: FileType, name: str) -> Path:
        if not name or "/" in name or "\0" in name or name.startswith("."):
            raise StoreError(f"invalid object name {name!r}")
        if ftype == FileType.CONFIG:
            return self.root / "config"
        if ftype == FileType.DATA:
            # Fan out so no directory grows past a few thousand entries.
            return self.root / "data" / name[:2] / name
        return self.root / ftype.value / name

    def path(self, ftype: FileType, name: str) -> Path:
        """Where a file lives (checked name): for a holder moving it to its trash."""
        return self._path(ftype, name)

    def _ensure_dir(self, d: Path) -> None:
        if d not in self._made:
            d.mkdir(parents=True, exist_ok=True)
            self._made.add(d)

    def put(self, ftype: FileType, name: str, data: Payload) -> None:
        path = self._path(ftype, name)
        if ftype not in MUTABLE and path.exists():
            raise ObjectExists(ftype.value, name)
        tmp = path.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            self._ensure_dir(path.parent)
            with open(tmp, "wb") as f:
                if isinstance(data, bytes | bytearray):
                    f.write(data)
                else:
                    f.writelines(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            self._place(tmp, ftype, name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _store_error(exc, f"{ftype.value}/{name}") from exc
        except ObjectExists:
            tmp.unlink(missing_ok=True)
            raise

    def upload(self, ftype: FileType) -> _LocalUpload:
        """A file streamed into a temp file of the kind's directory, renamed into place on commit:
        a pack is never held whole in memory."""
        return _LocalUpload(self, ftype)

    def _place(self, tmp: Path, ftype: FileType, name: str) -> None:
        """Move a written and synced temp file to its name: the end of put() and of an upload."""
        path = self._path(ftype, name)
        if ftype not in MUTABLE and path.exists():
            raise ObjectExists(ftype.value, name)
        self._ensure_dir(path.parent)
        os.replace(tmp, path)
        if self.fsync:
            fsync_dir(path.parent)

    def get(self, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(ftype, name)
        try:
            # Restore reads one blob at a time: packs stay open between reads (they
            # are immutable), and os-level calls avoid a buffered file object per read.
            fd = self._fds.acquire(str(path)) if ftype == FileType.DATA else _open_ro(path)
            try:
                if length is None:
                    length = os.fstat(fd).st_size - offset
                if length <= 0:
                    return b""
                data = os.pread(fd, length, offset)
                while len(data) < length:  # pread may return less, e.g. on network mounts
                    more = os.pread(fd, length - len(data), offset + len(data))
                    if not more:
                        break
                    data += more
                return data
            finally:
                if ftype == FileType.DATA:
                    self._fds.release(str(path))
                else:
                    os.close(fd)
        except FileNotFoundError:
            raise NoSuchObject(ftype.value, name) from None
        except OSError as exc:
            raise StoreError(f"reading {ftype.value}/{name}: {exc.strerror or exc}") from exc

    def size(self, ftype: FileType, name: str) -> int:
        try:
            return self._path(ftype, name).stat().st_size
        except FileNotFoundError:
            raise NoSuchObject(ftype.value, name) from None

    def list(self, ftype: FileType) -> Iterator[tuple[str, int]]:
        if ftype == FileType.CONFIG:
            p = self.root / "config"
            if p.exists():
                yield "config", p.stat().st_size
            return
        base = self.root / ftype.value
        dirs = [base]
        if ftype == FileType.DATA:
            try:
                dirs = [d for d in base.iterdir() if d.is_dir()]
            except FileNotFoundError:
                return
        for d in dirs:
            try:
                with os.scandir(d) as it:
                    for entry in it:
                        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                            continue
                        try:
                            yield entry.name, entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:
                            continue
            except FileNotFoundError:
                continue

    def delete(self, ftype: FileType, name: str) -> None:
        if ftype == FileType.DATA:
            self._fds.forget(str(self._path(ftype, name)))
        try:
            self._path(ftype, name).unlink()
        except FileNotFoundError:
            pass

    def exists(self, ftype: FileType, name: str) -> bool:
        return self._path(ftype, name).exists()

    def move_out(self, ftype: FileType, name: str, dest: Path) -> bool:
        """Rename a file out of the store (a holder's trash); False if it was not there.
        An open descriptor kept for reads must not go on serving the moved file."""
        if ftype == FileType.DATA:
            self._fds.forget(str(self._path(ftype, name)))
        try:
            os.replace(self._path(ftype, name), dest)
        except FileNotFoundError:
            return False
        return True

    def damaged(self, ftype: FileType, name: str) -> bool:
        return False  # one copy: nothing else to read
