"""Whiteouts during checkout: OCI/aufs ``.wh.`` entries and overlayfs passthrough.

Two independent features, both opt-in and both acting only inside the
directory that holds the marker file:

* ``--whiteouts`` (OCI/aufs layers): a file ``.wh.NAME`` removes ``NAME``
  (recursively) from what earlier checkouts put in the same destination
  directory, and ``.wh..wh..opq`` makes the directory opaque: it is emptied
  before this layer's content is written.  The markers themselves are not
  checked out.

* ``--process-passthrough-whiteouts`` (ostree >= 2022.7, PR 2717): a regular
  file ``.ostree-wh.NAME`` is checked out as an overlayfs whiteout, a
  character device 0:0 called ``NAME``, carrying the stored mode and (unless
  in user mode) owner and xattrs.  A tree checked out this way can serve as
  an overlayfs lower or upper layer that hides ``NAME`` in the layers below.

Every operation here is relative to an open directory fd and never follows a
symlink found in the destination.
"""

from __future__ import annotations

import errno
import os
import stat

from pyostree.errors import OstreeError
from pyostree.store.objects import Xattrs, xattr_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Literal

    Overwrite = Literal["none", "union", "add", "identical"]
    """What to do when the destination name already exists (see checkout.OverwriteMode)."""

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT_NAME = ".wh..wh..opq"
PASSTHROUGH_PREFIX = ".ostree-wh."

_ALLPERMS = 0o7777


def _target_name(marker: str, prefix: str, path: str, what: str) -> str:
    target = marker[len(prefix):]
    if not target:
        raise OstreeError(f"Invalid empty {what} '{path}'")
    if target in (".", "..") or "/" in target or "\0" in target:
        raise OstreeError(f"Invalid {what} '{path}': target '{target}' is not a plain file name")
    return target


def oci_whiteout_target(name: str, path: str) -> str:
    """The name ``.wh.NAME`` removes; an error for names that would leave the directory."""
    return _target_name(name, WHITEOUT_PREFIX, path, "whiteout")


def passthrough_target(name: str, path: str) -> str:
    """The device name ``.ostree-wh.NAME`` creates."""
    return _target_name(name, PASSTHROUGH_PREFIX, path, "overlayfs whiteout")


def has_opaque_marker(file_names: list[str]) -> bool:
    return any(n == OPAQUE_WHITEOUT_NAME for n in file_names)


def rm_rf_at(dfd: int, name: str) -> None:
    """Remove *name* under *dfd* recursively; a symlink is removed, never followed.

    A missing *name* is not an error.
    """
    try:
        os.unlink(name, dir_fd=dfd)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass
    except PermissionError as e:
        # EPERM is what unlink(2) of a directory reports on Linux
        if e.errno != errno.EPERM:
            raise OstreeError(f"unlinkat({name}): {os.strerror(e.errno or 0)}", errno=e.errno) from None
    try:
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return
    except OSError as e:
        raise OstreeError(f"opendir({name}): {os.strerror(e.errno or 0)}", errno=e.errno) from None
    try:
        clear_dir(sub)
    finally:
        os.close(sub)
    try:
        os.rmdir(name, dir_fd=dfd)
    except OSError as e:
        raise OstreeError(f"rmdir({name}): {os.strerror(e.errno or 0)}", errno=e.errno) from None


def clear_dir(dfd: int) -> None:
    """Remove everything inside the open directory *dfd*."""
    with os.scandir(dfd) as it:
        names = [e.name for e in it]
    for n in names:
        rm_rf_at(dfd, n)


def apply_oci_whiteout(dfd: int, marker: str, path: str) -> None:
    """Process ``.wh.NAME`` (already known to have the prefix) in directory *dfd*."""
    if marker == OPAQUE_WHITEOUT_NAME:
        return  # handled when the directory was created
    rm_rf_at(dfd, oci_whiteout_target(marker, path))


# ---------------------------------------------------------------------------
# overlayfs passthrough


def _set_node_xattrs(proc: str, xattrs: Xattrs, path: str) -> None:
    for name, value in xattrs:
        n = xattr_name(name).decode("utf-8", "surrogateescape")
        try:
            os.setxattr(proc, n, value)
        except ValueError:
            raise OstreeError(f"Setting xattr {n!r} on whiteout device {path}: NUL byte in the name") from None
        except OSError as e:
            hint = ""
            if n.startswith("user.") and e.errno == errno.EPERM:
                hint = " (the kernel allows user.* xattrs only on regular files and directories)"
            raise OstreeError(
                f"Setting xattr {n} on whiteout device {path}: {os.strerror(e.errno or 0)}{hint}",
                errno=e.errno) from None


def _node_xattrs(proc: str) -> Xattrs:
    from pyostree.store.files import list_xattrs

    return list_xattrs(proc, follow=True)


def make_passthrough_whiteout(dfd: int, name: str, path: str, *, mode: int, uid: int, gid: int,
                              xattrs: Xattrs, user_mode: bool, overwrite: Overwrite,
                              compare_xattrs: bool) -> None:
    """Create the overlayfs whiteout *name* (char device 0:0) in directory *dfd*.

    *path* names the device for messages (relative to the checkout root).
    The device gets ``mode``'s permission bits (set with chmod after mknod, so
    the umask does not apply; set-id bits are dropped in user mode), and
    unless *user_mode*, *uid*/*gid* and *xattrs*.  When *name* exists:
    ``none`` is an error, ``union`` replaces it, ``add`` keeps it, and
    ``identical`` accepts it only if it is a whiteout device with the same
    permissions (and owner and xattrs unless *user_mode*).
    """
    perms = stat.S_IMODE(mode)
    if user_mode:
        perms &= ~(stat.S_ISUID | stat.S_ISGID)
    try:
        os.mknod(name, stat.S_IFCHR | (perms & 0o777), os.makedev(0, 0), dir_fd=dfd)
    except FileExistsError:
        if overwrite == "none":
            raise OstreeError(f"Creating whiteout char device {path}: File exists",
                              errno=errno.EEXIST) from None
        if overwrite == "add":
            return
        if overwrite == "identical":
            _check_identical(dfd, name, path, perms, uid, gid, xattrs, user_mode, compare_xattrs)
            return
        try:
            os.unlink(name, dir_fd=dfd)
        except OSError as e:
            raise OstreeError(f"Replacing {path} with a whiteout device: {os.strerror(e.errno or 0)}",
                              errno=e.errno) from None
        try:
            os.mknod(name, stat.S_IFCHR | (perms & 0o777), os.makedev(0, 0), dir_fd=dfd)
        except OSError as e:
            raise OstreeError(f"Creating whiteout char device {path}: {os.strerror(e.errno or 0)}",
                              errno=e.errno) from None
    except OSError as e:
        raise OstreeError(f"Creating whiteout char device {path}: {os.strerror(e.errno or 0)}",
                          errno=e.errno) from None
    # Work on the node we just made through an O_PATH fd, so a concurrent
    # rename to a symlink cannot redirect chown/chmod elsewhere.
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode):
            raise OstreeError(f"Whiteout device {path} was replaced while being created")
        proc = f"/proc/self/fd/{fd}"
        try:
            if not user_mode:
                os.chown(proc, uid, gid)
            if not user_mode and xattrs:
                _set_node_xattrs(proc, xattrs, path)
            if stat.S_IMODE(st.st_mode) != perms:
                os.chmod(proc, perms)
        except OSError as e:
            raise OstreeError(f"Setting up whiteout device {path}: {os.strerror(e.errno or 0)}",
                              errno=e.errno) from None
    finally:
        os.close(fd)


def _check_identical(dfd: int, name: str, path: str, perms: int, uid: int, gid: int, xattrs: Xattrs,
                     user_mode: bool, compare_xattrs: bool) -> None:
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != 0:
        raise OstreeError(f"existing destination file {path} is not a whiteout device (char 0:0)")
    if compare_xattrs and not user_mode:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            have = _node_xattrs(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        if have != list(xattrs):
            raise OstreeError(f"existing destination file {path} xattrs don't match")
    if not user_mode:
        if st.st_gid != gid:
            raise OstreeError(f"existing destination file {path} does not match gid {gid}")
        if st.st_uid != uid:
            raise OstreeError(f"existing destination file {path} does not match uid {uid}")
    if (st.st_mode & _ALLPERMS) != perms:
        raise OstreeError(f"existing destination file {path} does not match mode {perms:o}")
