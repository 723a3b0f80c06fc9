"""Committing trees: directories (and refs, tarballs) into a MutableTree, then a commit.

The walk reads each directory once with ``os.scandir`` relative to a directory
fd, applies a :class:`CommitModifier` (ownership, statoverride, skip list,
permission canonicalization, xattr filtering) to every entry exactly as
``ostree commit`` does, and stores objects through the repository.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterable

from pyostree.errors import OstreeError, os_error
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.files import list_xattrs
from pyostree.store.objects import Commit, DirMeta, FileInfo, ObjectType
from pyostree.store.repo import Repo, RepoMode

Metadata = list[tuple[str, gvariant.Variant]]


class FilterResult:
    ALLOW = 0
    SKIP = 1


class QuotedEntry:
    """A regular file standing in for something ostree cannot store (see ``quoting.py``)."""

    __slots__ = ("content", "info", "name")

    def __init__(self, name: str, info: FileInfo, content: bytes = b"") -> None:
        self.name = name
        self.info = info
        self.content = content


SpecialCallback = Callable[[str, os.stat_result, obj.Xattrs], "QuotedEntry | None"]
"""(commit path, lstat, xattrs) of a device node/FIFO/socket -> its stand-in, or None to refuse."""
DirExtrasCallback = Callable[[str, int, bool], "list[QuotedEntry]"]
"""(commit path, directory fd, whether its xattrs are kept) -> extra files for that directory
(e.g. the opaque marker)."""


class CommitModifier:
    """Per-entry rewriting applied while committing (``OstreeRepoCommitModifier``).

    Keyword arguments only; a plain class, as importing dataclasses costs
    start-up time.
    """

    def __init__(self, *, owner_uid: int | None = None, owner_gid: int | None = None,
                 skip_xattrs: bool = False, canonical_permissions: bool = False,
                 mode_ro_executables: bool = False, mode_adds: dict[str, int] | None = None,
                 mode_overrides: dict[str, int] | None = None, skip_list: set[str] | None = None,
                 devino_canonical: bool = False, link_checkout_speedup: bool = False,
                 consume: bool = False, generate_sizes: bool = False,
                 xattr_callback: Callable[[str, FileInfo], obj.Xattrs | None] | None = None,
                 filter_callback: Callable[[str, FileInfo], int] | None = None,
                 special_callback: SpecialCallback | None = None,
                 dir_extras_callback: DirExtrasCallback | None = None,
                 object_seen: Callable[[str, ObjectType], None] | None = None) -> None:
        self.owner_uid = owner_uid
        self.owner_gid = owner_gid
        self.skip_xattrs = skip_xattrs
        self.canonical_permissions = canonical_permissions
        self.mode_ro_executables = mode_ro_executables
        self.mode_adds: dict[str, int] = mode_adds if mode_adds is not None else {}
        self.mode_overrides: dict[str, int] = mode_overrides if mode_overrides is not None else {}
        self.skip_list: set[str] = skip_list if skip_list is not None else set()
        self.devino_canonical = devino_canonical
        self.link_checkout_speedup = link_checkout_speedup
        self.consume = consume
        self.generate_sizes = generate_sizes
        self.xattr_callback = xattr_callback
        self.filter_callback = filter_callback
        """Extra hook run after the built-in rules: may edit *info* and return SKIP."""
        self.special_callback = special_callback
        """Maps entries that are neither regular files, symlinks nor directories to regular files."""
        self.dir_extras_callback = dir_extras_callback
        """Adds files to each committed directory (run before its entries)."""
        self.object_seen = object_seen
        """Told about objects reused without a write (for --generate-sizes bookkeeping)."""
        self.matched_statoverrides: set[str] = set()
        self.matched_skips: set[str] = set()

    def is_identity(self) -> bool:
        return (self.owner_uid is None and self.owner_gid is None and not self.skip_xattrs
                and not self.canonical_permissions and not self.mode_ro_executables
                and not self.mode_adds and not self.mode_overrides and not self.skip_list
                and self.xattr_callback is None and self.filter_callback is None)

    def apply(self, path: str, info: FileInfo) -> int:
        """Rewrite *info* in place for the entry at commit path *path*; SKIP or ALLOW.

        The order is ostree's: the commit filter (owner, ro-executables,
        statoverride, skip list, extra callback) runs first, then permission
        canonicalization, then xattr skipping.
        """
        result = FilterResult.ALLOW
        if self.owner_uid is not None:
            info.uid = self.owner_uid
        if self.owner_gid is not None:
            info.gid = self.owner_gid
        mode = info.mode
        if stat.S_ISREG(mode) and self.mode_ro_executables and mode & 0o111:
            mode &= ~0o222
            info.mode = mode
        # ostree's filter consumes a statoverride "add" and a skip-list entry on
        # first match; directories go through the filter twice (once to decide
        # whether to descend, once for their metadata), so an add never reaches
        # a subdirectory's dirmeta.
        if path in self.mode_adds and path not in self.matched_statoverrides:
            info.mode = mode | self.mode_adds[path]
            self.matched_statoverrides.add(path)
        elif path in self.mode_overrides:
            info.mode = stat.S_IFMT(info.mode) | self.mode_overrides[path]
            self.matched_statoverrides.add(path)
        if path in self.skip_list and path not in self.matched_skips:
            self.matched_skips.add(path)
            result = FilterResult.SKIP
        if self.filter_callback is not None and self.filter_callback(path, info) == FilterResult.SKIP:
            result = FilterResult.SKIP
        if self.canonical_permissions:
            if stat.S_ISREG(info.mode):
                info.mode &= stat.S_IFREG | 0o755
            elif stat.S_ISDIR(info.mode):
                info.mode &= stat.S_IFDIR | 0o755
            info.uid = info.gid = 0
        if self.skip_xattrs or self.canonical_permissions:
            info.xattrs = []
        return result


def _offset_width(body: int, n_offsets: int) -> int:
    # GVariant framing offsets: the smallest width that can address the whole container
    if body + n_offsets <= 0xFF:
        return 1
    if body + 2 * n_offsets <= 0xFFFF:
        return 2
    return 4 if body + 4 * n_offsets <= 0xFFFFFFFF else 8


_BYTES = [bytes((i,)) for i in range(256)]


def _framed_array(elements: list[bytes]) -> bytes:
    """A GVariant array of variable-sized, byte-aligned elements."""
    if not elements:
        return b""
    ends = []
    n = 0
    for el in elements:
        n += len(el)
        ends.append(n)
    w = _offset_width(n, len(ends))
    if w == 1:
        return b"".join(elements) + bytes(ends)
    return b"".join(elements) + b"".join(o.to_bytes(w, "little") for o in ends)


def serialize_dirtree(files: Iterable[tuple[str, str]], dirs: Iterable[tuple[str, str, str]]) -> bytes:
    """``DirTree(sorted files, sorted dirs).serialize()``, without the generic GVariant writer.

    Entries are sorted here by their UTF-8 names, as ostree orders them.
    The result is checked against the generic writer in tests/test_commit_compat.py.
    """
    fel = []
    for name, c in sorted((n.encode("utf-8"), c) for n, c in files):
        if b"\0" in name:
            raise gvariant.GVariantError("embedded NUL in GVariant string")
        s_end = len(name) + 1
        cb = bytes.fromhex(c)
        size = s_end + len(cb)
        fel.append(name + b"\0" + cb + (_BYTES[s_end] if size < 0xFF
                                         else s_end.to_bytes(_offset_width(size, 1), "little")))
    del_ = []
    for name, t, m in sorted((n.encode("utf-8"), t, m) for n, t, m in dirs):
        if b"\0" in name:
            raise gvariant.GVariantError("embedded NUL in GVariant string")
        s_end = len(name) + 1
        tb = bytes.fromhex(t)
        mb = bytes.fromhex(m)
        t_end = s_end + len(tb)
        w = _offset_width(t_end + len(mb), 2)
        del_.append(name + b"\0" + tb + mb + t_end.to_bytes(w, "little") + s_end.to_bytes(w, "little"))
    a = _framed_array(fel)
    body = a + _framed_array(del_)
    return body + len(a).to_bytes(_offset_width(len(body), 1), "little")


class MutableTree:
    """An in-memory directory being assembled for a commit (``OstreeMutableTree``).

    A tree may stay *lazy*: backed by an existing dirtree checksum until it is modified.
    """

    __slots__ = ("_contents_checksum", "_repo", "files", "metadata_checksum", "subdirs")

    def __init__(self, repo: Repo | None = None, contents_checksum: str | None = None,
                 metadata_checksum: str | None = None) -> None:
        self.files: dict[str, str] = {}
        self.subdirs: dict[str, MutableTree] = {}
        self.metadata_checksum = metadata_checksum
        self._repo = repo
        self._contents_checksum = contents_checksum
        if contents_checksum is not None:
            assert repo is not None
            self._load()

    def _load(self) -> None:
        assert self._repo is not None and self._contents_checksum is not None
        tree = self._repo.load_dirtree(self._contents_checksum)
        for name, c in tree.files:
            self.files[name] = c
        for name, tc, mc in tree.dirs:
            self.subdirs[name] = _LazyTree(self._repo, tc, mc)

    def ensure_dir(self, name: str) -> MutableTree:
        obj.validate_filename(name)
        if name in self.files:
            raise OstreeError(f"Can't replace file with directory: {name}")
        sub = self.subdirs.get(name)
        if sub is None:
            sub = MutableTree()
            self.subdirs[name] = sub
        elif isinstance(sub, _LazyTree):
            sub = sub.materialize()
            self.subdirs[name] = sub
        self._contents_checksum = None
        return sub

    def replace_file(self, name: str, checksum: str) -> None:
        obj.validate_filename(name)
        if name in self.subdirs:
            raise OstreeError(f"Can't replace directory with file: {name}")
        self.files[name] = checksum
        self._contents_checksum = None

    def remove(self, name: str, allow_noent: bool = False) -> None:
        if self.files.pop(name, None) is None and self.subdirs.pop(name, None) is None and not allow_noent:
            raise OstreeError(f"No such file or directory: {name}")
        self._contents_checksum = None

    def walk(self, path: list[str]) -> MutableTree:
        t = self
        for part in path:
            if not part:
                continue
            sub = t.subdirs.get(part)
            if sub is None:
                raise OstreeError(f"No such file or directory: {part}")
            if isinstance(sub, _LazyTree):
                sub = sub.materialize()
                t.subdirs[part] = sub
            t = sub
        return t

    def write(self, repo: Repo) -> str:
        """Write dirtree objects bottom-up; returns the contents checksum."""
        if self._contents_checksum is not None:
            return self._contents_checksum
        dirs = []
        for name, sub in self.subdirs.items():
            tc = sub.write(repo)
            if sub.metadata_checksum is None:
                raise OstreeError(f"Directory {name} has no metadata")
            dirs.append((name, tc, sub.metadata_checksum))
        self._contents_checksum = repo.write_metadata(ObjectType.DIR_TREE,
                                                      serialize_dirtree(self.files.items(), dirs))
        return self._contents_checksum

    def merge_from(self, other: MutableTree) -> None:
        """Overlay *other* on top of this tree (``--tree`` combining)."""
        if other.metadata_checksum is not None:
            self.metadata_checksum = other.metadata_checksum
        for name, c in other.files.items():
            if name in self.subdirs:
                raise OstreeError(f"Can't replace directory with file: {name}")
            self.files[name] = c
        for name, sub in other.subdirs.items():
            if name in self.files:
                raise OstreeError(f"Can't replace file with directory: {name}")
            mine = self.subdirs.get(name)
            if mine is None:
                self.subdirs[name] = sub
            else:
                if isinstance(mine, _LazyTree):
                    mine = mine.materialize()
                    self.subdirs[name] = mine
                if isinstance(sub, _LazyTree):
                    sub = sub.materialize()
                mine.merge_from(sub)
        self._contents_checksum = None


class _LazyTree(MutableTree):
    """A subdirectory still identical to a stored dirtree."""

    __slots__ = ()

    def __init__(self, repo: Repo, contents: str, meta: str) -> None:
        MutableTree.__init__(self, None, None, meta)
        self._repo = repo
        self._contents_checksum = contents

    def materialize(self) -> MutableTree:
        assert self._repo is not None and self._contents_checksum is not None
        return MutableTree(self._repo, self._contents_checksum, self.metadata_checksum)

    def write(self, repo: Repo) -> str:
        assert self._contents_checksum is not None
        if self._repo is not repo and not repo.has_object(ObjectType.DIR_TREE, self._contents_checksum):
            return self.materialize().write(repo)
        return self._contents_checksum


# ---------------------------------------------------------------------------


def _info_from_stat(st: os.stat_result) -> FileInfo:
    return FileInfo(st.st_mode, st.st_uid, st.st_gid, st.st_size if stat.S_ISREG(st.st_mode) else 0)


# Filesystems whose directory entries carry the inode number stat() reports
# (d_ino == st_ino) for every non-directory, and on which such a file's st_dev
# is its directory's.  Not overlayfs (d_ino may be a lower layer's inode), not
# FUSE or network filesystems.
_EXACT_D_INO_FS = frozenset((b"ext2", b"ext3", b"ext4", b"xfs", b"btrfs", b"tmpfs"))
_mountinfo: list[tuple[int, bytes, bytes]] | None = None
_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _mounts() -> list[tuple[int, bytes, bytes]] | None:
    """(st_dev, mount point, fs type) of this process's mounts; None if unknown."""
    global _mountinfo
    if _mountinfo is None:
        out = []
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                lines = f.read().splitlines()
            for line in lines:
                fields = line.split(b" ")
                sep = fields.index(b"-", 6)
                major, minor = fields[2].split(b":")
                point = fields[4]
                if b"\\" in point:  # octal escapes for space, tab, newline, backslash
                    point = re.sub(rb"\\([0-7]{3})", lambda m: bytes((int(m.group(1), 8),)), point)
                out.append((os.makedev(int(major), int(minor)), point, fields[sep + 1]))
        except (OSError, ValueError, IndexError):
            return None
        _mountinfo = out
    return _mountinfo


def exact_d_ino_dev(dfd: int) -> int | None:
    """The st_dev of directory *dfd* if, for everything below it, the directory
    entry's d_ino and the directory's st_dev are the file's (st_ino, st_dev).

    That holds on the filesystems of ``_EXACT_D_INO_FS`` as long as nothing is
    mounted below the directory (a mount point's entry names the inode it
    hides).  None when that cannot be established: callers then stat.
    """
    mounts = _mounts()
    if mounts is None:
        return None
    st = os.fstat(dfd)
    try:
        path = os.readlink(f"/proc/self/fd/{dfd}")
        pst = os.stat(path)
    except OSError:
        return None
    if (pst.st_dev, pst.st_ino) != (st.st_dev, st.st_ino):
        return None  # not reachable under that name from here (deleted, other root)
    under = os.fsencode(path).rstrip(b"/") + b"/"
    fstype = None
    for dev, point, fs in mounts:
        if point.startswith(under):
            return None
        if dev == st.st_dev:
            if fstype is not None and fs != fstype:
                return None
            fstype = fs
    return st.st_dev if fstype in _EXACT_D_INO_FS else None


class DevInoCache:
    """(st_dev, st_ino) -> checksum of the repo's loose content objects (link-checkout-speedup).

    Like ostree it covers every loose object of the repository and its
    parents; the inode numbers come from the directory entries where they are
    known to be exact (see :func:`exact_d_ino_dev`), from a stat otherwise.
    """

    def __init__(self, repo: Repo) -> None:
        self.by_dev: dict[int, dict[int, str]] = {}
        """st_dev -> st_ino -> "XX" + "YYYY….file" (the object's path in objects/, without '/')"""
        r: Repo | None = repo
        while r is not None:
            if r.mode is not RepoMode.ARCHIVE:
                self._scan(r._objects_dfd)
            r = r.parent

    def _scan(self, objfd: int) -> None:
        dev = exact_d_ino_dev(objfd)
        by_dev = self.by_dev
        for prefix in os.listdir(objfd):
            if len(prefix) != 2:
                continue
            exact = dev
            try:
                fd = os.open(prefix, _DIR_NOFOLLOW, dir_fd=objfd)
            except NotADirectoryError:
                exact = None  # a symlink (to a directory, perhaps elsewhere) or not a directory
                try:
                    fd = os.open(prefix, _DIR_NOFOLLOW & ~os.O_NOFOLLOW, dir_fd=objfd)
                except NotADirectoryError:
                    continue
            try:
                with os.scandir(fd) as it:
                    if exact is not None:
                        m = by_dev.get(exact)
                        if m is None:
                            m = by_dev[exact] = {}
                        for e in it:
                            name = e.name
                            if name.endswith(".file"):
                                m[e.inode()] = prefix + name
                    else:
                        for e in it:
                            name = e.name
                            if name.endswith(".file"):
                                st = e.stat(follow_symlinks=False)
                                by_dev.setdefault(st.st_dev, {})[st.st_ino] = prefix + name
            finally:
                os.close(fd)

    def lookup(self, dev: int, ino: int) -> str | None:
        m = self.by_dev.get(dev)
        if m is None:
            return None
        hit = m.get(ino)
        return None if hit is None else hit[:-5]

    def get(self, st: os.stat_result) -> str | None:
        return self.lookup(st.st_dev, st.st_ino)


class DirectoryCommitter:
    """Writes a directory tree on disk into a MutableTree."""

    def __init__(self, repo: Repo, modifier: CommitModifier | None = None) -> None:
        self.repo = repo
        self.modifier = modifier or CommitModifier()
        if repo.mode is RepoMode.BARE_USER_ONLY:
            self.modifier.canonical_permissions = True
        self.read_xattrs = not (repo.disable_xattrs or self.modifier.skip_xattrs
                                or self.modifier.canonical_permissions)
        self.devino: DevInoCache | None = None
        if self.modifier.link_checkout_speedup or self.modifier.devino_canonical:
            self.devino = DevInoCache(repo)
        self._identity = self.modifier.is_identity()
        self._repo_dev = os.fstat(repo.dfd).st_dev
        self._staging_id: tuple[int, int] | None = None
        self._dirmetas: dict[tuple[int, int, int, tuple[tuple[bytes, bytes], ...]], str] = {}
        self.stream_dirtrees = False
        """Write each finished subdirectory's dirtree during the walk (bounded memory).
        Only for the last tree of a commit: a later tree merged into a streamed
        directory would leave its first dirtree unreferenced in the repo."""
        self._hits_by_d_ino = False

    def _is_own_staging_dir(self, st: os.stat_result) -> bool:
        sdfd = self.repo._staging_dfd
        if sdfd is None:
            return False
        if self._staging_id is None:
            sst = os.fstat(sdfd)
            self._staging_id = (sst.st_dev, sst.st_ino)
        return (st.st_dev, st.st_ino) == self._staging_id

    def _modify(self, path: str, info: FileInfo) -> int:
        if self._identity:
            return FilterResult.ALLOW
        return self.modifier.apply(path, info)

    def _write_dirmeta(self, info: FileInfo) -> str:
        """write_dirmeta, serializing each distinct directory metadata once per tree walk."""
        key = (info.uid, info.gid, info.mode, tuple(info.xattrs))
        csum = self._dirmetas.get(key)
        if csum is None:
            csum = self._dirmetas[key] = self.repo.write_dirmeta(
                DirMeta(info.uid, info.gid, info.mode, info.xattrs))
        else:
            self.repo.stats["metadata_total"] += 1  # as a write of an existing object counts
        return csum

    def commit_dir(self, path: str, mtree: MutableTree) -> None:
        """Add the contents of directory *path* (and its metadata) to *mtree*."""
        try:
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise os_error(e, f"opendir({path})") from None
        self._dirmetas = {}
        # A hardlink into the repository is recognised from its directory entry's
        # inode number alone, without a stat, where those are exact; only
        # when the hit needs no further look at the file (see _commit_file).
        self._hits_by_d_ino = (self.devino is not None
                               and (self.modifier.devino_canonical or self._identity)
                               and exact_d_ino_dev(dfd) is not None)
        try:
            st = os.fstat(dfd)
            info = _info_from_stat(st)
            if self.read_xattrs:
                info.xattrs = list_xattrs(dfd)
            if self._modify("/", info) == FilterResult.SKIP:
                return
            mtree.metadata_checksum = self._write_dirmeta(info)
            self._walk(dfd, st, "/", mtree)
        finally:
            os.close(dfd)
        if self.modifier.consume:
            import shutil

            shutil.rmtree(path, ignore_errors=True)

    def _walk(self, dfd: int, dst: os.stat_result, dirpath: str, mtree: MutableTree) -> None:
        """Commit the entries of directory *dfd* (whose fstat is *dst*) into *mtree*."""
        with os.scandir(dfd) as it:
            entries = list(it)
        if self._is_own_staging_dir(dst):
            # committing a tree that contains this very repository: our
            # temporary files come and go (ostree's are unnamed O_TMPFILEs)
            entries = [e for e in entries if not e.name.startswith("tmp.")]
        prefix = dirpath if dirpath.endswith("/") else dirpath + "/"
        if self.modifier.dir_extras_callback is not None:
            names = {e.name for e in entries}
            for extra in self.modifier.dir_extras_callback(dirpath, dfd, self.read_xattrs):
                self._add_quoted(mtree, prefix, extra, names, dirpath)
        hits: dict[int, str] | None = None
        if self._hits_by_d_ino:
            assert self.devino is not None
            hits = self.devino.by_dev.get(dst.st_dev)
        stats = self.repo.stats
        files = mtree.files
        for e in entries:
            name = e.name
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise OstreeError(f"Invalid UTF-8 in filename {shown}") from None
            if hits is not None and not e.is_dir(follow_symlinks=False):
                hit = hits.get(e.inode())
                if hit is not None:
                    # mtree.replace_file(), less the name check: a directory entry's name is valid
                    if name in mtree.subdirs:
                        raise OstreeError(f"Can't replace directory with file: {name}")
                    files[name] = hit[:-5]
                    mtree._contents_checksum = None
                    stats["content_cache_hits"] += 1
                    continue
            path = prefix + name
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                if not self._identity and self._modify(path, _info_from_stat(st)) == FilterResult.SKIP:
                    continue
                sub_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    sub_st = os.fstat(sub_fd)
                    info = _info_from_stat(sub_st)
                    if self.read_xattrs:
                        info.xattrs = list_xattrs(sub_fd)
                    if self._modify(path, info) == FilterResult.SKIP:
                        continue
                    child = mtree.ensure_dir(name)
                    child.metadata_checksum = self._write_dirmeta(info)
                    self._walk(sub_fd, sub_st, path, child)
                    if self.stream_dirtrees:
                        # done with it: store its dirtree now and keep only the
                        # checksums, so memory follows the tree's depth and
                        # widest directory, not its file count
                        mtree.subdirs[name] = _LazyTree(self.repo, child.write(self.repo),
                                                        child.metadata_checksum)
                finally:
                    os.close(sub_fd)
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                csum = self._commit_file(dfd, name, path, st)
                if csum is not None:
                    mtree.replace_file(name, csum)
            else:
                cb = self.modifier.special_callback
                quoted = None
                if cb is not None:
                    xattrs = list_xattrs(name, dir_fd=dfd) if self.read_xattrs else []
                    quoted = cb(path, st, xattrs)
                if quoted is None:
                    raise OstreeError(f"Not a regular file or symlink: {name}"
                                      f"{_special_hint(_disk_path(dfd, name, path), st)}")
                # skip lists and statoverrides name the entry as it is on disk
                self._add_quoted(mtree, prefix, quoted, {x.name for x in entries}, path, filter_path=path)

    def _add_quoted(self, mtree: MutableTree, prefix: str, q: QuotedEntry, names: set[str],
                    source: str, filter_path: str | None = None) -> None:
        if q.name in names:
            raise OstreeError(f"Quoted name {prefix}{q.name} for {source} conflicts with an existing file")
        q.info.size = len(q.content)
        if self._modify(filter_path or prefix + q.name, q.info) == FilterResult.SKIP:
            return
        mtree.replace_file(q.name, self.repo.write_content(q.info, q.content))

    def _commit_file(self, dfd: int, name: str, path: str, st: os.stat_result) -> str | None:
        repo = self.repo
        if self.devino is not None:
            cached = self.devino.get(st)
            if cached is not None:
                if self.modifier.devino_canonical or self._identity:
                    # the file is the object itself; nothing would rewrite its metadata
                    repo.stats["content_cache_hits"] += 1
                    return cached
                stored = repo.load_file(cached).info
                modified = FileInfo(stored.mode, stored.uid, stored.gid, stored.size,
                                    stored.symlink_target, list(stored.xattrs))
                if self._modify(path, modified) == FilterResult.SKIP:
                    return None
                if (modified.mode, modified.uid, modified.gid, modified.xattrs) == \
                        (stored.mode, stored.uid, stored.gid, stored.xattrs):
                    repo.stats["content_cache_hits"] += 1
                    return cached
        info = _info_from_stat(st)
        if stat.S_ISLNK(st.st_mode):
            info.symlink_target = os.readlink(name, dir_fd=dfd)
            try:
                info.symlink_target.encode("utf-8")
            except UnicodeEncodeError:
                raise OstreeError(f"Invalid UTF-8 in symlink target of {path}") from None
            if self.read_xattrs:
                info.xattrs = list_xattrs(name, dir_fd=dfd)
            if self._modify(path, info) == FilterResult.SKIP:
                return None
            return repo.write_content(info)
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dfd)
        try:
            if self.read_xattrs:
                info.xattrs = list_xattrs(fd)
            before = (info.mode, info.uid, info.gid)
            if self._modify(path, info) == FilterResult.SKIP:
                return None
            if self._can_adopt(st, before, info):
                return self._adopt(dfd, name, fd, info)
            return repo.write_content(info, src_fd=fd)
        finally:
            os.close(fd)

    def _can_adopt(self, st: os.stat_result, before: tuple[int, int, int], info: FileInfo) -> bool:
        """ostree's --consume fast path: move the file itself into the repository.

        Only for bare repos when nothing about the file was modified, and for
        bare-user-only (whose permissions are canonicalized in place).
        """
        if not self.modifier.consume or st.st_dev != self._repo_dev:
            return False
        if self.repo.mode is RepoMode.BARE:
            return self.read_xattrs and before == (info.mode, info.uid, info.gid)
        return self.repo.mode is RepoMode.BARE_USER_ONLY

    def _adopt(self, dfd: int, name: str, fd: int, info: FileInfo) -> str:
        repo = self.repo
        h = hashlib.sha256(obj.file_header(info))
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        csum = h.hexdigest()
        repo.stats["content_total"] += 1
        if repo.has_object_local(ObjectType.FILE, csum):
            os.unlink(name, dir_fd=dfd)  # we own the file; the stored object is the same
            return csum
        if repo.mode is RepoMode.BARE_USER_ONLY:
            os.fchmod(fd, info.mode & 0o755)
        sdfd = repo._stage_prefix_dfd(csum)
        dest = obj.object_relpath(csum, ObjectType.FILE, repo.is_archive)[len("objects/"):]
        os.rename(name, dest, src_dir_fd=dfd, dst_dir_fd=sdfd)
        repo._staged.add(csum + ObjectType.FILE.value)
        repo.stats["content_written"] += 1
        repo.stats["content_bytes_written"] += info.size
        return csum


def mtree_from_commit(repo: Repo, rev: str) -> MutableTree:
    """A MutableTree holding the root of commit *rev* (``--tree=ref=``)."""
    csum = repo.resolve_rev(rev)
    assert csum is not None
    c = repo.load_commit(csum)
    return MutableTree(repo, c.root_contents, c.root_meta)


def commit_timestamp_now() -> int:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (reproducible builds), parsed like ostree."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None:
        return int(time.time())
    m = re.match(r"\s*([+-]?\d+)", env)  # g_ascii_strtoll: a leading number, rest ignored
    if m is None:
        raise OstreeError("Failed to convert SOURCE_DATE_EPOCH")
    value = int(m.group(1))
    if not -(1 << 63) <= value < (1 << 63):
        raise OstreeError("Parsing SOURCE_DATE_EPOCH: Numerical result out of range")
    return value


def write_commit(repo: Repo, *, parent: str | None, subject: str, body: str,
                 metadata: Metadata, root_contents: str, root_meta: str,
                 timestamp: int | None = None) -> str:
    """Write a commit object; returns its checksum."""
    if timestamp is None:
        timestamp = commit_timestamp_now()
    commit = Commit(metadata, parent, [], subject, body, timestamp, root_contents, root_meta)
    return repo.write_commit(commit)


def commit_directory(repo: Repo, path: str, *, subject: str = "", body: str = "",
                     branch: str | None = None, parent: str | None = None,
                     metadata: Metadata | None = None, modifier: CommitModifier | None = None,
                     timestamp: int | None = None) -> str:
    """Library convenience: commit directory *path*, optionally moving *branch*."""
    from pyostree.store import refs

    with repo.transaction():
        mtree = MutableTree()
        committer = DirectoryCommitter(repo, modifier)
        committer.stream_dirtrees = True
        committer.commit_dir(path, mtree)
        contents = mtree.write(repo)
        assert mtree.metadata_checksum is not None
        if parent is None and branch is not None:
            parent = refs.resolve_rev(repo, branch, allow_noent=True)
        csum = write_commit(repo, parent=parent, subject=subject, body=body,
                            metadata=metadata or [], root_contents=contents,
                            root_meta=mtree.metadata_checksum, timestamp=timestamp)
        if branch is not None:
            refs.set_ref(repo, None, branch, csum)
    return csum


def write_ref_tree_to_mtree(repo: Repo, rev: str, mtree: MutableTree,
                            modifier: CommitModifier | None = None) -> None:
    """Overlay the tree of commit *rev* onto *mtree* (``--tree=ref=REV``).

    Without a modifier the stored dirtrees are reused as they are; with one,
    every entry is re-filtered and content objects whose metadata changes are
    written again with the new header.
    """
    csum = repo.resolve_rev(rev)
    assert csum is not None
    c = repo.load_commit(csum)
    if modifier is None or (modifier.is_identity() and not modifier.generate_sizes):
        mtree.merge_from(MutableTree(repo, c.root_contents, c.root_meta))
        return
    if repo.mode is RepoMode.BARE_USER_ONLY:
        modifier.canonical_permissions = True
    _filter_tree(repo, c.root_contents, c.root_meta, "/", mtree, modifier)


def _filter_tree(repo: Repo, contents: str, meta: str, path: str, mtree: MutableTree,
                 modifier: CommitModifier) -> None:
    dm = repo.load_dirmeta(meta)
    info = FileInfo(dm.mode, dm.uid, dm.gid, 0, "", list(dm.xattrs))
    if modifier.apply(path, info) == FilterResult.SKIP:
        return
    mtree.metadata_checksum = repo.write_dirmeta(DirMeta(info.uid, info.gid, info.mode, info.xattrs))
    tree = repo.load_dirtree(contents)
    prefix = path if path.endswith("/") else path + "/"
    for name, fcsum in tree.files:
        co = repo.load_file(fcsum)
        finfo = FileInfo(co.info.mode, co.info.uid, co.info.gid, co.info.size,
                         co.info.symlink_target, list(co.info.xattrs))
        if modifier.apply(prefix + name, finfo) == FilterResult.SKIP:
            continue
        if (finfo.mode, finfo.uid, finfo.gid, finfo.xattrs) == \
                (co.info.mode, co.info.uid, co.info.gid, co.info.xattrs):
            mtree.replace_file(name, fcsum)
            if modifier.object_seen is not None:  # ostree re-writes it: it counts for --generate-sizes
                modifier.object_seen(fcsum, ObjectType.FILE)
            continue
        data = co.read() if finfo.is_regular else b""
        mtree.replace_file(name, repo.write_content(finfo, data))
    for name, tc, mc in tree.dirs:
        sdm = repo.load_dirmeta(mc)
        probe = FileInfo(sdm.mode, sdm.uid, sdm.gid, 0, "", list(sdm.xattrs))
        if modifier.apply(prefix + name, probe) == FilterResult.SKIP:
            continue
        sub = mtree.ensure_dir(name)
        _filter_tree(repo, tc, mc, prefix + name, sub, modifier)


def _disk_path(dfd: int, name: str, fallback: str) -> str:
    try:
        return os.path.join(os.readlink(f"/proc/self/fd/{dfd}"), name)
    except OSError:
        return fallback


def _special_hint(path: str, st: os.stat_result) -> str:
    """What the entry at *path* is and which flag commits it (after ostree's own message)."""
    mode = st.st_mode
    if stat.S_ISCHR(mode) and st.st_rdev == 0:
        return f" ({path} is an overlayfs whiteout, a char device 0:0; use --retarget-whiteouts to commit it)"
    kind = ("char device" if stat.S_ISCHR(mode) else "block device" if stat.S_ISBLK(mode)
            else "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "special file")
    if kind.endswith("device"):
        kind += f" {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f" ({path} is a {kind}; use --quote-special-files to commit it)"
