"""Low-level file helpers of the store: atomic writes, fd copies, xattrs, recursive removal.

Everything here works on file descriptors and names relative to them; none of it knows about
objects or repositories, so every layer above (the repository, refs, checkout, sysroot) shares it.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.objects import Xattrs

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

CHUNK = 1 << 20


_libc: Any = None  # ctypes.CDLL, imported on first use (start-up time)


def syncfs(fd: int) -> None:
    global _libc
    import ctypes

    if _libc is None:
        # the process's own symbols include libc; ctypes.util.find_library would fork ldconfig
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.syncfs(fd) != 0:
        e = ctypes.get_errno()
        raise OstreeError(f"syncfs: {os.strerror(e)}", errno=e)


def list_xattrs(path: str | int, *, dir_fd: int | None = None, follow: bool = False) -> Xattrs:
    """All xattrs of *path* (fd, or name relative to *dir_fd*) in ostree's stored form."""
    try:
        if isinstance(path, int):
            names = os.listxattr(path)
            pairs = [(n.encode("utf-8", "surrogateescape"), os.getxattr(path, n)) for n in names]
        else:
            target = path if dir_fd is None else proc_path(dir_fd, path)
            names = os.listxattr(target, follow_symlinks=follow)
            pairs = [
                (n.encode("utf-8", "surrogateescape"), os.getxattr(target, n, follow_symlinks=follow))
                for n in names
            ]
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    # like libostree (glnx read_xattr_name_array), attributes with an empty value are skipped
    return obj.normalize_xattrs([(n, v) for n, v in pairs if v])


def proc_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


def set_xattrs(target: str | int, xattrs: Xattrs, *, follow: bool = False) -> None:
    """Set each xattr; a failure is an :class:`OstreeError` naming the attribute, as
    libostree's ``Setting xattrs: fsetxattr(NAME): ...``."""
    for name, value in xattrs:
        raw = obj.xattr_name(name)
        n = raw.decode("utf-8", "surrogateescape")
        if not raw or b"\0" in raw:
            raise OstreeError(f"Setting xattrs: invalid xattr name {n!r} (empty or with a NUL byte)")
        try:
            if isinstance(target, int):
                os.setxattr(target, n, value)
            else:
                os.setxattr(target, n, value, follow_symlinks=follow)
        except OSError as e:
            raise OstreeError(f"Setting xattrs: fsetxattr({n}): {os.strerror(e.errno or 0)}",
                              errno=e.errno) from None


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def random_token(n: int) -> str:
    """*n* random alphanumerics (as glnx's temporary names); not the secrets
    module, whose imports cost start-up time."""
    return "".join(_ALNUM[b % 62] for b in os.urandom(n))


def random_name(prefix: str = "tmp.") -> str:
    return prefix + random_token(12)


def boot_id() -> str:
    env = os.environ.get("OSTREE_BOOTID")
    if env:
        return env
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"




def read_all(fd: int) -> bytes:
    parts = []
    while True:
        b = os.read(fd, CHUNK)
        if not b:
            break
        parts.append(b)
    return b"".join(parts)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]




def copy_fd(src: int, dst: int, size: int) -> None:
    off = 0
    try:
        while off < size:
            n = os.copy_file_range(src, dst, size - off, off)
            if n == 0:
                break
            off += n
        if off == size:
            return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while True:
        chunk = os.pread(src, CHUNK, off)
        if not chunk:
            break
        write_all(dst, chunk)
        off += len(chunk)


def write_file_atomic(base: str, rel: str, data: bytes, *, fsync: bool, dir_fd: int | None = None,
                       mode: int = 0o644) -> None:
    """Write *rel* (under *dir_fd* or *base*) via a temporary file and rename."""
    own = dir_fd is None
    dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if own else dir_fd
    assert dfd is not None
    try:
        d, _, name = rel.rpartition("/")
        tmp = (d + "/" if d else "") + random_name("." + name + ".")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        os.rename(tmp, rel, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        if own:
            os.close(dfd)


def rm_rf_at(dfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dfd)
    try:
        for entry in os.scandir(sub):
            if entry.is_dir(follow_symlinks=False):
                rm_rf_at(sub, entry.name)
            else:
                os.unlink(entry.name, dir_fd=sub)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=dfd)


def check_deflate_end(d: zlib._Decompress, what: str, at_eof: bool, fed: bool = True) -> None:
    """Stored objects are canonical: an archive object's payload is one whole raw-deflate
    stream and nothing after it (libostree's readers stop at the stream's end and never
    look further, so its fsck misses trailing bytes; ours does not)."""
    if d.eof and d.unused_data:
        raise OstreeError(f"Corrupted {what}: trailing data after the deflate stream")
    if at_eof and not d.eof and fed:
        raise OstreeError(f"Corrupted {what}: truncated deflate stream")


class _InflateReader:
    """A read-only stream over an archive object's raw-deflate payload."""

    def __init__(self, f: BinaryIO, offset: int, what: str) -> None:
        self._f = f
        self._f.seek(offset)
        self._d = zlib.decompressobj(-15)
        self._buf = b""
        self._eof = False
        self._fed = False
        self._what = what

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = self._f.read(CHUNK)
            try:
                if chunk:
                    self._fed = True
                    self._buf += self._d.decompress(chunk)
                else:
                    self._buf += self._d.flush()
                    self._eof = True
            except zlib.error as e:
                raise OstreeError(f"Corrupted {self._what}: {e}") from None
            check_deflate_end(self._d, self._what, self._eof, self._fed)
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _InflateReader:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

