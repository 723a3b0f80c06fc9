"""Comparing trees (``ostree diff``) and checksumming local files (``ostree checksum``).

A side of a diff is either a directory in a commit (:class:`treewalk.Node`) or
a local directory.  Entries are compared by their ostree checksum (content
checksum for files, dirmeta checksum for directories), so a change of mode,
ownership or xattrs counts as a modification, as in ``ostree_diff_dirs``.
"""

from __future__ import annotations

import os
import stat

from pyostree.errors import NotFoundError, OstreeError, os_error
from pyostree.store import objects as obj
from pyostree.store.objects import DirMeta, FileInfo, Record
from pyostree.tree.treewalk import Node

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo

_CHUNK = 1 << 20


def _local_xattrs(path: str) -> obj.Xattrs:
    from pyostree.store.files import list_xattrs

    return list_xattrs(path)


def checksum_local(path: str, *, ignore_xattrs: bool = False, owner_uid: int = -1,
                   owner_gid: int = -1) -> str:
    """The ostree checksum of a local path: content checksum, or dirmeta checksum for directories."""
    try:
        st = os.lstat(path)
    except OSError as e:
        if ignore_xattrs:  # ostree_checksum_file_at
            raise OstreeError(f"fstatat({path}): {e.strerror}", errno=e.errno) from None
        raise OstreeError(f"Error when getting information for file “{os.path.abspath(path)}”: "
                          f"{e.strerror}", errno=e.errno) from None
    uid = owner_uid if owner_uid >= 0 else st.st_uid
    gid = owner_gid if owner_gid >= 0 else st.st_gid
    try:
        xattrs = [] if ignore_xattrs else _local_xattrs(path)
    except OSError as e:
        raise os_error(e, f"llistxattr({path})") from None
    if stat.S_ISDIR(st.st_mode):
        return obj.metadata_checksum(DirMeta(uid, gid, st.st_mode, xattrs).serialize())
    target = ""
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
    info = FileInfo(st.st_mode, uid, gid, st.st_size if stat.S_ISREG(st.st_mode) else 0, target, xattrs)
    h = obj.sha256(obj.file_header(info))
    if stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except OSError as e:
            raise os_error(e, f"opening {path}") from None
    return h.hexdigest()


class _Local(Record):
    """A local file or directory on one side of a diff."""

    def __init__(self, path: str, rel: str, st: os.stat_result) -> None:
        self.path = path
        self.rel = rel
        self.st = st

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def ftype(self) -> int:
        return stat.S_IFMT(self.st.st_mode)


Side = Node | _Local


class DiffResult(Record):
    def __init__(self, modified: list[tuple[str, str]] | None = None, removed: list[str] | None = None,
                 added: list[str] | None = None) -> None:
        self.modified: list[tuple[str, str]] = modified if modified is not None else []
        """(path as printed relative to the source side, path on the target side)."""
        self.removed: list[str] = removed if removed is not None else []
        self.added: list[str] = added if added is not None else []

    def format(self) -> str:
        lines = [f"M    {p}" for p, _ in self.modified]
        lines += [f"D    {p}" for p in self.removed]
        lines += [f"A    {p}" for p in self.added]
        return "".join(line + "\n" for line in lines)


class DiffOptions(Record):
    def __init__(self, ignore_xattrs: bool = False, owner_uid: int = -1, owner_gid: int = -1) -> None:
        self.ignore_xattrs = ignore_xattrs
        self.owner_uid = owner_uid
        self.owner_gid = owner_gid



def _label(x: Side) -> str:
    # repository paths print as absolute paths, local ones relative to the diff's base
    return x.path if isinstance(x, Node) else x.rel


def _ftype(x: Side) -> int:
    if isinstance(x, Node):
        return stat.S_IFDIR if x.is_dir else stat.S_IFMT(x.info.mode)
    return x.ftype


def _checksum(x: Side, opts: DiffOptions, is_target: bool) -> str:
    if isinstance(x, Node):
        return x.checksum
    return checksum_local(x.path, ignore_xattrs=opts.ignore_xattrs,
                          owner_uid=opts.owner_uid if is_target else -1,
                          owner_gid=opts.owner_gid if is_target else -1)


def _children(x: Side) -> list[tuple[str, Side]]:
    if isinstance(x, Node):
        return [(c.name, c) for c in x.children()]
    try:
        # GIO's local enumerator returns entries sorted by inode number
        entries = sorted(os.scandir(x.path), key=lambda e: e.inode())
    except OSError as e:
        raise os_error(e, f"opendir({x.path})") from None
    out: list[tuple[str, Side]] = []
    for ent in entries:
        n = ent.name
        p = os.path.join(x.path, n)
        out.append((n, _Local(p, f"{x.rel}/{n}" if x.rel else n, os.lstat(p))))
    return out


def _child(x: Side, name: str) -> Side | None:
    if isinstance(x, Node):
        return x.child(name)
    p = os.path.join(x.path, name)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise os_error(e, f"stat({p})") from None
    return _Local(p, f"{x.rel}/{name}" if x.rel else name, st)


def _add_recurse(d: Side, res: DiffResult) -> None:
    for _, c in _children(d):
        res.added.append(_label(c))
        if _ftype(c) == stat.S_IFDIR:
            _add_recurse(c, res)


def _diff_dirs(a: Side, b: Side, opts: DiffOptions, res: DiffResult) -> None:
    if isinstance(a, Node) and isinstance(b, Node) and a.contents == b.contents:
        return
    for name, ca in _children(a):
        cb = _child(b, name)
        if cb is None:
            res.removed.append(_label(ca))
            continue
        ta, tb = _ftype(ca), _ftype(cb)
        if ta != tb:
            res.modified.append((_label(ca), _label(cb)))
            continue
        if _checksum(ca, opts, False) != _checksum(cb, opts, True):
            res.modified.append((_label(ca), _label(cb)))
        if ta == stat.S_IFDIR:
            _diff_dirs(ca, cb, opts, res)
    for name, cb in _children(b):
        if _child(a, name) is None:
            res.added.append(_label(cb))
            if _ftype(cb) == stat.S_IFDIR:
                _add_recurse(cb, res)


def open_side(repo: Repo, arg: str) -> Side:
    """``/path`` and ``./path`` are local directories, anything else a commit."""
    from pyostree.tree.treewalk import commit_root

    if arg.startswith("/") or arg.startswith("./"):
        try:
            st = os.lstat(arg)
        except OSError as e:
            raise OstreeError(f"Error when getting information for file “{os.path.abspath(arg)}”: "
                              f"{e.strerror}", errno=e.errno) from None
        return _Local(arg, "", st)
    return commit_root(repo, arg)


def diff_dirs(repo: Repo, a: Side, b: Side, opts: DiffOptions | None = None) -> DiffResult:
    """Modified, removed and added paths from *a* to *b*, in ostree's order."""
    opts = opts or DiffOptions()
    for side in (a, b):
        if isinstance(side, Node):
            from pyostree.store.repo import RepoMode

            if side.repo.disable_xattrs or side.repo.mode is RepoMode.BARE_USER_ONLY:
                opts.ignore_xattrs = True
    res = DiffResult()
    if _ftype(a) == stat.S_IFDIR and _ftype(b) == stat.S_IFDIR:
        _diff_dirs(a, b, opts, res)
    else:
        raise NotFoundError("Not a directory")
    return res


def reachable_objects(repo: Repo, commit: str) -> set[tuple[str, obj.ObjectType]]:
    """Objects a commit references: the commit, its dirtrees, dirmetas and files (no parents)."""
    out: set[tuple[str, obj.ObjectType]] = {(commit, obj.ObjectType.COMMIT)}
    c = repo.load_commit(commit)
    stack = [(c.root_contents, c.root_meta)]
    out.add((c.root_meta, obj.ObjectType.DIR_META))
    seen: set[str] = set()
    while stack:
        t, m = stack.pop()
        out.add((t, obj.ObjectType.DIR_TREE))
        out.add((m, obj.ObjectType.DIR_META))
        if t in seen:
            continue
        seen.add(t)
        tree = repo.load_dirtree(t)
        for _, fc in tree.files:
            out.add((fc, obj.ObjectType.FILE))
        for _, tc, mc in tree.dirs:
            stack.append((tc, mc))
    return out


def object_storage_size(repo: Repo, checksum: str, objtype: obj.ObjectType) -> int:
    r: Repo | None = repo
    while r is not None:
        rel = obj.object_relpath(checksum, objtype, r.is_archive)
        try:
            return os.stat(rel, dir_fd=r.dfd, follow_symlinks=False).st_size
        except FileNotFoundError:
            r = r.parent
    raise NotFoundError(f"No such object {checksum}.{objtype.value}")
