"""Check out a commit (or a subpath of it) into a directory, as ``ostree checkout``.

Semantics follow libostree 2022.7's ``ostree_repo_checkout_at``:

* Files are hardlinked from the repository whenever the repository mode and
  the checkout mode allow it (``bare`` with the default mode, ``bare-user`` /
  ``bare-user-only`` with user mode, and ``archive`` in user mode through the
  uncompressed-objects cache when enabled); otherwise they are copied.
  Zero-sized files, and in user mode files their owner cannot read, are
  always copied.  Objects missing locally are looked up in ``core.parent``.
* Directories are created 0700, populated, then get their mode, owner and
  xattrs and an mtime of 0 (``OSTREE_TIMESTAMP``); directories that already
  existed (union modes) are left alone.
* Overwrite modes: none (error on any existing name), union (replace files,
  keep directories), union-add (keep everything that exists),
  union-identical (accept an existing file only if identical).
* ``.wh.`` processing and overlayfs passthrough whiteouts: see whiteouts.py.

Everything below the destination root is done with directory fds and
``*at`` calls that never follow a symlink found in the destination.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import struct
import zlib
from collections.abc import Callable

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.files import copy_fd, list_xattrs, random_token, set_xattrs, write_all
from pyostree.store.objects import DirMeta, FileInfo, ObjectType, Xattrs
from pyostree.store.repo import ContentObject, Repo, RepoMode, check_deflate_end
from pyostree.tree import whiteouts as wh

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import NoReturn

_IO_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# opening an object only to read its xattrs: never block on (or become the tty of) a corrupt repo's FIFO/device
_PROBE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
_HARDLINK_SOFT_ERRORS = (errno.EMLINK, errno.EXDEV, errno.EPERM)


class CheckoutMode(enum.Enum):
    NONE = "none"
    """Keep ownership and xattrs (needs root for files owned by others)."""
    USER = "user"
    """Do not change ownership nor set xattrs; drop setuid/setgid bits."""


class OverwriteMode(enum.StrEnum):
    NONE = "none"
    UNION_FILES = "union"
    ADD_FILES = "add"
    UNION_IDENTICAL = "identical"


class CheckoutOptions:
    """Options of :func:`checkout_tree`; defaults are ``ostree_repo_checkout_at``'s.

    A plain class (keyword arguments, :meth:`replace`), not a dataclass:
    importing dataclasses costs more start-up time than a small checkout.
    """

    __slots__ = ("allow_noent", "bareuseronly_dirs", "enable_uncompressed_cache", "filter",
                 "force_copy", "fsync", "mode", "no_copy_fallback", "overwrite",
                 "process_passthrough_whiteouts", "process_whiteouts", "skip_paths", "subpath",
                 "unquote_special_files")

    def __init__(self, *, mode: CheckoutMode = CheckoutMode.NONE,
                 overwrite: OverwriteMode = OverwriteMode.NONE, subpath: str = "/",
                 allow_noent: bool = False, no_copy_fallback: bool = False, force_copy: bool = False,
                 bareuseronly_dirs: bool = False, process_whiteouts: bool = False,
                 process_passthrough_whiteouts: bool = False, unquote_special_files: bool = False,
                 enable_uncompressed_cache: bool = False, fsync: bool = False,
                 skip_paths: frozenset[str] = frozenset(),
                 filter: Callable[[str, int], bool] | None = None) -> None:
        self.mode = mode
        self.overwrite = overwrite
        self.subpath = subpath
        """Path inside the commit to check out; a directory or a single file."""
        self.allow_noent = allow_noent
        """A missing subpath is not an error (nothing is checked out)."""
        self.no_copy_fallback = no_copy_fallback
        """``-H``: fail instead of copying when a file cannot be hardlinked."""
        self.force_copy = force_copy
        """``-C``: never hardlink."""
        self.bareuseronly_dirs = bareuseronly_dirs
        """``-M``: directory modes are masked with 0775."""
        self.process_whiteouts = process_whiteouts
        """``--whiteouts``: OCI/aufs ``.wh.`` processing."""
        self.process_passthrough_whiteouts = process_passthrough_whiteouts
        """``--process-passthrough-whiteouts``: ``.ostree-wh.NAME`` -> char device 0:0."""
        self.unquote_special_files = unquote_special_files
        """``--unquote-special-files``: ``.ostree-dev.NAME`` -> the device node/FIFO (see quoting.py)."""
        self.enable_uncompressed_cache = enable_uncompressed_cache
        """Use (and fill) ``uncompressed-objects-cache`` for user-mode checkouts of archive repos."""
        self.fsync = fsync
        """fsync every written file and directory."""
        self.skip_paths = skip_paths
        """Absolute paths (relative to the subpath root; directories end in ``/``) to skip."""
        self.filter = filter
        """Called as ``filter(path, mode)``; return False to skip the entry."""

    def replace(self, **changes: object) -> CheckoutOptions:
        """A copy with *changes* applied (as ``dataclasses.replace``)."""
        kw: dict[str, object] = {n: getattr(self, n) for n in self.__slots__}
        for k in changes:
            if k not in kw:
                raise TypeError(f"CheckoutOptions has no option {k!r}")
        kw.update(changes)
        return CheckoutOptions(**kw)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"CheckoutOptions({args})"

    def validate(self) -> None:
        if self.force_copy and self.no_copy_fallback:
            raise OstreeError("Cannot specify both --require-hardlinks and --force-copy")
        if self.overwrite is OverwriteMode.UNION_IDENTICAL and not self.no_copy_fallback:
            raise OstreeError("--union-identical requires --require-hardlinks")


# ---------------------------------------------------------------------------
# libc helpers

def _futimens_mtime_zero(fd: int) -> None:
    """mtime 0 with atime kept, as ostree's futimens(fd, {UTIME_OMIT, 0}) for directories.

    os.utime has no UTIME_OMIT; re-setting the atime just read is the same and
    cheaper than calling futimens through ctypes (import and per-call cost).
    """
    try:
        os.utime(fd, ns=(os.fstat(fd).st_atime_ns, 0))
    except OSError as e:
        raise OstreeError(f"futimens: {os.strerror(e.errno or 0)}", errno=e.errno) from None


def _err(e: OSError, what: str) -> OstreeError:
    return OstreeError(f"{what}: {os.strerror(e.errno or 0)}", errno=e.errno)


# ---------------------------------------------------------------------------
# Sources: the repository and its parents


class _Source:
    """One repository of the parent chain, with what checkout needs open."""

    __slots__ = ("cache_fd", "can_cache", "mode", "objfd", "repo", "user_repo")

    def __init__(self, repo: Repo, options: CheckoutOptions) -> None:
        self.repo = repo
        self.mode = repo.mode
        self.objfd: int = repo._objects_dfd
        self.user_repo = repo.mode in (RepoMode.BARE_USER, RepoMode.BARE_USER_ONLY)
        self.can_cache = options.enable_uncompressed_cache and repo.config.get_bool(
            "core", "enable-uncompressed-cache", True)
        self.cache_fd: int | None = None
        if self.can_cache and repo.mode is RepoMode.ARCHIVE:
            try:
                self.cache_fd = os.open("uncompressed-objects-cache", _DIR_FLAGS, dir_fd=repo.dfd)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _err(e, "opendir(uncompressed-objects-cache)") from None

    def close(self) -> None:
        if self.cache_fd is not None:
            os.close(self.cache_fd)
            self.cache_fd = None

    def hardlinkable(self, user: bool) -> bool:
        return (self.mode is RepoMode.BARE and not user) or (self.user_repo and user)


# "Quick info" of a content object: what the hardlink decision needs.
# (mode, size, index of the source repo holding it) -- a plain tuple, no object per file.
_Quick = tuple[int, int, int]


def _archive_header(data: bytes, what: str) -> tuple[FileInfo, int]:
    """Parse a ``.filez`` header: (info, offset of the compressed payload).

    The usual header -- no xattrs -- is decoded directly; anything else goes
    through the strict GVariant parser.
    """
    if len(data) >= 8:
        n = int.from_bytes(data[0:4], "big")
        v = data[8:8 + n]
        if 26 <= n <= 0xFF and len(v) == n:
            s_end = v[n - 1]
            # (tuuuusa(ayay)): t, 4 x u, string at 24..s_end, empty xattr array, 1-byte offset
            if s_end == n - 1 and v[s_end - 1] == 0 and v[20:24] == b"\0\0\0\0":
                mode = int.from_bytes(v[16:20], "big")
                if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                    raw = v[24:s_end - 1]
                    if b"\0" not in raw:
                        try:
                            target = raw.decode("utf-8")
                        except UnicodeDecodeError:
                            target = None
                        if target is not None:
                            return FileInfo(mode, int.from_bytes(v[8:12], "big"),
                                            int.from_bytes(v[12:16], "big"),
                                            int.from_bytes(v[0:8], "big") if stat.S_ISREG(mode) else 0,
                                            target if stat.S_ISLNK(mode) else "", []), 8 + n
    hlen, variant = obj.parse_lenprefixed_header(data, what)
    return obj.parse_zlib_file_header(variant, what), hlen


class _OpenObject:
    """An archive object opened by _quick() for the file being checked out (closed after it)."""

    __slots__ = ("checksum", "fd", "head", "hlen", "info")

    def __init__(self, checksum: str, info: FileInfo, fd: int, head: bytes, hlen: int) -> None:
        self.checksum = checksum
        self.info = info
        self.fd = fd
        self.head = head
        self.hlen = hlen


# ---------------------------------------------------------------------------
# A fast reader for dirtree objects, (a(say)a(sayay)), with hex checksums.
# Anything it does not recognise as the normal form goes to DirTree.parse,
# which validates strictly and reports errors.

_Files = list[tuple[str, str]]
_Dirs = list[tuple[str, str, str]]


def _osz(n: int) -> int:
    return 0 if n == 0 else 1 if n <= 0xFF else 2 if n <= 0xFFFF else 4 if n <= 0xFFFFFFFF else 8


_OFFSET_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _ends(buf: bytes, start: int, end: int) -> list[int] | None:
    """The element end offsets (relative to *start*) of the array in buf[start:end]."""
    n = end - start
    if n == 0:
        return []
    osz = _osz(n)
    last = start + int.from_bytes(buf[end - osz:end], "little")
    if last > end - osz or (end - last) % osz:
        return None
    ends = list(struct.unpack_from(f"<{(end - last) // osz}{_OFFSET_FORMATS[osz]}", buf, last))
    # each element ends at or after the previous one; the last one ends where the offsets start
    if ends != sorted(ends):
        return None
    return ends


def _fast_dirtree(data: bytes) -> tuple[_Files, _Dirs] | None:
    n = len(data)
    osz = _osz(n)
    if n < osz or osz == 0:
        return None
    fend = int.from_bytes(data[n - osz:], "little")
    if fend > n - osz:
        return None
    fel = _ends(data, 0, fend)
    del_ = _ends(data, fend, n - osz)
    if fel is None or del_ is None:
        return None
    files: _Files = []
    append = files.append
    a = 0
    try:
        for b in fel:
            # (say): name, NUL, 32-byte checksum, then the offset of the name's end
            size = b - a
            if size <= 0xFF:
                if size == 0:
                    return None
                ce = b - 1
                s_end = a + data[ce]
            else:
                eo = _osz(size)
                ce = b - eo
                s_end = a + int.from_bytes(data[ce:b], "little")
            if ce - s_end != 32 or s_end - a < 2 or data[s_end - 1]:
                return None
            raw = data[a:s_end - 1]
            if b"\0" in raw or b"/" in raw or raw == b"." or raw == b"..":
                return None
            append((raw.decode("utf-8"), data[s_end:ce].hex()))
            a = b
        dirs: _Dirs = []
        a = fend
        for rb in del_:
            # (sayay): name, NUL, two 32-byte checksums, then two offsets (reversed)
            b = fend + rb
            size = b - a
            eo = _osz(size)
            if eo == 0:
                return None
            te = b - 2 * eo
            s_end = a + int.from_bytes(data[b - eo:b], "little")
            t_end = a + int.from_bytes(data[te:b - eo], "little")
            if t_end - s_end != 32 or te - t_end != 32 or s_end - a < 2 or data[s_end - 1]:
                return None
            raw = data[a:s_end - 1]
            if b"\0" in raw or b"/" in raw or raw == b"." or raw == b"..":
                return None
            dirs.append((raw.decode("utf-8"), data[s_end:t_end].hex(), data[t_end:te].hex()))
            a = b
    except UnicodeDecodeError:
        return None
    return files, dirs


def load_dirtree_fast(repo: Repo, checksum: str) -> tuple[_Files, _Dirs]:
    """(files, dirs) of a dirtree; names validated (no '/', '.', '..', empty, NUL)."""
    data = repo.load_metadata(ObjectType.DIR_TREE, checksum)
    got = _fast_dirtree(data)
    if got is not None:
        return got
    tree = repo.load_dirtree(checksum)
    return tree.files, tree.dirs


# ---------------------------------------------------------------------------


_LINKABLE_MAX = 65536
"""Objects remembered as hardlinkable (checksum, path, dev/ino); about 10 MB at most."""


class _Checkout:
    def __init__(self, repo: Repo, options: CheckoutOptions) -> None:
        self.repo = repo
        self.o = options
        self.user = options.mode is CheckoutMode.USER
        self.ow = options.overwrite
        self.sources: list[_Source] = []
        r: Repo | None = repo
        while r is not None:
            self.sources.append(_Source(r, options))
            r = r.parent
        self.has_filter = bool(options.skip_paths) or options.filter is not None
        self.repo_dev = os.fstat(repo.dfd).st_dev
        self.ignore_xattrs_identical = repo.disable_xattrs or repo.mode is RepoMode.BARE_USER_ONLY
        self.canonical_dirs = repo.mode is RepoMode.BARE_USER_ONLY or options.bareuseronly_dirs
        self.fast: str | None = None
        self._linkable: dict[str, tuple[str, int, int]] = {}
        """checksum -> (path in objects/, st_dev, st_ino) of objects _fast_files may hardlink"""
        self._dirmetas: dict[str, DirMeta] = {}
        self._open: _OpenObject | None = None
        if (not self.has_filter and not options.process_whiteouts and not options.force_copy
                and not options.process_passthrough_whiteouts
                and self.sources[0].hardlinkable(self.user)):
            self.fast = "bare-user" if repo.mode is RepoMode.BARE_USER else "bare"

    def close(self) -> None:
        for s in self.sources:
            s.close()

    # -- filter ---------------------------------------------------------------
    def _skipped(self, path: str, mode: int) -> bool:
        if path in self.o.skip_paths:
            return True
        f = self.o.filter
        return f is not None and not f(path, mode)

    # -- object info ------------------------------------------------------------
    def _quick(self, csum: str) -> _Quick:
        """(mode, size, source index) of a content object, from a stat (and bare-user's xattr)."""
        rel = f"{csum[:2]}/{csum[2:]}"
        for i, s in enumerate(self.sources):
            if s.mode is RepoMode.ARCHIVE:
                try:
                    fd = os.open(rel + ".filez", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=s.objfd)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise _err(e, f"Reading content object {csum}") from None
                try:
                    head = obj.pread_head(fd, f"content object {csum}")
                    info, hlen = _archive_header(head, f"content object {csum}")
                except BaseException:
                    os.close(fd)
                    raise
                self._open = _OpenObject(csum, info, fd, head, hlen)
                return info.mode, info.size, i
            try:
                st = os.stat(rel + ".file", dir_fd=s.objfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _err(e, f"Reading content object {csum}") from None
            if s.mode is RepoMode.BARE_USER:
                try:
                    meta = os.getxattr(f"/proc/self/fd/{s.objfd}/{rel}.file", "user.ostreemeta")
                except OSError as e:
                    raise OstreeError(
                        f"Corrupted content object {csum}: reading user.ostreemeta: "
                        f"{os.strerror(e.errno or 0)}") from None
                if len(meta) < 12:
                    raise OstreeError(f"Corrupted content object {csum}: short user.ostreemeta")
                mode = struct.unpack_from(">I", meta, 8)[0]
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    raise OstreeError(f"Corrupted content object {csum}: Invalid mode 0{mode:o}")
                return mode, st.st_size, i
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                raise OstreeError(f"Corrupted content object {csum}: Not a regular file or symlink")
            return st.st_mode, st.st_size, i
        raise OstreeError(f"No such content object {csum}.file")

    # -- directories ----------------------------------------------------------
    def checkout_dir(self, parent_fd: int, name: str, tree_csum: str, meta_csum: str,
                     path: str) -> None:
        """Check out a dirtree as *name* in *parent_fd*, iteratively (no recursion limit)."""
        # stack of (dfd, subdirs, next index, path, finish-info)
        stack: list[tuple[int, list[tuple[str, str, str]], list[int], str, tuple[bool, int, int, int]]] = []
        try:
            entered = self._enter_dir(parent_fd, name, tree_csum, meta_csum, path)
            if entered is None:
                return
            stack.append(entered)
            while stack:
                dfd, dirs, idx, dpath, fin = stack[-1]
                if idx[0] < len(dirs):
                    dname, t, m = dirs[idx[0]]
                    idx[0] += 1
                    sub = self._enter_dir(dfd, dname, t, m, dpath + dname + "/")
                    if sub is not None:
                        stack.append(sub)
                    continue
                stack.pop()
                try:
                    self._finish_dir(dfd, fin)
                finally:
                    os.close(dfd)
        finally:
            for dfd, *_ in stack:
                os.close(dfd)

    def _enter_dir(self, parent_fd: int, name: str, tree_csum: str, meta_csum: str, path: str
                   ) -> tuple[int, list[tuple[str, str, str]], list[int], str, tuple[bool, int, int, int]] | None:
        repo = self.repo
        files, dirs = load_dirtree_fast(repo, tree_csum)
        meta = self._dirmetas.get(meta_csum)
        if meta is None:
            if len(self._dirmetas) >= 4096:
                self._dirmetas.clear()
            meta = self._dirmetas[meta_csum] = repo.load_dirmeta(meta_csum)
        if self.has_filter and self._skipped(path, meta.mode):
            return None
        if self.o.process_whiteouts and wh.has_opaque_marker([n for n, _ in files]):
            if name in (".", ".."):
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                try:
                    wh.clear_dir(fd)
                finally:
                    os.close(fd)
            else:
                wh.rm_rf_at(parent_fd, name)
        did_exist = False
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            if self.ow is OverwriteMode.NONE:
                raise OstreeError("mkdirat: File exists", errno=errno.EEXIST) from None
            did_exist = True
        except OSError as e:
            raise _err(e, "mkdirat") from None
        try:
            dfd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink_at(parent_fd, name):
                raise OstreeError(
                    f"Refusing to check out into {path or '/'}: it is a symlink in the destination "
                    "(a checkout never follows symlinks out of its destination)") from None
            raise _err(e, f"opendir({path or name})") from None
        try:
            if self.o.no_copy_fallback:
                dev = os.fstat(dfd).st_dev
                if dev != self.repo_dev:
                    raise OstreeError(
                        f"Unable to do hardlink checkout across devices (src={self.repo_dev} "
                        f"destination={dev})")
            if not did_exist and not self.user and meta.xattrs:
                try:
                    set_xattrs(dfd, meta.xattrs)
                except OstreeError as e:
                    raise OstreeError(f"{path}: {e}", errno=e.errno) from None
            if self.fast is None:
                for fname, fcsum in files:
                    self.checkout_file(dfd, fname, fcsum, path + fname)
            else:
                self._fast_files(dfd, files, path, did_exist)
        except BaseException:
            os.close(dfd)
            raise
        return dfd, dirs, [0], path, (did_exist, meta.mode, meta.uid, meta.gid)

    def _fast_files(self, dfd: int, files: _Files, path: str, did_exist: bool) -> None:
        """The common case: hardlink every file straight from objects/.

        Taken when the primary repo is hardlinkable in this checkout mode and
        no filter or whiteout processing is on.  Anything unusual (a name
        starting with '.', a missing object, a zero-sized or unreadable file,
        a bare-user symlink, any link error) goes through checkout_file(),
        which implements the full rules.
        """
        objfd = self.sources[0].objfd
        linkable = self._linkable
        probe = self._probe_bare_user if self.fast == "bare-user" else self._probe_bare
        union = self.ow is not OverwriteMode.NONE
        add = self.ow is OverwriteMode.ADD_FILES
        # union into a directory that was already there: most names usually exist
        # (often as this very object), so look before trying the link
        look_first = union and did_exist
        link = os.link
        stat_ = os.stat
        for fname, c in files:
            if fname[0] == ".":
                self.checkout_file(dfd, fname, c, path + fname)
                continue
            src = linkable.get(c)
            if src is None:
                src = probe(f"{c[:2]}/{c[2:]}.file")
                if src is None:
                    self.checkout_file(dfd, fname, c, path + fname)
                    continue
                if len(linkable) >= _LINKABLE_MAX:
                    linkable.clear()  # a cache of repeats, not a table of the tree: memory stays bounded
                linkable[c] = src
            if look_first:
                try:
                    dst = stat_(fname, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                except OSError:
                    self.checkout_file(dfd, fname, c, path + fname)
                    continue
                else:
                    # kept (union-add), or already this very object (re-union)
                    if not (add or (dst.st_ino == src[2] and dst.st_dev == src[1])):
                        self.checkout_file(dfd, fname, c, path + fname)
                    continue
            try:
                link(src[0], fname, src_dir_fd=objfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                if union:
                    if add:
                        continue
                    try:
                        dst = stat_(fname, dir_fd=dfd, follow_symlinks=False)
                    except OSError:
                        self.checkout_file(dfd, fname, c, path + fname)
                        continue
                    if dst.st_ino == src[2] and dst.st_dev == src[1]:
                        continue
                self.checkout_file(dfd, fname, c, path + fname)
            except OSError:
                self.checkout_file(dfd, fname, c, path + fname)

    def _probe_bare(self, rel: str) -> tuple[str, int, int] | None:
        """(rel, st_dev, st_ino) of the object at *rel* if _fast_files may hardlink it, else None."""
        try:
            st = os.stat(rel, dir_fd=self.sources[0].objfd, follow_symlinks=False)
        except OSError:
            return None
        m = st.st_mode
        if stat.S_ISREG(m) and (st.st_size == 0 or (self.user and not m & 0o400)):
            return None
        return rel, st.st_dev, st.st_ino

    def _probe_bare_user(self, rel: str) -> tuple[str, int, int] | None:
        """_probe_bare for bare-user: the stored mode is in user.ostreemeta (symlinks are files).

        Read through an fd, as ostree does: cheaper than getxattr() on a
        /proc/self/fd/N/... path, whose magic-link walk costs more than the
        open() and close().
        """
        try:
            fd = os.open(rel, _PROBE_FLAGS, dir_fd=self.sources[0].objfd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            meta = os.getxattr(fd, "user.ostreemeta")
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(meta) < 12:
            return None  # checkout_file() reports the corruption
        m = int.from_bytes(meta[8:12], "big")
        # a symlink is stored as a regular file: checkout_file() makes the symlink
        if not stat.S_ISREG(m) or st.st_size == 0 or (self.user and not m & 0o400):
            return None
        return rel, st.st_dev, st.st_ino

    def _finish_dir(self, dfd: int, fin: tuple[bool, int, int, int]) -> None:
        did_exist, mode, uid, gid = fin
        try:
            if not did_exist:
                os.fchmod(dfd, (mode & 0o775) if self.canonical_dirs else stat.S_IMODE(mode))
                if not self.user:
                    os.fchown(dfd, uid, gid)
                if not self.o.force_copy:
                    _futimens_mtime_zero(dfd)
            if self.o.fsync:
                os.fsync(dfd)
        except OSError as e:
            raise _err(e, "Finishing directory") from None

    # -- files ------------------------------------------------------------------
    def checkout_file(self, dfd: int, name: str, csum: str, path: str) -> None:
        try:
            self._checkout_file(dfd, name, csum, path)
        finally:
            if self._open is not None:
                os.close(self._open.fd)
                self._open = None

    def _checkout_file(self, dfd: int, name: str, csum: str, path: str) -> None:
        obj.validate_filename(name)
        mode, size, src_idx = self._quick(csum)
        if self.has_filter and self._skipped(path, mode):
            return
        is_symlink = stat.S_ISLNK(mode)
        if not is_symlink and name[0] == ".":
            if self.o.process_whiteouts and name.startswith(wh.WHITEOUT_PREFIX):
                wh.apply_oci_whiteout(dfd, name, path)
                return
            if self.o.process_passthrough_whiteouts or self.o.unquote_special_files:
                from pyostree.tree import (
                    quoting,  # imported only when needed: it pulls in commit.py
                )
            if self.o.process_passthrough_whiteouts and name == quoting.OPAQUE_MARKER:
                quoting.restore_opaque_at(dfd, self.sources[src_idx].repo.load_file(csum).read(), path)
                return
            if self.o.unquote_special_files and quoting.quoted_kind(name) is not None \
                    and name.startswith(quoting.SPECIAL_PREFIX):
                co = self.sources[src_idx].repo.load_file(csum)
                quoting.restore_special_at(dfd, name[len(quoting.SPECIAL_PREFIX):], co.info, co.read(),
                                           set_owner=not self.user)
                return
            if self.o.process_passthrough_whiteouts and name.startswith(wh.PASSTHROUGH_PREFIX):
                target = wh.passthrough_target(name, path)
                info = self.sources[src_idx].repo.load_file(csum).info
                wh.make_passthrough_whiteout(
                    dfd, target, path[: len(path) - len(name)] + target, mode=info.mode,
                    uid=info.uid, gid=info.gid, xattrs=info.xattrs, user_mode=self.user,
                    overwrite=self.ow.value, compare_xattrs=not self.ignore_xattrs_identical)
                return
        zerosized = not is_symlink and size == 0
        override_unreadable = self.user and not is_symlink and not (mode & stat.S_IRUSR)
        need_copy = True
        if zerosized or override_unreadable:
            pass
        elif not self.o.force_copy:
            linked = False
            for s in self.sources:
                hardlinkable = s.hardlinkable(self.user)
                bare_user_symlink = s.user_repo and is_symlink
                if self.o.no_copy_fallback and not hardlinkable and not bare_user_symlink:
                    raise OstreeError(
                        "User repository mode requires user checkout mode to hardlink"
                        if s.user_repo else
                        "Bare repository mode cannot hardlink in user checkout mode")
                if hardlinkable and not bare_user_symlink:
                    res = self._hardlink(s.objfd, csum, dfd, name, path, allow_noent=True)
                elif s.mode is RepoMode.ARCHIVE and self.user and s.can_cache:
                    if s.cache_fd is None:
                        res = None
                    else:
                        res = self._hardlink(s.cache_fd, csum, dfd, name, path, allow_noent=True)
                else:
                    res = None
                if res is not None:
                    linked = True
                    break
            need_copy = not linked
        src = self.sources[0]
        if (need_copy and src.can_cache and not is_symlink and src.mode is RepoMode.ARCHIVE
                and self.user and not (zerosized or override_unreadable)):
            self._populate_cache(src, csum)
            assert src.cache_fd is not None
            res = self._hardlink(src.cache_fd, csum, dfd, name, path, allow_noent=False)
            need_copy = res is None
        if need_copy:
            if self.o.no_copy_fallback and not (is_symlink or zerosized or override_unreadable):
                raise OstreeError(f"Hardlinking {csum} to {name}: cannot hardlink")
            self._copy(csum, dfd, name, path, override_unreadable)

    def _hardlink(self, srcfd: int, csum: str, dfd: int, name: str, path: str,
                  allow_noent: bool) -> bool | None:
        """Link the object into place.  True: linked; False: kept existing; None: not possible."""
        loose = f"{csum[:2]}/{csum[2:]}.file"
        try:
            os.link(loose, name, src_dir_fd=srcfd, dst_dir_fd=dfd, follow_symlinks=False)
            return True
        except FileExistsError:
            pass
        except OSError as e:
            if not self.o.no_copy_fallback and e.errno in _HARDLINK_SOFT_ERRORS:
                return None
            if allow_noent and e.errno == errno.ENOENT:
                return None
            raise _err(e, f"Hardlinking {loose} to {name}") from None
        ow = self.ow
        if ow is OverwriteMode.NONE:
            raise OstreeError(f"Hardlinking {loose} to {name}: File exists", errno=errno.EEXIST)
        if ow is OverwriteMode.ADD_FILES:
            return False
        src_st = os.stat(loose, dir_fd=srcfd, follow_symlinks=False)
        dst_st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        identical = src_st.st_dev == dst_st.st_dev and src_st.st_ino == dst_st.st_ino
        if not identical and _stbuf_equal(src_st, dst_st):
            identical = self._checksum_at(dfd, name, dst_st) == csum
        if identical:
            return False
        if ow is OverwriteMode.UNION_IDENTICAL:
            raise OstreeError(f"Hardlinking {loose} to {name}: File exists", errno=errno.EEXIST)
        tmp = self._tmp_link(srcfd, loose, dfd)
        try:
            if self.o.process_whiteouts:
                wh.rm_rf_at(dfd, name)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as e:
            _unlink_quiet(dfd, tmp)
            raise _err(e, f"renameat({path})") from None
        except BaseException:
            _unlink_quiet(dfd, tmp)
            raise
        return True

    @staticmethod
    def _tmp_link(srcfd: int, loose: str, dfd: int) -> str:
        for _ in range(128):
            tmp = ".checkout-union-" + random_token(8)
            try:
                os.link(loose, tmp, src_dir_fd=srcfd, dst_dir_fd=dfd, follow_symlinks=False)
                return tmp
            except FileExistsError:
                continue
            except OSError as e:
                raise _err(e, "linkat") from None
        raise OstreeError("Exhausted attempts to make temporary hardlink")

    def _checksum_at(self, dfd: int, name: str, st: os.stat_result) -> str:
        """Content checksum of a file in the destination (ostree_checksum_file_at)."""
        canonical = self.repo.mode is RepoMode.BARE_USER_ONLY
        uid, gid = (0, 0) if canonical and stat.S_ISREG(st.st_mode) else (st.st_uid, st.st_gid)
        xattrs: Xattrs = []
        if not self.ignore_xattrs_identical:
            xattrs = list_xattrs(name, dir_fd=dfd)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=dfd)
            return obj.content_checksum(FileInfo(st.st_mode, uid, gid, 0, target, xattrs))
        if not stat.S_ISREG(st.st_mode):
            return ""
        h = obj.sha256(obj.file_header(FileInfo(st.st_mode, uid, gid, st.st_size, "", xattrs)))
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            while True:
                chunk = os.read(fd, _IO_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
        finally:
            os.close(fd)
        return h.hexdigest()

    # -- the uncompressed objects cache (archive repos, user mode) ---------------
    def _populate_cache(self, s: _Source, csum: str) -> None:
        repo = s.repo
        if s.cache_fd is None:
            try:
                os.mkdir("uncompressed-objects-cache", 0o755, dir_fd=repo.dfd)
            except FileExistsError:
                pass
            s.cache_fd = os.open("uncompressed-objects-cache", _DIR_FLAGS, dir_fd=repo.dfd)
        try:
            os.mkdir(csum[:2], 0o755, dir_fd=s.cache_fd)
        except FileExistsError:
            pass
        tmpdfd = os.open("tmp", _DIR_FLAGS, dir_fd=repo.dfd)
        try:
            tmp = "checkout-cache-" + random_token(12)
            fd = os.open(tmp, _CREATE_FLAGS, 0o600, dir_fd=tmpdfd)
            try:
                try:
                    info = self._write_object_content(csum, fd)
                    if not repo.disable_fsync:
                        os.fsync(fd)
                    os.fchmod(fd, stat.S_IMODE(info.mode) & ~_SETID)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, f"{csum[:2]}/{csum[2:]}.file", src_dir_fd=tmpdfd,
                            dst_dir_fd=s.cache_fd)
                except FileExistsError:
                    pass
            except OstreeError as e:
                raise OstreeError(f"Unpacking loose object {csum}: {e}") from None
            except OSError as e:
                raise _err(e, f"Unpacking loose object {csum}") from None
            finally:
                _unlink_quiet(tmpdfd, tmp)
        finally:
            os.close(tmpdfd)

    # -- copies -----------------------------------------------------------------
    def _write_object_content(self, csum: str, outfd: int, co: ContentObject | None = None) -> FileInfo:
        """Write the content of a regular-file object to *outfd*; returns its info."""
        op = self._open
        if op is not None and op.checksum == csum:
            _inflate(op.fd, op.head, op.hlen, outfd, op.info.size, f"content object {csum}")
            return op.info
        if co is None:
            co = self.repo.load_file(csum)
        owner = co.repo
        fd = os.open(co.relpath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=owner.dfd)
        try:
            if owner.mode is RepoMode.ARCHIVE:
                what = f"content object {csum}"
                head = obj.pread_head(fd, what)
                info, hlen = _archive_header(head, what)
                _inflate(fd, head, hlen, outfd, info.size, what)
                return info
            copy_fd(fd, outfd, co.info.size)
            return co.info
        finally:
            os.close(fd)

    def _copy(self, csum: str, dfd: int, name: str, path: str, override_unreadable: bool) -> None:
        try:
            self._copy_inner(csum, dfd, name, path, override_unreadable)
        except OstreeError as e:
            raise OstreeError(f"Copy checkout of {csum} to {name}: {e}", errno=e.errno) from None

    def _copy_inner(self, csum: str, dfd: int, name: str, path: str, override_unreadable: bool) -> None:
        op = self._open
        co: ContentObject | None = None
        if op is not None and op.checksum == csum:
            info = op.info
        else:
            co = self.repo.load_file(csum)
            info = co.info
        xattrs = [] if self.user else info.xattrs
        ow = self.ow
        if info.is_symlink:
            target = info.symlink_target
            try:
                os.symlink(target, name, dir_fd=dfd)
            except FileExistsError:
                if ow is OverwriteMode.NONE:
                    raise OstreeError("symlinkat: File exists", errno=errno.EEXIST) from None
                if ow is OverwriteMode.ADD_FILES:
                    return
                if ow is OverwriteMode.UNION_IDENTICAL:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dfd) == target:
                        return
                    raise OstreeError("symlinkat: File exists", errno=errno.EEXIST) from None
                # union: replace.  Like ostree, owner/xattrs are then left as created.
                if self.o.process_whiteouts:
                    wh.rm_rf_at(dfd, name)
                else:
                    try:
                        os.unlink(name, dir_fd=dfd)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        raise _err(e, f"unlinkat({name})") from None
                try:
                    os.symlink(target, name, dir_fd=dfd)
                except OSError as e:
                    raise _err(e, "symlinkat") from None
                return
            except OSError as e:
                raise _err(e, "symlinkat") from None
            if not self.user:
                try:
                    os.chown(name, info.uid, info.gid, dir_fd=dfd, follow_symlinks=False)
                    if xattrs:
                        set_xattrs(f"/proc/self/fd/{dfd}/{name}", xattrs)
                except OSError as e:
                    raise _err(e, f"Setting owner/xattrs of {path}") from None
                except OstreeError as e:
                    raise OstreeError(f"{path}: {e}", errno=e.errno) from None
            return
        # regular file
        mode = stat.S_IMODE(info.mode)
        if override_unreadable:
            mode |= stat.S_IRUSR
        if self.user:
            mode &= ~_SETID
        target_name = name
        replace = False
        if ow is not OverwriteMode.NONE:
            try:
                est: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                est = None
            if est is not None:
                if ow is OverwriteMode.ADD_FILES:
                    return
                if ow is OverwriteMode.UNION_IDENTICAL:
                    if self._checksum_at(dfd, name, est) == csum:
                        return
                    raise OstreeError("linkat: File exists", errno=errno.EEXIST)
                if self.o.process_whiteouts:
                    wh.rm_rf_at(dfd, name)
                else:
                    replace = True
                    target_name = ".checkout-union-" + random_token(8)
        try:
            fd = os.open(target_name, _CREATE_FLAGS, 0o600, dir_fd=dfd)
        except FileExistsError:
            raise OstreeError("linkat: File exists", errno=errno.EEXIST) from None
        except OSError as e:
            raise _err(e, f"open({name})") from None
        try:
            try:
                self._write_object_content(csum, fd, co)
                if not self.user:
                    os.fchown(fd, info.uid, info.gid)
                    if xattrs:
                        set_xattrs(fd, xattrs)
                os.fchmod(fd, mode)
                if self.o.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if replace:
                os.rename(target_name, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as e:
            if replace:
                _unlink_quiet(dfd, target_name)
            raise _err(e, f"Writing {path}") from None
        except BaseException:
            if replace:
                _unlink_quiet(dfd, target_name)
            raise


def _inflate(fd: int, head: bytes, hlen: int, outfd: int, size: int, what: str) -> None:
    """Decompress an archive object's payload (starting at *hlen*; *head* is already read)."""
    d = zlib.decompressobj(-15)
    off = len(head)
    buf = head[hlen:]
    written = 0
    while True:
        try:
            out = d.decompress(buf) if buf else d.flush()
        except zlib.error as e:
            raise OstreeError(f"Corrupted {what}: {e}") from None
        if out:
            write_all(outfd, out)
            written += len(out)
        check_deflate_end(d, what, not buf, off > hlen)
        if not buf:
            break
        buf = os.pread(fd, _IO_CHUNK, off)
        off += len(buf)
    if written != size:
        raise OstreeError(f"Corrupted {what}: size {written} != {size}")


def _stbuf_equal(a: os.stat_result, b: os.stat_result) -> bool:
    if a.st_mode != b.st_mode:
        return False
    if stat.S_ISREG(a.st_mode) and a.st_size != b.st_size:
        return False
    return a.st_uid == b.st_uid and a.st_gid == b.st_gid


def _is_symlink_at(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_quiet(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


# ---------------------------------------------------------------------------
# public API


class _Resolved:
    __slots__ = ("checksum", "is_dir", "meta", "name")

    def __init__(self, is_dir: bool, name: str, checksum: str, meta: str = "") -> None:
        self.is_dir = is_dir
        self.name = name
        self.checksum = checksum  # dirtree or content checksum
        self.meta = meta


def _resolve_subpath(repo: Repo, root_tree: str, root_meta: str, subpath: str) -> _Resolved | None:
    """Walk *subpath* in the commit; None if it does not exist (ostree's rules)."""
    if subpath == "/":
        return _Resolved(True, "/", root_tree, root_meta)
    rel = subpath[1:] if subpath.startswith("/") else subpath
    parts = rel.split("/")
    tree_csum, meta_csum = root_tree, root_meta
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        walked = "/" + "/".join(parts[: i + 1])
        if part in ("", ".", ".."):
            _missing(walked)
        tfiles, tdirs = load_dirtree_fast(repo, tree_csum)
        for n, t, m in tdirs:
            if n == part:
                tree_csum, meta_csum = t, m
                break
        else:
            for n, c in tfiles:
                if n == part:
                    if not last:
                        raise OstreeError("Not a directory", errno=errno.ENOTDIR)
                    return _Resolved(False, n, c)
            _missing(walked)
    return _Resolved(True, parts[-1], tree_csum, meta_csum)


def _missing(walked: str) -> NoReturn:
    raise OstreeError(f"No such file or directory: {walked}", errno=errno.ENOENT)


def checkout_tree(repo: Repo, commit: str, destination: str,
                  options: CheckoutOptions | None = None) -> bool:
    """Check out *commit* (a full checksum) into *destination* (a path).

    Returns False when the subpath does not exist and ``allow_noent`` is set
    (nothing was done), True otherwise.  Raises :class:`OstreeError`.
    """
    o = options or CheckoutOptions()
    if repo.mode is RepoMode.BARE_USER_ONLY and o.mode is not CheckoutMode.USER:
        o = _replace(o, mode=CheckoutMode.USER)
    o.validate()
    c = repo.load_commit(commit)
    subpath = o.subpath or "/"
    try:
        target = _resolve_subpath(repo, c.root_contents, c.root_meta, subpath)
    except OstreeError as e:
        if o.allow_noent and e.errno == errno.ENOENT:
            return False
        raise
    assert target is not None
    parent, name = _split_destination(destination)
    co = _Checkout(repo, o)
    try:
        pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        co.close()
        raise _err(e, f"opendir({parent})") from None
    try:
        if target.is_dir:
            co.checkout_dir(pfd, name, target.checksum, target.meta, "/")
        else:
            # Like ostree: the file goes *into* the destination directory
            # (made 0700 if missing), or into the current directory for ".".
            co.has_filter = False
            if name == "." and parent == ".":
                co.checkout_file(pfd, target.name, target.checksum, "/" + target.name)
            else:
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise _err(e, "mkdirat") from None
                try:
                    dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
                except OSError as e:
                    raise _err(e, f"opendir({destination})") from None
                try:
                    co.checkout_file(dfd, target.name, target.checksum, "/" + target.name)
                finally:
                    os.close(dfd)
    finally:
        os.close(pfd)
        co.close()
    return True


def _split_destination(dest: str) -> tuple[str, str]:
    if not dest:
        raise OstreeError("Invalid empty destination")
    stripped = dest.rstrip("/") or "/"
    if stripped == "/":
        return "/", "."
    parent, _, name = stripped.rpartition("/")
    if not parent:
        parent = "/" if stripped.startswith("/") else "."
    return parent, name


def _replace(o: CheckoutOptions, **kw: object) -> CheckoutOptions:
    return o.replace(**kw)
