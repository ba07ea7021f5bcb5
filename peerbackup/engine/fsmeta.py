"""File metadata in and out of tree nodes: the one place that knows the OS.

Linux first. Calls that a platform or file system lacks (xattrs, lchown,
device nodes) degrade to doing nothing rather than failing the backup.
"""

from __future__ import annotations

import errno
import os
import stat

from peerbackup.core.tree import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Node,
)

_HAS_XATTR = hasattr(os, "listxattr")
_QUIET = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.ENODATA)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def node_type(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    if stat.S_ISFIFO(mode):
        return FIFO
    if stat.S_ISCHR(mode):
        return CHARDEV
    if stat.S_ISBLK(mode):
        return BLOCKDEV
    if stat.S_ISSOCK(mode):
        return SOCKET
    return None


def node_from_stat(name: str, st: os.stat_result, kind: str) -> Node:
    node = Node(
        name=name, type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
    )
    if kind == FILE:
        node.size = st.st_size
        if st.st_nlink > 1:
            node.links, node.dev, node.inode = st.st_nlink, st.st_dev, st.st_ino
    elif kind in (CHARDEV, BLOCKDEV):
        node.rdev = st.st_rdev
    return node


def read_xattrs(path: str) -> dict[str, bytes]:
    if not _HAS_XATTR:
        return {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
    return out


def apply_metadata(path: str, node: Node, errors: list[str], fd: int | None = None) -> None:
    """Owner, mode, xattrs and times, in the order that keeps each from undoing the last.

    With fd (a regular file's open descriptor) the calls act on it: no path walk
    in the kernel, no name swapped in between; errors still name the path.
    """
    is_link = node.type == SYMLINK
    target: str | int = path if fd is None else fd
    nofollow = {"follow_symlinks": False} if fd is None else {}
    if IS_ROOT:
        try:
            os.chown(target, node.uid, node.gid, **nofollow)
        except OSError as exc:
            errors.append(f"{path}: chown: {exc.strerror}")
    if not is_link:
        try:
            os.chmod(target, node.mode)
        except OSError as exc:
            errors.append(f"{path}: chmod: {exc.strerror}")
    if node.xattrs and _HAS_XATTR:
        for k, v in node.xattrs.items():
            try:
                os.setxattr(target, k, v, **nofollow)
            except OSError as exc:
                if exc.errno not in _QUIET:
                    errors.append(f"{path}: xattr {k}: {exc.strerror}")
    try:
        if fd is None:
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=not is_link)
        else:
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
    except (OSError, NotImplementedError) as exc:
        if not is_link:
            errors.append(f"{path}: utime: {exc}")


def make_special(path: str, node: Node) -> None:
    """Create a fifo or device node; devices need root, elsewhere they are skipped."""
    if node.type == FIFO:
        os.mkfifo(path, node.mode)
    elif node.type in (CHARDEV, BLOCKDEV) and IS_ROOT:
        flag = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
        os.mknod(path, node.mode | flag, node.rdev)


def open_for_read(path: str) -> int:
    """A read-only fd that does not update the file's access time where allowed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:
            pass  # O_NOATIME needs ownership; plain read is fine
    return os.open(path, flags)
