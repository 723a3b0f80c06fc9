"""The repository: layout, config, the loose object store, transactions, locking.

A repository is a directory::

    config            GKeyFile, [core] mode=bare|bare-user|bare-user-only|archive-z2
    objects/XX/REST.{commit,dirtree,dirmeta,file,filez,commitmeta}
    refs/heads/  refs/remotes/  refs/mirrors/
    state/            CSUM.commitpartial markers
    tmp/              staging-BOOTID-RANDOM/ directories of an open transaction
    extensions/

Objects are written into the transaction's staging directory and renamed into
``objects/`` when the transaction commits, after a ``syncfs`` when
``core.fsync`` is on, so an interrupted writer never leaves a partial object.
Publishing the staging directory, the transaction and lock contexts and the
threaded object writer are in transaction.py.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import zlib
from collections import OrderedDict
from collections.abc import Iterator

from pyostree.errors import NotFoundError, OstreeError, os_error
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.files import (
    CHUNK,
    _InflateReader,
    boot_id,
    copy_fd,
    list_xattrs,
    proc_path,
    random_name,
    random_token,
    read_all,
    rm_rf_at,
    set_xattrs,
    syncfs,
    write_all,
    write_file_atomic,
)
from pyostree.store.keyfile import KeyFile
from pyostree.store.objects import Commit, DirMeta, DirTree, FileInfo, ObjectType
from pyostree.store.transaction import (
    _WRITE_THREADS,
    _AsyncWriter,
    _RepoLock,
    _Transaction,
    cleanup_tmpdir,
    lock_tmpdir,
    publish_staged,
    unlock_tmpdir,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import BinaryIO

OSTREE_TIMESTAMP = 0
DEFAULT_ZLIB_LEVEL = 6
# metadata read cache: entries x largest cached object bounds its memory (32 MB);
# a big directory's dirtree is read once per walk and not worth keeping
_META_CACHE_ENTRIES = 4096
_META_CACHE_MAX_OBJECT = 8192


class RepoMode(enum.Enum):
    BARE = "bare"
    ARCHIVE = "archive-z2"
    BARE_USER = "bare-user"
    BARE_USER_ONLY = "bare-user-only"
    BARE_SPLIT_XATTRS = "bare-split-xattrs"

    @classmethod
    def parse(cls, s: str) -> RepoMode:
        if s == "archive":
            return cls.ARCHIVE
        try:
            return cls(s)
        except ValueError:
            raise OstreeError(f"Invalid mode '{s}' in repository configuration") from None

    @property
    def is_bare(self) -> bool:
        return self is not RepoMode.ARCHIVE


# ---------------------------------------------------------------------------


class ContentObject:
    """A content object's metadata and where its data lives."""

    __slots__ = ("checksum", "info", "repo", "relpath")  # noqa: RUF023  (field order)

    def __init__(self, checksum: str, info: FileInfo, repo: Repo, relpath: str) -> None:
        self.checksum = checksum
        self.info = info
        self.repo = repo
        self.relpath = relpath
        """Path of the loose object relative to its repository directory."""

    def open(self) -> BinaryIO:
        """A stream of the file's content (decompressed for archive repos)."""
        return self.repo._open_content_stream(self)

    def read(self) -> bytes:
        with self.open() as f:
            return f.read()


def _zlib_level(text: str | None) -> int:
    """``[archive] zlib-level`` as libostree reads it: ``g_ascii_strtoull`` clamped to 1..9."""
    if text is None:
        return DEFAULT_ZLIB_LEVEL
    t = text.lstrip()
    neg = t[:1] == "-"
    t = t[1:] if t[:1] in ("+", "-") else t
    digits = ""
    for ch in t:
        if not "0" <= ch <= "9":
            break
        digits += ch
    n = int(digits) if digits else 0
    if neg and n:
        n = 1 << 64  # strtoull negates in unsigned arithmetic: a huge value
    return max(1, min(9, n))


class Repo:
    """An OSTree repository on disk."""

    def __init__(self, path: str, dfd: int, config: KeyFile) -> None:
        self.path = path
        self.dfd = dfd
        self.config = config
        core_mode = config.get("core", "mode", "bare") or "bare"
        self.mode = RepoMode.parse(core_mode)
        self.is_archive = self.mode is RepoMode.ARCHIVE
        self.disable_xattrs = config.get_bool("core", "disable-xattrs", False)
        self.disable_fsync = not config.get_bool("core", "fsync", True)
        self.per_object_fsync = config.get_bool("core", "per-object-fsync", False)
        self.zlib_level = _zlib_level(config.get("archive", "zlib-level"))
        self.sysroot_dir: str | None = None
        """Set when opened through a deployment's (non-physical) sysroot: remote configs then go to
        its ``etc/ostree/remotes.d`` (libostree's ``OSTREE_REPO_SYSROOT_KIND_VIA_SYSROOT``)."""
        self._parent: Repo | None = None
        parent = config.get("core", "parent")
        if parent:
            self._parent = Repo.open(parent)
        self._objects_dfd = self._open_dir("objects")
        self._tmp_dfd: int | None = None
        self._staging_dfd: int | None = None
        self._staging_name: str | None = None
        self._staging_lock_fd: int | None = None
        self._staged: set[str] = set()
        self._staged_dirs: set[str] = set()
        self._writer: _AsyncWriter | None = None
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._meta_cache: OrderedDict[tuple[ObjectType, str], bytes] = OrderedDict()
        self.txn_refs: dict[tuple[str | None, str], str | None] = {}
        self.stats = {"metadata_total": 0, "metadata_written": 0, "content_total": 0,
                      "content_written": 0, "content_bytes_written": 0, "content_cache_hits": 0}

    # -- construction -------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> Repo:
        try:
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise os_error(e, f"opening repo {path}") from None
        try:
            try:
                cfg_fd = os.open("config", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as e:
                raise OstreeError(f"Couldn't find file '{path}/config': {os.strerror(e.errno or 0)}") from None
            with os.fdopen(cfg_fd, "rb") as f:
                raw = f.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise OstreeError(f"{path}/config: invalid UTF-8") from None
            config = KeyFile.parse(text, f"{path}/config")
            if not config.has_group("core"):
                raise OstreeError(f"{path}/config: missing [core] group")
            ver = config.get("core", "repo_version")
            if ver is None:
                raise OstreeError(f"{path}/config: Key file does not have key “repo_version” in group “core”")
            if ver.strip() != "1":
                raise OstreeError(f"Invalid repository version '{ver}'")
            repo = cls(path, dfd, config)
        except BaseException:
            os.close(dfd)
            raise
        # ostree recreates tmp/ on open
        try:
            os.mkdir("tmp", 0o755, dir_fd=dfd)
        except FileExistsError:
            pass
        except OSError:
            pass
        return repo

    @classmethod
    def create(cls, path: str, mode: RepoMode = RepoMode.BARE, collection_id: str | None = None) -> Repo:
        """``ostree init``: create (or re-open an existing identical) repository."""
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise os_error(e, f"mkdir {path}") from None
        cfg_path = os.path.join(path, "config")
        if os.path.exists(cfg_path):
            existing = cls.open(path)
            if existing.mode is not mode:
                raise OstreeError(
                    f"Repository at {path} has mode {existing.mode.value}, not {mode.value}")
            return existing
        for d in ("objects", "tmp", "extensions", "state", "refs", "refs/heads", "refs/mirrors",
                  "refs/remotes", "tmp/cache"):
            os.makedirs(os.path.join(path, d), exist_ok=True)
        kf = KeyFile()
        kf.set("core", "repo_version", "1")
        kf.set("core", "mode", mode.value)
        if collection_id:
            kf.set("core", "collection-id", collection_id)
        write_file_atomic(path, "config", kf.to_data().encode("utf-8"), fsync=False)
        return cls.open(path)

    def close(self) -> None:
        for fd in (self._staging_dfd, self._tmp_dfd, self._objects_dfd, self.dfd, self._lock_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._staging_dfd = self._tmp_dfd = self._lock_fd = None
        if self._parent:
            self._parent.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

    def _open_dir(self, rel: str) -> int:
        try:
            return os.open(rel, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.dfd)
        except OSError as e:
            raise os_error(e, f"opendir({rel})") from None

    @property
    def parent(self) -> Repo | None:
        return self._parent

    @property
    def collection_id(self) -> str | None:
        return self.config.get("core", "collection-id")

    def write_config(self) -> None:
        write_file_atomic(self.path, "config", self.config.to_data().encode("utf-8"),
                           fsync=not self.disable_fsync, dir_fd=self.dfd)

    # -- locking ------------------------------------------------------------
    def lock(self, exclusive: bool = False) -> _RepoLock:
        """Hold ostree's repository lock (``.lock``, OFD lock) for a ``with`` block."""
        return _RepoLock(self.dfd, exclusive)

    # -- object lookup ------------------------------------------------------
    def _loose_path(self, checksum: str, objtype: ObjectType) -> str:
        return obj.object_relpath(checksum, objtype, self.is_archive)

    def _local_stat(self, checksum: str, objtype: ObjectType) -> tuple[int, str] | None:
        """(dir fd, relative path) of an object in this repo (staging first), or None."""
        rel = obj.object_relpath(checksum, objtype, self.is_archive)[len("objects/"):]
        if self._staging_dfd is not None and checksum + objtype.value in self._staged:
            if self._writer is not None:
                self._writer.wait_for(checksum + objtype.value)
            return self._staging_dfd, rel
        try:
            os.stat(rel, dir_fd=self._objects_dfd, follow_symlinks=False)
            return self._objects_dfd, rel
        except FileNotFoundError:
            return None
        except OSError as e:
            raise os_error(e, f"stat({rel})") from None

    def has_object_local(self, objtype: ObjectType, checksum: str) -> bool:
        return self._local_stat(checksum, objtype) is not None

    def has_object(self, objtype: ObjectType, checksum: str) -> bool:
        if self._local_stat(checksum, objtype) is not None:
            return True
        return self._parent.has_object(objtype, checksum) if self._parent else False

    def _open_object(self, objtype: ObjectType, checksum: str) -> tuple[Repo, int]:
        """Open a loose object for reading; returns (owning repo, fd)."""
        loc = self._local_stat(checksum, objtype)
        if loc is not None:
            dfd, rel = loc
            try:
                return self, os.open(rel, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dfd)
            except OSError as e:
                if e.errno == errno.ELOOP and objtype is ObjectType.FILE:
                    raise  # symlink object (bare), handled by caller
                raise os_error(e, f"Opening {objtype.value} object {checksum}") from None
        if self._parent is not None:
            return self._parent._open_object(objtype, checksum)
        kind = "metadata object" if objtype.is_meta else "content object"
        raise NotFoundError(f"No such {kind} {checksum}.{objtype.value}")

    def load_metadata(self, objtype: ObjectType, checksum: str) -> bytes:
        """The raw bytes of a metadata object (cached)."""
        key = (objtype, checksum)
        cached = self._meta_cache.get(key)
        if cached is not None:
            self._meta_cache.move_to_end(key)
            return cached
        _owner, fd = self._open_object(objtype, checksum)
        try:
            # no size bound on local objects, as libostree (whose commit writes dirtrees over
            # OSTREE_MAX_METADATA_SIZE for wide directories): that bound is for pulls only
            data = read_all(fd)
        finally:
            os.close(fd)
        if len(data) <= _META_CACHE_MAX_OBJECT:
            self._meta_cache[key] = data
            if len(self._meta_cache) > _META_CACHE_ENTRIES:
                self._meta_cache.popitem(last=False)
        return data

    def load_commit(self, checksum: str) -> Commit:
        data = self.load_metadata(ObjectType.COMMIT, checksum)
        try:
            return Commit.parse(data)
        except (ValueError, OstreeError) as e:
            raise OstreeError(f"Corrupted commit object {checksum}: {e}") from None

    def load_dirtree(self, checksum: str) -> DirTree:
        data = self.load_metadata(ObjectType.DIR_TREE, checksum)
        try:
            return DirTree.parse(data)
        except (ValueError, OstreeError) as e:
            raise OstreeError(f"Corrupted dirtree object {checksum}: {e}") from None

    def load_dirmeta(self, checksum: str) -> DirMeta:
        data = self.load_metadata(ObjectType.DIR_META, checksum)
        try:
            return DirMeta.parse(data)
        except (ValueError, OstreeError) as e:
            raise OstreeError(f"Corrupted dirmeta object {checksum}: {e}") from None

    def load_detached_metadata(self, checksum: str) -> list[tuple[str, gvariant.Variant]] | None:
        try:
            data = self.load_metadata(ObjectType.COMMIT_META, checksum)
        except NotFoundError:
            return None
        try:
            return list(gvariant.deserialize(obj.METADATA_TYPE, data))
        except ValueError as e:
            raise OstreeError(f"Corrupted commitmeta object {checksum}: {e}") from None

    def load_file(self, checksum: str) -> ContentObject:
        """Metadata of a content object, reading the header for archive/bare-user repos."""
        loc = self._local_stat(checksum, ObjectType.FILE)
        if loc is None:
            if self._parent is not None:
                return self._parent.load_file(checksum)
            raise NotFoundError(f"Couldn't find file object '{checksum}'")
        dfd, rel = loc
        relpath = ("tmp/" + str(self._staging_name) + "/" if dfd == self._staging_dfd else "objects/") + rel
        what = f"content object {checksum}"
        try:
            st = os.stat(rel, dir_fd=dfd, follow_symlinks=False)
            if self.mode is RepoMode.ARCHIVE:
                fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    head = obj.pread_head(fd, what, 0)
                    _hlen, variant = obj.parse_lenprefixed_header(head, what)
                finally:
                    os.close(fd)
                info = obj.parse_zlib_file_header(variant, what)
            elif self.mode is RepoMode.BARE_USER:
                if not stat.S_ISREG(st.st_mode):
                    raise OstreeError(f"Corrupted {what}: not a regular file in bare-user repo")
                try:
                    meta = os.getxattr(proc_path(dfd, rel), "user.ostreemeta")
                except OSError as e:
                    if e.errno == errno.ENODATA:
                        raise OstreeError(f"Corrupted {what}: missing user.ostreemeta xattr") from None
                    raise
                uid, gid, mode, xattrs = obj.filemeta_parse(meta, what)
                if stat.S_ISLNK(mode):
                    with open(os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd), "rb") as f:
                        target_b = f.read()  # no bound but the file (libostree reads it whole)
                    try:
                        target = target_b.rstrip(b"\0").decode("utf-8")
                    except UnicodeDecodeError:
                        raise OstreeError(f"Corrupted {what}: symlink target is not UTF-8") from None
                    info = FileInfo(mode, uid, gid, 0, target, xattrs)
                elif stat.S_ISREG(mode):
                    info = FileInfo(mode, uid, gid, st.st_size, "", xattrs)
                else:
                    raise OstreeError(f"Corrupted {what}: Invalid mode 0{mode:o} in user.ostreemeta")
            else:
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(rel, dir_fd=dfd)
                    info = FileInfo(st.st_mode, st.st_uid, st.st_gid, 0, target, [])
                elif stat.S_ISREG(st.st_mode):
                    info = FileInfo(st.st_mode, st.st_uid, st.st_gid, st.st_size, "", [])
                else:
                    raise OstreeError(f"Corrupted {what}: Not a regular file or symlink")
                if self.mode is RepoMode.BARE_USER_ONLY:
                    info.uid = info.gid = 0
                elif not self.disable_xattrs:
                    info.xattrs = list_xattrs(rel, dir_fd=dfd)
        except FileNotFoundError:
            raise NotFoundError(f"Couldn't find file object '{checksum}'") from None
        except OSError as e:
            raise os_error(e, f"Reading {what}") from None
        return ContentObject(checksum, info, self, relpath)

    def _open_content_stream(self, co: ContentObject) -> BinaryIO:
        what = f"content object {co.checksum}"
        if co.info.is_symlink:
            import io

            return io.BytesIO(b"")
        fd = os.open(co.relpath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=co.repo.dfd)
        f = os.fdopen(fd, "rb")
        if co.repo.mode is RepoMode.ARCHIVE:
            head = obj.pread_head(fd, what, 0)
            hlen, _ = obj.parse_lenprefixed_header(head, what)
            return _InflateReader(f, hlen, what)  # type: ignore[return-value]
        return f

    def iter_objects(self) -> Iterator[tuple[str, ObjectType]]:
        """Every loose object in this repository (not parents)."""
        for prefix in sorted(os.listdir(self._objects_dfd)):
            if len(prefix) != 2:
                continue
            try:
                names = os.listdir(os.path.join(proc_path(self._objects_dfd, prefix)))
            except NotADirectoryError:
                continue
            for name in sorted(names):
                base, dot, ext = name.partition(".")
                if not dot or len(base) != 62:
                    continue
                if ext == "filez":
                    if not self.is_archive:
                        continue
                    ext = "file"
                elif ext == "file" and self.is_archive:
                    continue
                try:
                    t = ObjectType(ext)
                except ValueError:
                    continue
                csum = prefix + base
                if obj.is_valid_checksum(csum):
                    yield csum, t

    # -- transactions -------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self._staging_dfd is not None

    def prepare_transaction(self) -> None:
        if self._staging_dfd is not None:
            raise OstreeError("Transaction already in progress")
        self._lock_shared_for_txn = self.lock(exclusive=False)
        self._lock_shared_for_txn.__enter__()
        try:
            os.mkdir("tmp", 0o755, dir_fd=self.dfd)
        except FileExistsError:
            pass
        self._tmp_dfd = self._open_dir("tmp")
        name = f"staging-{boot_id()}-{random_token(6)}"
        # lock first, then create: a staging dir that exists is always either locked by its
        # transaction or stale (libostree's _ostree_repo_try_lock_tmpdir protocol, shared with it)
        self._staging_lock_fd = lock_tmpdir(self._tmp_dfd, name)
        os.mkdir(name, 0o755, dir_fd=self._tmp_dfd)
        self._staging_name = name
        self._staging_dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._tmp_dfd)
        self._staged.clear()
        self._staged_dirs.clear()
        self.txn_refs = {}

    def commit_transaction(self) -> None:
        if self._staging_dfd is None:
            raise OstreeError("No transaction in progress")
        if self._writer is not None:
            self._writer.drain()
        if os.environ.get("OSTREE_REPO_TEST_ERROR") == "pre-commit":
            raise OstreeError("OSTREE_REPO_TEST_ERROR_PRE_COMMIT")
        if not self.disable_fsync:
            syncfs(self._staging_dfd)
        publish_staged(self._staging_dfd, self._objects_dfd, self._staged, self._staged_dirs,
                       fsync=not self.disable_fsync)
        from pyostree.store import refs as _refs

        for (remote, ref), csum in self.txn_refs.items():
            _refs.write_ref(self, remote, ref, csum)
        self._cleanup_staging()

    def abort_transaction(self) -> None:
        if self._staging_dfd is None:
            return
        self._cleanup_staging()

    def _cleanup_staging(self) -> None:
        assert self._tmp_dfd is not None and self._staging_name is not None
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        tmp_dfd = self._tmp_dfd
        try:
            rm_rf_at(tmp_dfd, self._staging_name)
        finally:
            if self._staging_dfd is not None:
                os.close(self._staging_dfd)
            self._release_staging_lock()
            self._staging_dfd = None
            self._tmp_dfd = None
            self._staging_name = None
            self._staged.clear()
            self._staged_dirs.clear()
            self.txn_refs = {}
            self._lock_shared_for_txn.__exit__(None, None, None)
        try:
            cleanup_tmpdir(tmp_dfd)  # other boots' and crashed writers' staging dirs
        except OSError as e:
            raise os_error(e, "tmpdir cleanup") from None
        finally:
            os.close(tmp_dfd)

    def _abandon_transaction(self) -> None:
        """Leave the staging dir behind, as ostree does for debugging (OSTREE_REPO_TEST_ERROR)."""
        if self._staging_dfd is not None:
            os.close(self._staging_dfd)
        self._staging_dfd = None
        if self._tmp_dfd is not None:
            self._release_staging_lock()
            os.close(self._tmp_dfd)
            self._tmp_dfd = None
        self._lock_shared_for_txn.__exit__(None, None, None)

    def _release_staging_lock(self) -> None:
        if self._staging_lock_fd is not None:
            assert self._tmp_dfd is not None and self._staging_name is not None
            unlock_tmpdir(self._tmp_dfd, self._staging_name, self._staging_lock_fd)
            self._staging_lock_fd = None

    def transaction(self) -> _Transaction:
        """``with repo.transaction():`` commits on success, aborts on error."""
        return _Transaction(self)

    # -- writing --------------------------------------------------------------
    def _stage_prefix_dfd(self, checksum: str) -> int:
        assert self._staging_dfd is not None
        prefix = checksum[:2]
        if prefix not in self._staged_dirs:
            try:
                os.mkdir(prefix, 0o755, dir_fd=self._staging_dfd)
            except FileExistsError:
                pass
            self._staged_dirs.add(prefix)
        return self._staging_dfd

    def _require_txn(self) -> int:
        if self._staging_dfd is None:
            raise OstreeError("Cannot write objects outside a transaction")
        return self._staging_dfd

    def _finish_staged(self, tmpname: str, checksum: str, objtype: ObjectType) -> None:
        sdfd = self._stage_prefix_dfd(checksum)
        dest = obj.object_relpath(checksum, objtype, self.is_archive)[len("objects/"):]
        os.rename(tmpname, dest, src_dir_fd=sdfd, dst_dir_fd=sdfd)
        self._staged.add(checksum + objtype.value)

    def write_metadata(self, objtype: ObjectType, data: bytes, expected: str | None = None) -> str:
        """Store a metadata object; returns its checksum."""
        sdfd = self._require_txn()
        checksum = obj.sha256(data).hexdigest()
        if expected is not None and expected != checksum:
            raise OstreeError(f"Corrupted {objtype.value} object; checksum expected='{expected}' actual='{checksum}'")
        self.stats["metadata_total"] += 1
        if self.has_object_local(objtype, checksum):
            return checksum
        tmp = random_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=sdfd)
        try:
            write_all(fd, data)
            if self.per_object_fsync and not self.disable_fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._finish_staged(tmp, checksum, objtype)
        self.stats["metadata_written"] += 1
        return checksum

    def write_dirmeta(self, meta: DirMeta) -> str:
        return self.write_metadata(ObjectType.DIR_META, meta.serialize())

    def write_dirtree(self, tree: DirTree) -> str:
        return self.write_metadata(ObjectType.DIR_TREE, tree.serialize())

    def write_commit(self, commit: Commit) -> str:
        return self.write_metadata(ObjectType.COMMIT, commit.serialize())

    def write_detached_metadata(self, checksum: str, metadata: list[tuple[str, gvariant.Variant]] | None) -> None:
        rel = obj.object_relpath(checksum, ObjectType.COMMIT_META)
        if metadata is None:
            try:
                os.unlink(rel, dir_fd=self.dfd)
            except FileNotFoundError:
                pass
            return
        data = gvariant.serialize(obj.METADATA_TYPE, metadata)
        os.makedirs(os.path.join(proc_path(self.dfd, "objects"), checksum[:2]), exist_ok=True)
        write_file_atomic(self.path, rel, data, fsync=not self.disable_fsync, dir_fd=self.dfd)
        self._meta_cache.pop((ObjectType.COMMIT_META, checksum), None)

    def write_content(self, info: FileInfo, data: bytes | None = None, *, src_fd: int | None = None,
                      expected: str | None = None, trusted_checksum: str | None = None) -> str:
        """Store a content object from *data* or from the readable *src_fd* (read from offset 0).

        Returns the checksum.  ``info.size`` must be the content length for
        regular files.  *trusted_checksum* stores the object under that
        checksum without hashing it, as libostree does for trusted local
        imports (``pull-local`` without ``--untrusted``); ``fsck`` still
        catches a corrupt source later.
        """
        sdfd = self._require_txn()
        header = obj.file_header(info)
        self.stats["content_total"] += 1
        is_reg = stat.S_ISREG(info.mode)
        if is_reg and data is None:
            assert src_fd is not None
            if info.size <= CHUNK:
                data = os.pread(src_fd, info.size + 1, 0)
                if len(data) != info.size:
                    raise OstreeError("File changed size while being committed")
        if not is_reg:
            data = b""
        if trusted_checksum is not None:
            checksum = obj.validate_checksum(trusted_checksum)
        elif data is not None:
            checksum = obj.sha256(header + data).hexdigest() if len(data) < 65536 else _sha_two(header, data)
        else:
            assert src_fd is not None
            h = obj.sha256(header)
            off = 0
            while True:
                chunk = os.pread(src_fd, CHUNK, off)
                if not chunk:
                    break
                h.update(chunk)
                off += len(chunk)
            if off != info.size:
                raise OstreeError("File changed size while being committed")
            checksum = h.hexdigest()
        if expected is not None and expected != checksum:
            raise OstreeError(f"Corrupted file object; checksum expected='{expected}' actual='{checksum}'")
        if checksum + ObjectType.FILE.value in self._staged or self.has_object_local(ObjectType.FILE, checksum):
            return checksum
        if self.mode is RepoMode.BARE_USER_ONLY:
            obj.validate_bareuseronly_mode(info.mode, checksum)
        if self.is_archive and is_reg and _WRITE_THREADS > 0:
            # compression dominates: deflate in worker threads (zlib releases the GIL)
            if self._writer is None:
                self._writer = _AsyncWriter()
            self._stage_prefix_dfd(checksum)
            self._staged.add(checksum + ObjectType.FILE.value)
            own_fd = os.dup(src_fd) if data is None and src_fd is not None else None
            self._writer.submit(checksum + ObjectType.FILE.value, len(data) if data is not None else CHUNK,
                                self._write_content_object_async, sdfd, checksum, info, data, own_fd)
        else:
            self._write_content_object(sdfd, checksum, info, data, src_fd)
        self.stats["content_written"] += 1
        self.stats["content_bytes_written"] += info.size if is_reg else 0
        return checksum

    def _write_content_object_async(self, sdfd: int, checksum: str, info: FileInfo, data: bytes | None,
                                    own_fd: int | None) -> None:
        try:
            self._write_content_object(sdfd, checksum, info, data, own_fd)
        finally:
            if own_fd is not None:
                os.close(own_fd)

    def _write_content_object(self, sdfd: int, checksum: str, info: FileInfo, data: bytes | None,
                              src_fd: int | None) -> None:
        """Stage one content object; a failure names it (``Writing content object CSUM: ...``)."""
        try:
            self._write_content_object_inner(sdfd, checksum, info, data, src_fd)
        except OstreeError as e:
            raise OstreeError(f"Writing content object {checksum}: {e}", errno=e.errno) from None
        except OSError as e:
            what = f"Writing content object {checksum}"
            if e.errno == errno.E2BIG and self.mode is RepoMode.BARE_USER:
                what += ": fsetxattr(user.ostreemeta)"  # the only xattr bare-user sets itself
            raise os_error(e, what) from None

    def _write_content_object_inner(self, sdfd: int, checksum: str, info: FileInfo, data: bytes | None,
                                    src_fd: int | None) -> None:
        tmp = random_name()
        mode = self.mode
        if info.is_symlink and mode in (RepoMode.BARE, RepoMode.BARE_USER_ONLY):
            os.symlink(info.symlink_target, tmp, dir_fd=sdfd)
            if mode is RepoMode.BARE:
                os.chown(tmp, info.uid, info.gid, dir_fd=sdfd, follow_symlinks=False)
                if info.xattrs:
                    set_xattrs(proc_path(sdfd, tmp), info.xattrs)
            os.utime(tmp, (OSTREE_TIMESTAMP, OSTREE_TIMESTAMP), dir_fd=sdfd, follow_symlinks=False)
            self._finish_staged(tmp, checksum, ObjectType.FILE)
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=sdfd)
        try:
            if mode is RepoMode.ARCHIVE:
                write_all(fd, obj.zlib_file_header(info))
                if info.is_regular:
                    comp = zlib.compressobj(self.zlib_level, zlib.DEFLATED, -15)
                    for chunk in _chunks(data, src_fd):
                        write_all(fd, comp.compress(chunk))
                    write_all(fd, comp.flush())
            else:
                if info.is_symlink:  # bare-user stores the target as content
                    write_all(fd, info.symlink_target.encode("utf-8") + b"\0")  # ostree keeps the NUL
                else:
                    if data is not None:
                        write_all(fd, data)
                    else:
                        assert src_fd is not None
                        copy_fd(src_fd, fd, info.size)
                if mode is RepoMode.BARE:
                    os.fchown(fd, info.uid, info.gid)
                    os.fchmod(fd, stat.S_IMODE(info.mode))
                    if info.xattrs:
                        set_xattrs(fd, info.xattrs)
                elif mode is RepoMode.BARE_USER:
                    os.setxattr(fd, "user.ostreemeta",
                                obj.filemeta_serialize(info.uid, info.gid, info.mode, info.xattrs))
                    if info.is_regular:
                        os.fchmod(fd, (info.mode & 0o775) | stat.S_IRUSR)
                elif mode is RepoMode.BARE_USER_ONLY:
                    os.fchmod(fd, stat.S_IMODE(info.mode))
                os.utime(fd, (OSTREE_TIMESTAMP, OSTREE_TIMESTAMP))
            if self.per_object_fsync and not self.disable_fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp, dir_fd=sdfd)
            except OSError:
                pass
            raise
        os.close(fd)
        self._finish_staged(tmp, checksum, ObjectType.FILE)

    def _try_link(self, src: Repo, objtype: ObjectType, checksum: str, sdfd: int, verify: bool = False) -> bool:
        if src.mode is not self.mode and not objtype.is_meta:
            return False
        loc = src._local_stat(checksum, objtype)
        if loc is None:
            return False
        sdir, rel = loc
        if verify:
            # re-hash before trusting the source's bytes
            from pyostree.store.verify import verify_object

            verify_object(src, objtype, checksum)
        self._stage_prefix_dfd(checksum)
        dest = obj.object_relpath(checksum, objtype, self.is_archive)[len("objects/"):]
        try:
            os.link(rel, dest, src_dir_fd=sdir, dst_dir_fd=sdfd, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                return False
            raise
        self._staged.add(checksum + objtype.value)
        return True

    # -- commit partial state -------------------------------------------------
    def mark_commit_partial(self, checksum: str, partial: bool) -> None:
        name = f"state/{checksum}.commitpartial"
        if partial:
            os.makedirs(os.path.join(proc_path(self.dfd, "state")), exist_ok=True)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644, dir_fd=self.dfd)
            os.close(fd)
        else:
            try:
                os.unlink(name, dir_fd=self.dfd)
            except FileNotFoundError:
                pass

    def is_commit_partial(self, checksum: str) -> bool:
        try:
            os.stat(f"state/{checksum}.commitpartial", dir_fd=self.dfd)
            return True
        except FileNotFoundError:
            return False

    def delete_object(self, objtype: ObjectType, checksum: str) -> None:
        rel = self._loose_path(checksum, objtype)
        try:
            os.unlink(rel, dir_fd=self.dfd)
        except FileNotFoundError:
            pass
        self._meta_cache.pop((objtype, checksum), None)
        if objtype is ObjectType.COMMIT:
            try:
                os.unlink(obj.object_relpath(checksum, ObjectType.COMMIT_META), dir_fd=self.dfd)
            except FileNotFoundError:
                pass
            self.mark_commit_partial(checksum, False)

    # -- refs (see refs.py) ---------------------------------------------------
    def resolve_rev(self, rev: str, allow_noent: bool = False) -> str | None:
        from pyostree.store import refs as _refs

        return _refs.resolve_rev(self, rev, allow_noent)


# ---------------------------------------------------------------------------
# object-writing helpers


def _sha_two(a: bytes, b: bytes) -> str:
    h = obj.sha256(a)
    h.update(b)
    return h.hexdigest()


def _chunks(data: bytes | None, src_fd: int | None) -> Iterator[bytes]:
    if data is not None:
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]
        return
    assert src_fd is not None
    off = 0
    while True:
        chunk = os.pread(src_fd, CHUNK, off)
        if not chunk:
            return
        off += len(chunk)
        yield chunk
