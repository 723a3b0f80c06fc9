"""Writing the files of a checkout: hardlinks, copies, symlinks, union/overwrite handling.

checkout.py plans the walk (directories, the fast hardlink path); everything
that puts one file in place goes through :class:`_FileWriter` here, including
the ``uncompressed-objects-cache`` of archive repositories in user mode.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zlib

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.files import (
    check_deflate_end,
    copy_fd,
    list_xattrs,
    random_token,
    set_xattrs,
    write_all,
)
from pyostree.store.objects import FileInfo, Xattrs
from pyostree.store.repo import ContentObject, Repo, RepoMode
from pyostree.tree import whiteouts as wh
from pyostree.tree.checkout_options import CheckoutMode, CheckoutOptions, OverwriteMode

_IO_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
_HARDLINK_SOFT_ERRORS = (errno.EMLINK, errno.EXDEV, errno.EPERM)


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


class _FileWriter:
    """Writes the files of a checkout: hardlinks from the repository, copies, symlinks, and the
    union/overwrite rules for names that already exist.  The walk (checkout.py) drives it."""

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
        self.ignore_xattrs_identical = repo.disable_xattrs or repo.mode is RepoMode.BARE_USER_ONLY
        self._open: _OpenObject | None = None

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
