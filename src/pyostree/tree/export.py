"""Writing a committed tree as a tar archive (``ostree export``).

The archive is GNU tar, as libostree writes it with libarchive: one entry
per directory (``./`` for the root, or the prefix), then its files and
subdirectories in dirtree order (files first); uid, gid and mode come from
the objects, and every timestamp is the commit's timestamp.  GNU tar cannot
carry extended attributes, so — like ostree with its gnutar writer — none are
written.
"""

from __future__ import annotations

import stat
import sys
import tarfile

from pyostree.errors import NotFoundError, OstreeError
from pyostree.store.objects import DirMeta
from pyostree.store.repo import Repo

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import BinaryIO


def _resolve_subpath(repo: Repo, contents: str, meta: str, subpath: str) -> tuple[str, str | None, str]:
    """(contents or file checksum, dirmeta or None for a file, path) of *subpath* in a tree."""
    parts = [p for p in subpath.split("/") if p and p != "."]
    cur_c, cur_m = contents, meta
    walked = ""
    for i, name in enumerate(parts):
        if name == "..":
            raise OstreeError(f"Invalid path {subpath}")
        tree = repo.load_dirtree(cur_c)
        walked += "/" + name
        for dn, tc, mc in tree.dirs:
            if dn == name:
                cur_c, cur_m = tc, mc
                break
        else:
            for fn, fc in tree.files:
                if fn == name and i == len(parts) - 1:
                    return fc, None, walked
            raise NotFoundError(f"{walked}: No such file or directory")
    return cur_c, cur_m, walked or "/"


class _Exporter:
    def __init__(self, repo: Repo, tar: tarfile.TarFile, timestamp: int, prefix: str) -> None:
        self.repo = repo
        self.tar = tar
        self.ts = timestamp
        self.prefix = prefix

    def _name(self, rel: str) -> str:
        name = self.prefix + rel
        return name if name else "."

    def _entry(self, rel: str, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self._name(rel))
        ti.mode = stat.S_IMODE(mode)
        ti.uid = uid
        ti.gid = gid
        ti.mtime = self.ts
        ti.uname = ""
        ti.gname = ""
        return ti

    def directory(self, contents: str, meta: str, rel: str) -> None:
        dm: DirMeta = self.repo.load_dirmeta(meta)
        ti = self._entry(rel, dm.mode, dm.uid, dm.gid)
        ti.type = tarfile.DIRTYPE
        if not ti.name.endswith("/"):
            ti.name += "/"
        self.tar.addfile(ti)
        tree = self.repo.load_dirtree(contents)
        for name, fc in tree.files:
            self.file(fc, rel + name)
        for name, tc, mc in tree.dirs:
            self.directory(tc, mc, rel + name + "/")

    def file(self, checksum: str, rel: str) -> None:
        co = self.repo.load_file(checksum)
        info = co.info
        ti = self._entry(rel, info.mode, info.uid, info.gid)
        if info.is_symlink:
            ti.type = tarfile.SYMTYPE
            ti.linkname = info.symlink_target
            self.tar.addfile(ti)
            return
        ti.type = tarfile.REGTYPE
        ti.size = info.size
        with co.open() as f:
            self.tar.addfile(ti, f)


def export_tree(repo: Repo, rev: str, out: BinaryIO, *, subpath: str | None = None,
                prefix: str | None = None) -> int:
    """Write the tree of commit *rev* (or its *subpath*) to *out* as a GNU tar stream.

    Returns the length of the archive up to and including its end-of-archive
    marker (the stream itself is padded to a whole 10 KiB record).
    """
    checksum = repo.resolve_rev(rev)
    assert checksum is not None
    commit = repo.load_commit(checksum)
    contents, meta = commit.root_contents, commit.root_meta
    pfx = prefix or ""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        exp = _Exporter(repo, tar, commit.timestamp, pfx)
        if subpath:
            c, m, _ = _resolve_subpath(repo, contents, meta, subpath)
            if m is None:
                exp.file(c, subpath.rstrip("/").rsplit("/", 1)[-1])
            else:
                exp.directory(c, m, "")
        else:
            exp.directory(contents, meta, "")
        end = tar.offset + 2 * tarfile.BLOCKSIZE
    return end


def export_to_path(repo: Repo, rev: str, output: str | None, *, subpath: str | None = None,
                   prefix: str | None = None) -> None:
    """``ostree export``: to the file *output*, or standard output when None."""
    if output is None:
        buf = sys.stdout.buffer
        export_tree(repo, rev, buf, subpath=subpath, prefix=prefix)
        buf.flush()
        return
    try:
        f = open(output, "wb")  # noqa: SIM115
    except OSError as e:
        raise OstreeError(f"Failed to open '{output}': {e.strerror}") from None
    with f:
        end = export_tree(repo, rev, f, subpath=subpath, prefix=prefix)
        # like libarchive writing to a regular file: no padding after the end marker
        f.flush()
        f.truncate(end)

