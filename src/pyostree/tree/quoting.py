"""Quoting of what ostree cannot store: overlayfs whiteouts, opaque dirs, device nodes.

OSTree content objects are regular files and symlinks only.  An overlayfs
upper directory (or an OCI layer) also needs:

* **whiteouts** -- character devices 0:0 hiding a lower file.  Committed with
  ``--retarget-whiteouts``, whiteout ``NAME`` becomes the empty regular file
  ``.ostree-wh.NAME`` with the device's permission bits, owner and xattrs.  This
  is exactly the format ``ostree checkout --process-passthrough-whiteouts``
  (libostree >= 2022.7) turns back into a char device 0:0, so real ostree and
  pyostree both restore it.
* **opaque directories** -- xattr ``trusted.overlay.opaque=y`` (or
  ``user.overlay.opaque=y`` on ``userxattr`` mounts).  Where the commit keeps
  xattrs (bare, bare-user, archive without ``--no-xattrs`` /
  ``core.disable-xattrs``) the xattr simply stays in the dirmeta, and both
  checkouts restore it.  Where it cannot (bare-user-only, ``--no-xattrs``,
  ``core.disable-xattrs``), ``--retarget-whiteouts`` adds the marker file
  ``.ostree-wh..wh..opq`` (the quoted form of OCI's ``.wh..wh..opq``) to the
  directory.  An empty marker means ``trusted.overlay.opaque=y``; otherwise it
  holds ``NAME=VALUE`` lines (only ``trusted.overlay.opaque`` /
  ``user.overlay.opaque``).  pyostree's ``checkout
  --process-passthrough-whiteouts`` removes the marker and sets the xattr(s);
  the real ostree turns it into a whiteout named ``.wh..opq`` instead (it has
  no notion of the marker).
* **other special files** (char/block devices, FIFOs, sockets; ostree issue
  2568), only with ``--quote-special-files``: ``NAME`` becomes the regular file
  ``.ostree-dev.NAME`` with the node's permissions/owner/xattrs and the content
  ``c MAJOR MINOR\\n``, ``b MAJOR MINOR\\n``, ``p\\n`` or ``s\\n``.
  ``checkout --unquote-special-files`` recreates the node with mknod.

Names are quoted verbatim (spaces, newlines, any UTF-8).  Names that are not
valid UTF-8 are refused exactly as ostree refuses them for plain files: ostree
object names are GVariant strings, which must be UTF-8.
"""

from __future__ import annotations

import errno
import os
import stat

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.files import set_xattrs
from pyostree.store.objects import FileInfo, Xattrs
from pyostree.tree.commit import CommitModifier, QuotedEntry

WHITEOUT_PREFIX = ".ostree-wh."
OPAQUE_MARKER = WHITEOUT_PREFIX + ".wh..opq"
SPECIAL_PREFIX = ".ostree-dev."
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
DEFAULT_OPAQUE: list[tuple[str, bytes]] = [("trusted.overlay.opaque", b"y")]
_SPECIAL_MAX = 64

__all__ = [
    "OPAQUE_MARKER", "OPAQUE_XATTRS", "SPECIAL_PREFIX", "WHITEOUT_PREFIX",
    "install_commit_quoting", "is_whiteout", "make_whiteout_at", "opaque_marker_content",
    "parse_opaque_marker", "parse_special", "quote_special", "quoted_kind",
    "quoting_modifier", "read_opaque_xattrs", "restore_opaque_at", "restore_special_at",
    "special_content",
]


# ---------------------------------------------------------------------------
# formats


def is_whiteout(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device with device number 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def special_content(mode: int, rdev: int) -> bytes:
    """The content of a ``.ostree-dev.NAME`` file for a node of *mode*/*rdev*."""
    if stat.S_ISCHR(mode):
        return f"c {os.major(rdev)} {os.minor(rdev)}\n".encode()
    if stat.S_ISBLK(mode):
        return f"b {os.major(rdev)} {os.minor(rdev)}\n".encode()
    if stat.S_ISFIFO(mode):
        return b"p\n"
    if stat.S_ISSOCK(mode):
        return b"s\n"
    raise OstreeError(f"Unsupported file type {stat.S_IFMT(mode):o}")


def parse_special(content: bytes, where: str) -> tuple[int, int]:
    """(S_IFMT type, rdev) from a ``.ostree-dev.`` file's content."""
    bad = OstreeError(f"Invalid quoted special file {where}: {content[:_SPECIAL_MAX]!r}")
    if len(content) > _SPECIAL_MAX or not content.endswith(b"\n"):
        raise bad
    parts = content[:-1].split(b" ")
    kinds = {b"c": stat.S_IFCHR, b"b": stat.S_IFBLK, b"p": stat.S_IFIFO, b"s": stat.S_IFSOCK}
    kind = kinds.get(parts[0])
    if kind is None:
        raise bad
    if kind in (stat.S_IFIFO, stat.S_IFSOCK):
        if len(parts) != 1:
            raise bad
        return kind, 0
    if len(parts) != 3 or not all(p.isdigit() for p in parts[1:]):
        raise bad
    major, minor = int(parts[1]), int(parts[2])
    if major >= 1 << 32 or minor >= 1 << 32:
        raise bad
    return kind, os.makedev(major, minor)


def opaque_marker_content(pairs: list[tuple[str, bytes]]) -> bytes:
    """Marker content for opaque xattrs *pairs*; empty for the common ``trusted...=y``."""
    if pairs == DEFAULT_OPAQUE:
        return b""
    return b"".join(n.encode() + b"=" + v + b"\n" for n, v in pairs)


def parse_opaque_marker(content: bytes, where: str) -> list[tuple[str, bytes]]:
    """The opaque xattrs recorded by a marker (see :func:`opaque_marker_content`)."""
    if not content:
        return list(DEFAULT_OPAQUE)
    if len(content) > 256 or not content.endswith(b"\n"):
        raise OstreeError(f"Invalid opaque marker {where}")
    out: list[tuple[str, bytes]] = []
    for line in content[:-1].split(b"\n"):
        name, sep, value = line.partition(b"=")
        if not sep or name.decode("ascii", "replace") not in OPAQUE_XATTRS or not value:
            raise OstreeError(f"Invalid opaque marker {where}: {line!r}")
        out.append((name.decode("ascii"), value))
    return out


def quoted_kind(name: str) -> tuple[str, str] | None:
    """Classify a committed name: ('opaque'|'whiteout'|'special', real name) or None."""
    if name == OPAQUE_MARKER:
        return "opaque", ""
    if name.startswith(WHITEOUT_PREFIX) and len(name) > len(WHITEOUT_PREFIX):
        return "whiteout", name[len(WHITEOUT_PREFIX):]
    if name.startswith(SPECIAL_PREFIX) and len(name) > len(SPECIAL_PREFIX):
        return "special", name[len(SPECIAL_PREFIX):]
    return None


# ---------------------------------------------------------------------------
# commit side


def read_opaque_xattrs(fd: int) -> list[tuple[str, bytes]]:
    """The overlayfs opaque xattrs set on directory *fd* (missing/unsupported -> [])."""
    out: list[tuple[str, bytes]] = []
    for name in OPAQUE_XATTRS:
        try:
            value = os.getxattr(fd, name)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                continue
            raise
        if value:
            out.append((name, value))
    return out


def _check_utf8(path: str) -> None:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise OstreeError(
            f"Invalid UTF-8 in filename {path.encode('utf-8', 'surrogateescape')!r}") from None


def quote_special(path: str, st: os.stat_result, xattrs: Xattrs, *, whiteouts: bool = True,
                  special: bool = False) -> QuotedEntry | None:
    """The stand-in for the special file at commit path *path*, or None if not enabled."""
    _check_utf8(path)
    name = path.rsplit("/", 1)[-1]
    info = FileInfo(stat.S_IFREG | stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0, "", list(xattrs))
    if whiteouts and is_whiteout(st):
        return QuotedEntry(WHITEOUT_PREFIX + name, info)
    if special and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
        return QuotedEntry(SPECIAL_PREFIX + name, info, special_content(st.st_mode, st.st_rdev))
    return None


def _opaque_extras(path: str, dfd: int, xattrs_kept: bool) -> list[QuotedEntry]:
    if xattrs_kept:
        return []  # the dirmeta keeps the opaque xattr itself
    pairs = read_opaque_xattrs(dfd)
    if not pairs:
        return []
    try:
        os.stat(OPAQUE_MARKER, dir_fd=dfd, follow_symlinks=False)
        return []  # already quoted (a tree quoted earlier): keep it as it is
    except FileNotFoundError:
        pass
    st = os.fstat(dfd)
    info = FileInfo(stat.S_IFREG | 0o644, st.st_uid, st.st_gid)
    return [QuotedEntry(OPAQUE_MARKER, info, opaque_marker_content(pairs))]


def install_commit_quoting(modifier: CommitModifier, *, whiteouts: bool = True,
                           special: bool = False) -> None:
    """Make commits with *modifier* quote whiteouts/opaque dirs and/or other special files."""
    if not (whiteouts or special):
        return

    def special_cb(path: str, st: os.stat_result, xattrs: Xattrs) -> QuotedEntry | None:
        return quote_special(path, st, xattrs, whiteouts=whiteouts, special=special)

    modifier.special_callback = special_cb
    if whiteouts:
        modifier.dir_extras_callback = _opaque_extras


def quoting_modifier(*, whiteouts: bool = True, special: bool = False,
                     base: CommitModifier | None = None) -> CommitModifier:
    """A :class:`CommitModifier` (new, or *base*) with quoting installed."""
    m = base or CommitModifier()
    install_commit_quoting(m, whiteouts=whiteouts, special=special)
    return m


# ---------------------------------------------------------------------------
# checkout side (called by checkout.py and the container checkout)


def _set_owner_mode_xattrs(dfd: int, name: str, mode: int, uid: int, gid: int, xattrs: Xattrs,
                           *, set_owner: bool = True) -> None:
    if set_owner:
        os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
    # mknod applies the umask: set the exact permissions afterwards
    os.chmod(name, stat.S_IMODE(mode), dir_fd=dfd)
    target = f"/proc/self/fd/{dfd}/{name}"
    try:
        set_xattrs(target, xattrs, follow=False)
    except OstreeError as e:
        raise OstreeError(f"{name}: {e}", errno=e.errno) from None


def make_whiteout_at(dfd: int, name: str, info: FileInfo, *, set_owner: bool = True) -> None:
    """Create whiteout *name* (char 0:0) in *dfd* with *info*'s permissions, owner, xattrs."""
    obj.validate_filename(name)
    try:
        os.mknod(name, stat.S_IFCHR | stat.S_IMODE(info.mode), 0, dir_fd=dfd)
    except OSError as e:
        raise OstreeError(f"mknod(whiteout {name}): {e.strerror}", errno=e.errno) from None
    _set_owner_mode_xattrs(dfd, name, info.mode, info.uid, info.gid, info.xattrs, set_owner=set_owner)


def restore_special_at(dfd: int, name: str, info: FileInfo, content: bytes, *,
                       set_owner: bool = True) -> None:
    """Recreate the node quoted as ``.ostree-dev.NAME`` (its *info* and *content*) as *name*."""
    obj.validate_filename(name)
    kind, rdev = parse_special(content, SPECIAL_PREFIX + name)
    try:
        os.mknod(name, kind | stat.S_IMODE(info.mode), rdev, dir_fd=dfd)
    except OSError as e:
        raise OstreeError(f"mknod({name}): {e.strerror}", errno=e.errno) from None
    _set_owner_mode_xattrs(dfd, name, info.mode, info.uid, info.gid, info.xattrs, set_owner=set_owner)


def restore_opaque_at(dir_fd: int, content: bytes, where: str = OPAQUE_MARKER, *,
                      userxattr: bool = False) -> None:
    """Mark directory *dir_fd* opaque as its marker (content *content*) records.

    With *userxattr*, ``trusted.overlay.opaque`` is written as ``user.overlay.opaque``.
    """
    for name, value in parse_opaque_marker(content, where):
        if userxattr:
            name = name.replace("trusted.", "user.", 1)
        try:
            os.setxattr(dir_fd, name, value)
        except OSError as e:
            raise OstreeError(f"Setting {name} on {where}: {e.strerror}", errno=e.errno) from None
