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

import errno
import os
import stat
import struct

from pyostree.errors import OstreeError
from pyostree.store.files import set_xattrs
from pyostree.store.objects import DirMeta, ObjectType
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree import whiteouts as wh
from pyostree.tree.checkout_options import CheckoutMode, CheckoutOptions, OverwriteMode
from pyostree.tree.checkout_write import _DIR_FLAGS, _err, _FileWriter, _is_symlink_at

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["CheckoutMode", "CheckoutOptions", "OverwriteMode", "checkout_tree", "load_dirtree_fast"]

# opening an object only to read its xattrs: never block on (or become the tty of) a corrupt repo's FIFO/device
_PROBE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


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
# The walk

_LINKABLE_MAX = 65536
"""Objects remembered as hardlinkable (checksum, path, dev/ino); about 10 MB at most."""


class _Checkout(_FileWriter):
    """The walk: directories (made, populated, finished) and the fast hardlink path for their files."""

    def __init__(self, repo: Repo, options: CheckoutOptions) -> None:
        super().__init__(repo, options)
        self.repo_dev = os.fstat(repo.dfd).st_dev
        self.canonical_dirs = repo.mode is RepoMode.BARE_USER_ONLY or options.bareuseronly_dirs
        self.fast: str | None = None
        self._linkable: dict[str, tuple[str, int, int]] = {}
        """checksum -> (path in objects/, st_dev, st_ino) of objects _fast_files may hardlink"""
        self._dirmetas: dict[str, DirMeta] = {}
        if (not self.has_filter and not options.process_whiteouts and not options.force_copy
                and not options.process_passthrough_whiteouts
                and self.sources[0].hardlinkable(self.user)):
            self.fast = "bare-user" if repo.mode is RepoMode.BARE_USER else "bare"

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
