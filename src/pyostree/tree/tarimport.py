"""Importing tar (and cpio "newc") archives into a MutableTree (``commit --tree=tar=``).

Semantics follow libostree's libarchive importer:

* entry names are made relative (leading ``/`` and ``./`` dropped); a ``..``
  component is refused;
* ``pathname_filter`` ``REGEX,REPLACEMENT`` rewrites each relative name
  (and hardlink target) with a regex substitution;
* the commit modifier (statoverride, skip list, owner, ...) sees ``/PATH``;
* a missing parent directory is an error unless ``autocreate_parents``, which
  creates it (and re-stamps the root) with mode 0755 and the entry's owner;
  with autocreate a root without metadata finally gets 0755 root:root after
  the modifier;
* hardlinks are resolved after the whole archive is read: every name of a
  link group gets the content of the member that carried data, so hardlinks
  to files or symlinks work in tar and in cpio;
* extended attributes come from pax ``SCHILY.xattr.*`` (or
  ``LIBARCHIVE.xattr.*``) records;
* device nodes, fifos and sockets are refused.

Nothing is ever written outside the repository: entries only become
objects and MutableTree nodes.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import re
import stat
import sys
import tarfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

from pyostree.errors import OstreeError, os_error
from pyostree.store import objects as obj
from pyostree.store.objects import DirMeta, FileInfo
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree.commit import CommitModifier, FilterResult, MutableTree

DEFAULT_DIRMODE = stat.S_IFDIR | 0o755


@dataclass
class ArchiveEntry:
    """One member of an archive, independent of the archive format."""

    name: str
    mode: int
    """Full mode including the file type bits."""
    uid: int
    gid: int
    size: int
    linkname: str = ""
    """Symlink target."""
    hardlink: str | None = None
    """Name of the member this one is a hardlink to."""
    xattrs: obj.Xattrs | None = None
    reader: IO[bytes] | None = None


# ---------------------------------------------------------------------------
# archive readers


def _xattrs_from_pax(pax: Mapping[str, str]) -> obj.Xattrs:
    found: dict[bytes, bytes] = {}
    for key, value in pax.items():
        if key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote_to_bytes(key[len("LIBARCHIVE.xattr."):])
            try:
                found.setdefault(name, base64.b64decode(value.encode("ascii", "surrogateescape") + b"=="))
            except ValueError:
                continue
    for key, value in pax.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):].encode("utf-8", "surrogateescape")
            found[name] = value.encode("utf-8", "surrogateescape")
    return obj.normalize_xattrs(found.items())


def _check_id(name: str, field: str, value: int) -> None:
    try:
        obj.check_u32(value, field)
    except OstreeError as e:
        raise OstreeError(f"Archive entry '{name}': {e}") from None


def _tar_entries(stream: BinaryIO) -> Iterator[ArchiveEntry]:
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape")  # noqa: SIM115
    except tarfile.TarError as e:
        raise OstreeError(f"Unrecognized archive format: {e}") from None
    try:
        while True:
            try:
                ti = tar.next()
            except tarfile.TarError as e:
                raise OstreeError(f"Reading archive: {e}") from None
            if ti is None:
                break
            perm = ti.mode & 0o7777
            for field in ("uid", "gid"):
                _check_id(ti.name, field, getattr(ti, field))
            try:
                xattrs = _xattrs_from_pax(ti.pax_headers) if ti.pax_headers else None
            except OstreeError as e:
                raise OstreeError(f"Archive entry '{ti.name}': {e}") from None
            if ti.islnk():
                yield ArchiveEntry(ti.name, stat.S_IFREG | perm, ti.uid, ti.gid, 0, hardlink=ti.linkname,
                                   xattrs=xattrs)
            elif ti.issym():
                yield ArchiveEntry(ti.name, stat.S_IFLNK | perm, ti.uid, ti.gid, 0, linkname=ti.linkname,
                                   xattrs=xattrs)
            elif ti.isdir():
                # tarfile strips the trailing "/" that tar stores (and the pathname filter sees)
                yield ArchiveEntry(ti.name + "/", stat.S_IFDIR | perm, ti.uid, ti.gid, 0, xattrs=xattrs)
            elif ti.isreg():
                f = tar.extractfile(ti)
                yield ArchiveEntry(ti.name, stat.S_IFREG | perm, ti.uid, ti.gid, ti.size, xattrs=xattrs,
                                   reader=f)
            else:
                kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                        tarfile.FIFOTYPE: stat.S_IFIFO}.get(ti.type, 0)
                yield ArchiveEntry(ti.name, kind | perm, ti.uid, ti.gid, 0)
    finally:
        tar.close()


class _Limited(io.RawIOBase):
    """A read-only view of the next *n* bytes of a stream."""

    def __init__(self, f: BinaryIO, n: int) -> None:
        self._f = f
        self._left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        want = min(len(b), self._left)
        data = self._f.read(want)
        if len(data) < want and not data:
            raise OstreeError("Truncated cpio archive")
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def drain(self) -> None:
        while self._left > 0:
            chunk = self._f.read(min(self._left, 1 << 20))
            if not chunk:
                raise OstreeError("Truncated cpio archive")
            self._left -= len(chunk)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            raise OstreeError("Truncated cpio archive")
        data += chunk
    return data


def _cpio_entries(stream: BinaryIO) -> Iterator[ArchiveEntry]:
    """Members of a cpio archive in the SVR4 "newc"/"crc" formats."""
    pos = 0
    seen_links: dict[tuple[int, int, int], str] = {}
    while True:
        hdr = _read_exact(stream, 110)
        pos += 110
        magic = hdr[:6]
        if magic not in (b"070701", b"070702"):
            raise OstreeError("Unrecognized cpio header (only the newc format is supported)")
        try:
            fields = [int(hdr[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise OstreeError("Corrupted cpio header") from None
        ino, mode, uid, gid, nlink, _mtime, size, devmaj, devmin, _rmaj, _rmin, namesize, _check = fields
        raw = _read_exact(stream, namesize)
        pos += namesize
        pad = (-pos) % 4
        _read_exact(stream, pad)
        pos += pad
        name = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if name == "TRAILER!!!":
            return
        hardlink: str | None = None
        if nlink > 1 and not stat.S_ISDIR(mode):
            key = (devmaj, devmin, ino)
            if key in seen_links:
                hardlink = seen_links[key]
            else:
                seen_links[key] = name
        if stat.S_ISLNK(mode):
            target = _read_exact(stream, size).decode("utf-8", "surrogateescape")
            pos += size
            entry = ArchiveEntry(name, mode, uid, gid, 0, linkname=target, hardlink=hardlink)
            yield entry
        elif stat.S_ISREG(mode):
            lim = _Limited(stream, size)
            reader = io.BufferedReader(lim)
            yield ArchiveEntry(name, mode, uid, gid, size, hardlink=hardlink, reader=cast(IO[bytes], reader))
            lim.drain()
            pos += size
        else:
            if size:
                _read_exact(stream, size)
                pos += size
            yield ArchiveEntry(name, mode, uid, gid, 0)
        pad = (-pos) % 4
        _read_exact(stream, pad)
        pos += pad


def _decompressed(raw: IO[bytes]) -> io.BufferedReader:
    buf = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))
    head = buf.peek(6)[:6]
    inner: IO[bytes] | None = None
    if head[:2] == b"\x1f\x8b":
        inner = cast(IO[bytes], gzip.GzipFile(fileobj=buf, mode="rb"))
    elif head[:3] == b"BZh":
        inner = bz2.BZ2File(buf, mode="rb")
    elif head[:6] == b"\xfd7zXZ\x00":
        inner = lzma.LZMAFile(buf, mode="rb")  # noqa: SIM115
    if inner is None:
        return buf
    return io.BufferedReader(cast(io.RawIOBase, inner))


def archive_entries(stream: IO[bytes]) -> Iterator[ArchiveEntry]:
    """Members of a (possibly gzip/bzip2/xz-compressed) tar or cpio stream."""
    buf = _decompressed(stream)
    try:
        head = buf.peek(6)[:6]
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise OstreeError(f"Reading archive: {e}") from None
    if head in (b"070701", b"070702"):
        return _cpio_entries(cast(BinaryIO, buf))
    if head[:6] == b"070707" or head[:2] in (b"\xc7\x71", b"\x71\xc7"):
        raise OstreeError("Unsupported cpio format (only newc is supported)")
    return _tar_entries(cast(BinaryIO, buf))


# ---------------------------------------------------------------------------
# names


def path_relative(src: str) -> str:
    """libostree's ``path_relative``: drop leading ``/`` and ``./``; refuse ``..``."""
    s = src
    while s.startswith("/"):
        s = s[1:]
        if s.startswith("../"):
            s = s[2:]
    while True:
        if s.startswith("./"):
            s = s[2:]
        elif s.startswith("/"):
            s = s[1:]
        else:
            break
    if s == ".":
        s = ""
    split_validate(s, f'While making relative path "{s}":')
    return s


def split_validate(path: str, what: str = "") -> list[str]:
    """Path components without ``.`` and empty ones; ``..`` is an error."""
    parts = []
    for p in path.split("/"):
        if p == "..":
            raise OstreeError(f"{what}Invalid uplink '..' in path {path}")
        if p in ("", "."):
            continue
        if "\0" in p:
            raise OstreeError(f"{what}Invalid NUL in path {path!r}")
        parts.append(p)
    return parts


def _parse_filter(spec: str) -> tuple[re.Pattern[str], str]:
    regex, comma, replacement = spec.partition(",")
    if not comma:
        raise OstreeError("Missing ',' in --tar-pathname-filter")
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise OstreeError(f"--tar-pathname-filter: {e}") from None
    # GRegex replacement syntax: \0..\9 and \g<name>; Python's uses \g<0>
    repl = re.sub(r"\\(\d)", r"\\g<\1>", replacement)
    return pattern, repl


# ---------------------------------------------------------------------------
# import


@dataclass
class _Deferred:
    parent: MutableTree
    path: str
    size: int


class _Importer:
    def __init__(self, repo: Repo, root: MutableTree, modifier: CommitModifier | None, autocreate: bool,
                 pathname_filter: str | None) -> None:
        self.repo = repo
        self.root = root
        self.modifier = modifier or CommitModifier()
        if repo.mode is RepoMode.BARE_USER_ONLY:
            self.modifier.canonical_permissions = True
        self.autocreate = autocreate
        self.filter = _parse_filter(pathname_filter) if pathname_filter is not None else None
        self.deferred: dict[str, list[_Deferred]] = {}

    def final_path(self, name: str) -> str:
        rel = path_relative(name)
        if self.filter is not None:
            pattern, repl = self.filter
            rel = pattern.sub(repl, rel)
            split_validate(rel, f'While making relative path "{rel}":')
        while len(rel) > 1 and rel.endswith("/"):
            rel = rel[:-1]
        return rel

    def _modify(self, path: str, info: FileInfo) -> int:
        return self.modifier.apply(path, info)

    def _walk_parent(self, parts: list[str]) -> MutableTree:
        """The directory holding the last component of *parts* (must exist)."""
        t = self.root
        for p in parts[:-1]:
            sub = t.subdirs.get(p)
            if sub is None:
                raise OstreeError(f"No such file or directory: {p}")
            t = t.ensure_dir(p)
        return t

    def _write_dirmeta(self, tree: MutableTree, info: FileInfo) -> None:
        tree.metadata_checksum = self.repo.write_dirmeta(
            DirMeta(info.uid, info.gid, info.mode, list(info.xattrs)))

    def _create_parents(self, parts: list[str], uid: int, gid: int) -> MutableTree:
        try:
            info = FileInfo(DEFAULT_DIRMODE, uid, gid)
            self._write_dirmeta(self.root, info)
            t = self.root
            for p in parts[:-1]:
                t = t.ensure_dir(p)
                self._write_dirmeta(t, FileInfo(DEFAULT_DIRMODE, uid, gid))
            return t
        except OstreeError as e:
            raise OstreeError(f"ostree-tar: Failed to create parent: {e}") from None

    def parent_dir(self, path: str, entry: ArchiveEntry) -> MutableTree | None:
        parts = split_validate(path)
        if not parts:
            return None
        try:
            return self._walk_parent(parts)
        except OstreeError:
            if not self.autocreate:
                raise
        return self._create_parents(parts, entry.uid, entry.gid)

    def _xattrs(self, path: str, entry: ArchiveEntry, info: FileInfo) -> obj.Xattrs:
        xattrs: obj.Xattrs = []
        if not (self.modifier.skip_xattrs or self.repo.disable_xattrs) and entry.xattrs:
            xattrs = list(entry.xattrs)
        if self.modifier.xattr_callback is not None:
            xattrs = self.modifier.xattr_callback("/" + path, info) or []
        return xattrs

    def import_entry(self, entry: ArchiveEntry) -> None:
        path = self.final_path(entry.name)
        hardlink = self.final_path(entry.hardlink) if entry.hardlink is not None else None
        mode = entry.mode
        info = FileInfo(mode, entry.uid, entry.gid, entry.size if stat.S_ISREG(mode) else 0,
                        entry.linkname if stat.S_ISLNK(mode) else "")
        if self._modify("/" + path, info) == FilterResult.SKIP:
            return
        skip_x = self.modifier.skip_xattrs or self.modifier.canonical_permissions
        for comp in path.split("/"):
            try:
                comp.encode("utf-8")
            except UnicodeEncodeError:
                shown = comp.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                what = ("ostree-tar: Failed to handle directory: " if stat.S_ISDIR(info.mode) else
                        "ostree-tar: Failed to handle file: ostree-tar: Failed to import file: ")
                raise OstreeError(f"{what}Invalid UTF-8 in filename {shown}") from None
        if info.is_symlink:
            try:
                info.symlink_target.encode("utf-8")
            except UnicodeEncodeError:
                raise OstreeError(f"ostree-tar: Failed to handle file: Invalid UTF-8 in symlink target of {path}") \
                    from None
        parent = self.parent_dir(path, entry)
        name = path.rsplit("/", 1)[-1] if path else ""
        if stat.S_ISDIR(info.mode):
            try:
                info.xattrs = [] if skip_x else self._xattrs(path, entry, info)
                if parent is None:
                    tree = self.root
                else:
                    tree = parent.ensure_dir(name)
                self._write_dirmeta(tree, info)
            except OstreeError as e:
                raise OstreeError(f"ostree-tar: Failed to handle directory: {e}") from None
            return
        if not (stat.S_ISREG(info.mode) or stat.S_ISLNK(info.mode)):
            raise OstreeError(f'Unsupported file type for path "{path}"')
        if parent is None:
            raise OstreeError(f'ostree-tar: Failed to handle file: Invalid file name "{entry.name}"')
        try:
            if hardlink is None or info.size > 0:
                info.xattrs = [] if skip_x else self._xattrs(path, entry, info)
                csum = self._write_file(entry, info)
                parent.replace_file(name, csum)
            if hardlink is not None:
                self.deferred.setdefault(hardlink, []).append(_Deferred(parent, path, info.size))
        except OstreeError as e:
            raise OstreeError(f"ostree-tar: Failed to handle file: ostree-tar: Failed to import file: {e}") from None

    def _write_file(self, entry: ArchiveEntry, info: FileInfo) -> str:
        if not info.is_regular:
            return self.repo.write_content(info, b"")
        assert entry.reader is not None
        if info.size <= (1 << 24):
            data = entry.reader.read(info.size)
            if len(data) != info.size:
                raise OstreeError(f"Truncated archive member {entry.name}")
            return self.repo.write_content(info, data)
        import tempfile

        with tempfile.TemporaryFile(dir=f"/proc/self/fd/{self.repo.dfd}/tmp") as tmp:
            left = info.size
            while left:
                chunk = entry.reader.read(min(left, 1 << 20))
                if not chunk:
                    raise OstreeError(f"Truncated archive member {entry.name}")
                tmp.write(chunk)
                left -= len(chunk)
            tmp.flush()
            return self.repo.write_content(info, src_fd=tmp.fileno())

    def _lookup_file(self, target: str) -> str:
        parts = split_validate(target)
        if not parts:
            raise OstreeError(f'Expected hardlink file target at "{target}" but found a directory')
        parent = self._walk_parent(parts)
        name = parts[-1]
        if name in parent.subdirs:
            raise OstreeError(f'Expected hardlink file target at "{target}" but found a directory')
        csum = parent.files.get(name)
        if csum is None:
            raise OstreeError(f"No such file or directory: {name}")
        return csum

    def finish(self) -> None:
        for target, links in self.deferred.items():
            try:
                payload = next((d for d in links if d.size > 0), None)
                if payload is not None:
                    csum = payload.parent.files[payload.path.rsplit("/", 1)[-1]]
                    parts = split_validate(target)
                    if not parts:
                        raise OstreeError(f"Invalid hardlink target {target}")
                    self._walk_parent(parts).replace_file(parts[-1], csum)
                try:
                    csum = self._lookup_file(target)
                except OstreeError as e:
                    raise OstreeError(f"Failed to find object: {e}") from None
                for d in links:
                    if d is payload:
                        continue
                    d.parent.replace_file(d.path.rsplit("/", 1)[-1], csum)
            except OstreeError as e:
                raise OstreeError(f"ostree-tar: Processing deferred hardlink {target}: {e}") from None
        if self.autocreate and self.root.metadata_checksum is None:
            info = FileInfo(DEFAULT_DIRMODE, 0, 0)
            self._modify("/", info)
            self._write_dirmeta(self.root, FileInfo(info.mode, info.uid, info.gid))


def import_archive_to_mtree(repo: Repo, stream: BinaryIO, mtree: MutableTree,
                            modifier: CommitModifier | None = None, *, autocreate_parents: bool = False,
                            pathname_filter: str | None = None) -> None:
    """Add the members of the tar/cpio *stream* to *mtree* (inside an open transaction)."""
    imp = _Importer(repo, mtree, modifier, autocreate_parents, pathname_filter)
    try:
        for entry in archive_entries(stream):
            try:
                imp.import_entry(entry)
            except OstreeError as e:
                raise OstreeError(f"Archive entry '{entry.name}': {e}", errno=e.errno) from None
            except OSError as e:
                raise os_error(e, f"Archive entry '{entry.name}'") from None
    except (EOFError, zlib_errors()) as e:
        raise OstreeError(f"Reading archive: {e}") from None
    imp.finish()


def zlib_errors() -> type[Exception]:
    import zlib

    return zlib.error


def import_tar_to_mtree(repo: Repo, path_or_dash: str, mtree: MutableTree,
                        modifier: CommitModifier | None = None, autocreate_parents: bool = False,
                        pathname_filter: str | None = None) -> None:
    """``--tree=tar=PATH`` (``-`` reads standard input)."""
    if path_or_dash == "-":
        import_archive_to_mtree(repo, sys.stdin.buffer, mtree, modifier, autocreate_parents=autocreate_parents,
                                pathname_filter=pathname_filter)
        return
    try:
        f = open(path_or_dash, "rb")  # noqa: SIM115
    except OSError as e:
        raise OstreeError(f"Failed to open '{path_or_dash}': {e.strerror}") from None
    with f:
        import_archive_to_mtree(repo, f, mtree, modifier, autocreate_parents=autocreate_parents,
                                pathname_filter=pathname_filter)
