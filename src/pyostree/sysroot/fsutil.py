"""Small fd-relative file helpers for the sysroot code (libglnx equivalents)."""

from __future__ import annotations

import errno
import os
import stat

from pyostree.errors import OstreeError
from pyostree.store.files import random_token

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def err(e: OSError, what: str) -> OstreeError:
    return OstreeError(f"{what}: {e.strerror or e}", errno=e.errno)


def opendirat(dfd: int, path: str, follow: bool = True) -> int:
    flags = DIR_FLAGS | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(path, flags, dir_fd=dfd)
    except OSError as e:
        raise err(e, f"opendir({path})") from None


def exists_at(dfd: int, path: str, follow: bool = False) -> os.stat_result | None:
    try:
        return os.stat(path, dir_fd=dfd, follow_symlinks=follow)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as e:
        raise err(e, f"fstatat({path})") from None


def mkdir_p_at(dfd: int, path: str, mode: int = 0o755) -> None:
    """``glnx_shutil_mkdir_p_at``: create missing components with *mode* (umask applies)."""
    parts = [p for p in path.split("/") if p]
    cur = ""
    for p in parts:
        cur = f"{cur}/{p}" if cur else p
        try:
            os.mkdir(cur, mode, dir_fd=dfd)
        except FileExistsError:
            st = exists_at(dfd, cur, follow=True)
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise OstreeError(f"mkdir({cur}): File exists", errno=errno.EEXIST) from None
        except OSError as e:
            raise err(e, f"mkdir({cur})") from None


def rm_rf_at(dfd: int, path: str) -> None:
    """Remove *path* (file, symlink or tree) below *dfd*; missing is fine."""
    st = exists_at(dfd, path)
    if st is None:
        return
    try:
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(path, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                _clear_immutable(fd)
            finally:
                os.close(fd)
            import shutil

            shutil.rmtree(path, dir_fd=dfd)
        else:
            os.unlink(path, dir_fd=dfd)
    except OSError as e:
        raise err(e, f"Removing {path}") from None


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _clear_immutable(fd: int) -> None:
    try:
        set_immutable(fd, False)
    except OstreeError:
        pass


FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def set_immutable(fd: int, on: bool) -> None:
    """chattr +i / -i on a directory fd; filesystems without the flag are ignored."""
    import array
    import fcntl

    buf = array.array("l", [0])
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        raise err(e, "ioctl(FS_IOC_GETFLAGS)") from None
    cur = buf[0]
    new = (cur | FS_IMMUTABLE_FL) if on else (cur & ~FS_IMMUTABLE_FL)
    if new == cur:
        return
    buf[0] = new
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf, False)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        raise err(e, "ioctl(FS_IOC_SETFLAGS)") from None


def replace_contents_at(dfd: int, path: str, data: bytes, mode: int = 0o644,
                        fsync: bool = False) -> None:
    """Atomically replace *path* (write a temporary file, then rename)."""
    parent, _, name = path.rpartition("/")
    tmp = f"{parent + '/' if parent else ''}.{name}.{random_token(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     mode, dir_fd=dfd)
    except OSError as e:
        raise err(e, f"Writing {path}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchmod(fd, mode)
            if fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as e:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise err(e, f"Writing {path}") from None


def read_text_at(dfd: int, path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        raise err(e, f"open({path})") from None
    with open(fd, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OstreeError(f"{path}: Invalid UTF-8") from None


def symlink_at_replace(target: str, dfd: int, path: str) -> None:
    """Create symlink *path* -> *target* via ``PATH.tmp`` and rename (atomic)."""
    tmp = path + ".tmp"
    try:
        os.unlink(tmp, dir_fd=dfd)
    except OSError:
        pass
    try:
        os.symlink(target, tmp, dir_fd=dfd)
        os.rename(tmp, path, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as e:
        raise err(e, f"symlinkat({path})") from None
