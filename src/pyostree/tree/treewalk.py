"""Paths inside a commit, resolved the way libostree's ``OstreeRepoFile`` does.

Used by ``ls``, ``cat`` and ``diff``.  Resolution is purely lexical, as in
ostree: each ``/``-separated component is looked up as a child name (``.`` and
``..`` are not special and so are "not found"), a component below a file gives
``Not a directory``, and a missing one ``No such file or directory: PATH``.
Children are listed files first, then directories, each sorted by name.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator

from pyostree.errors import NotFoundError, OstreeError
from pyostree.store.objects import FileInfo, Record, Xattrs

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from typing import BinaryIO

    from pyostree.store.repo import Repo

MAX_SYMLINK_DEPTH = 40


class Node(Record):
    """One file or directory of a commit."""

    def __init__(self, repo: Repo, path: str, checksum: str, contents: str | None = None,
                 info: FileInfo | None = None) -> None:
        self.repo = repo
        self.path = path
        """Absolute path inside the commit (``/`` for the root)."""
        self.checksum = checksum
        """Content checksum for files, dirmeta checksum for directories."""
        self.contents = contents
        """Dirtree checksum (directories only)."""
        self._info = info

    @property
    def is_dir(self) -> bool:
        return self.contents is not None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def info(self) -> FileInfo:
        """Mode, uid, gid, size, symlink target, xattrs (directories: from the dirmeta)."""
        if self._info is None:
            if self.contents is not None:
                meta = self.repo.load_dirmeta(self.checksum)
                self._info = FileInfo(meta.mode, meta.uid, meta.gid, 0, "", list(meta.xattrs))
            else:
                co = self.repo.load_file(self.checksum)
                info = co.info
                self._info = FileInfo(info.mode, info.uid, info.gid, info.size if info.is_regular else 0,
                                      info.symlink_target, list(info.xattrs))
        return self._info

    @property
    def xattrs(self) -> Xattrs:
        return self.info.xattrs

    def children(self) -> Iterator[Node]:
        """Files (sorted), then directories (sorted), as OstreeRepoFile enumerates them."""
        if self.contents is None:
            raise OstreeError("Not a directory")
        tree = self.repo.load_dirtree(self.contents)
        for name, csum in tree.files:
            yield Node(self.repo, _join(self.path, name), csum)
        for name, tcsum, mcsum in tree.dirs:
            yield Node(self.repo, _join(self.path, name), mcsum, tcsum)

    def child(self, name: str) -> Node | None:
        if self.contents is None:
            raise OstreeError("Not a directory")
        tree = self.repo.load_dirtree(self.contents)
        for n, csum in tree.files:
            if n == name:
                return Node(self.repo, _join(self.path, name), csum)
        for n, tcsum, mcsum in tree.dirs:
            if n == name:
                return Node(self.repo, _join(self.path, name), mcsum, tcsum)
        return None

    def open(self) -> BinaryIO:
        """The content of a regular file."""
        if self.contents is not None:
            raise OstreeError("Can't open directory")
        return self.repo.load_file(self.checksum).open()


def _join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else parent + "/" + name


def commit_root(repo: Repo, rev: str) -> Node:
    """The root directory of the commit *rev* resolves to (``ostree_repo_read_commit``)."""
    checksum = repo.resolve_rev(rev)
    assert checksum is not None
    commit = repo.load_commit(checksum)
    return Node(repo, "/", commit.root_meta, commit.root_contents)


def resolve(root: Node, base: Node, relpath: str) -> Node:
    """Resolve *relpath* from *base* (absolute paths start at *root*), without following symlinks."""
    if relpath.startswith("/"):
        if relpath == "/":
            return root
        base = root
        relpath = relpath[1:]
    cur = base
    parts = relpath.split("/")
    for part in parts:
        if cur.contents is None:
            raise OstreeError("Not a directory")
        nxt = cur.child(part)
        if nxt is None:
            raise NotFoundError(f"No such file or directory: {_join(cur.path, part)}")
        cur = nxt
    return cur


def parent_of(root: Node, node: Node) -> Node:
    if node.path == "/":
        return root
    parent_path = node.path.rsplit("/", 1)[0] or "/"
    return resolve(root, root, parent_path)


def follow(root: Node, node: Node) -> Node:
    """Follow symlinks (relative to their directory, lexically) as ``g_file_read`` does."""
    depth = 0
    while node.contents is None and stat.S_ISLNK(node.info.mode):
        depth += 1
        if depth > MAX_SYMLINK_DEPTH:
            raise OstreeError("Too many levels of symbolic links")
        target = node.info.symlink_target
        node = resolve(root, parent_of(root, node), target)
    return node
