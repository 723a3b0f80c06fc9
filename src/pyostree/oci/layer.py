"""One OCI layer tarball -> one ostree commit, with whiteouts quoted.

The layer's tar stream is read once: the raw blob is hashed (blob digest),
decompressed (gzip, zstd or none, detected by magic), hashed again (diff_id)
and parsed as tar; every entry is checked and stored as content objects into
an in-memory tree.  OCI ``.wh.NAME`` entries become ``.ostree-wh.NAME`` files
and ``.wh..wh..opq`` makes the directory opaque: ``trusted.overlay.opaque=y`` in
its dirmeta, or the opaque marker where the repository keeps no xattrs (see
:mod:`pyostree.quoting`), so
the commit is the layer exactly as an overlayfs lower dir needs it.

Refused, naming the entry: absolute paths, ``..`` components, entries written
through a symlink, relative symlinks climbing above the layer root, hardlinks
to anything that is not an earlier regular file of the same layer, device
nodes/FIFOs (unless quoting of special files was asked for), names reserved
for quoting, non-UTF-8 names, oversized headers.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
from urllib.parse import unquote_to_bytes

from pyostree.errors import OstreeError
from pyostree.oci.source import VerifyingReader
from pyostree.store import objects as obj
from pyostree.store.objects import DirMeta, FileInfo, Xattrs
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree.commit import MutableTree
from pyostree.tree.quoting import OPAQUE_MARKER, SPECIAL_PREFIX, WHITEOUT_PREFIX, special_content

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

OCI_WHITEOUT = ".wh."
OCI_OPAQUE = ".wh..wh..opq"
MAX_EXT_HEADER = 1 << 20  # pax / GNU long-name headers
MAX_PATH = 4096
MAX_DEPTH = 255  # a directory tree ostree can traverse (OSTREE_MAX_RECURSION is 256)
_IN_MEMORY = 8 << 20
_DEFAULT_DIR = (0o40755, 0, 0)

__all__ = ["LayerResult", "import_layer_stream"]


class _SafeTarInfo(tarfile.TarInfo):
    """Refuses extended headers bigger than :data:`MAX_EXT_HEADER` before reading them."""

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) \
                and self.size > MAX_EXT_HEADER:
            # skip the header's data without holding it, to name the entry it belongs to
            left = -(-self.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            while left > 0:
                chunk = tf.fileobj.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
            name = self.name
            try:
                name = tarfile.TarInfo.frombuf(tf.fileobj.read(tarfile.BLOCKSIZE),
                                               tf.encoding or "utf-8", tf.errors or "surrogateescape").name
            except tarfile.TarError:
                pass
            raise OstreeError(f"Oversized tar header ({self.size} bytes) for entry '{name}'")
        r: tarfile.TarInfo = tarfile.TarInfo._proc_member(self, tf)  # type: ignore[attr-defined]
        return r


class _Chain:
    """*head* bytes then the rest of *f*: lets us sniff the compression magic."""

    def __init__(self, head: bytes, f: VerifyingReader) -> None:
        self.head = head
        self.f = f

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.f.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.f.read(n)

    def readable(self) -> bool:
        return True


class _Hashing:
    """Hashes what is read through it (the uncompressed layer -> diff_id)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.f.read(n)
        self.h.update(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self.h.hexdigest()


class _TarTail:
    """Ends a tar stream that stops without its padding and end-of-archive blocks, as Go's
    archive/tar (umoci, containers/storage) accepts: ``umoci insert`` writes such layers.

    The bytes are the layer's own (its digest and diff_id are verified on what was really read);
    only the missing zero padding and the two zero blocks are supplied after the end.
    """

    def __init__(self, f: _Hashing) -> None:
        self.f = f
        self.pos = 0
        self.tail: bytes | None = None

    def read(self, n: int = -1) -> bytes:
        if self.tail is None:
            data = self.f.read(n)
            self.pos += len(data)
            if data or n == 0:
                return data
            self.tail = bytes(-self.pos % 512 + 1024)
        out = self.tail if n < 0 else self.tail[:n]
        self.tail = self.tail[len(out):]
        return out

    def readable(self) -> bool:
        return True


def _decompressor(raw: VerifyingReader) -> Any:
    head = raw.read(4)
    chain: Any = _Chain(head, raw)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=chain, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(chain, read_across_frames=True)
    return chain


class LayerResult:
    def __init__(self, root: MutableTree, implicit_dirs: list[str], diff_id: str, blob_digest: str) -> None:
        self.root = root
        self.implicit_dirs = implicit_dirs
        self.diff_id = diff_id
        self.blob_digest = blob_digest


class _Builder:
    def __init__(self, repo: Repo, *, special: bool, where: str) -> None:
        self.repo = repo
        self.special = special
        self.where = where
        self.canonical = repo.mode is RepoMode.BARE_USER_ONLY
        self.keep_xattrs = not (repo.disable_xattrs or self.canonical)
        self.root = MutableTree()
        self.root.metadata_checksum = self._dirmeta(*_DEFAULT_DIR, [])
        self.implicit: set[str] = {"/"}
        self.regular: dict[str, str] = {}  # path -> checksum, for hardlinks
        self.opaque: set[tuple[str, ...]] = set()
        self.whiteouts: list[tuple[tuple[str, ...], str]] = []

    def _node(self, parts: tuple[str, ...]) -> MutableTree | None:
        t = self.root
        for p in parts:
            if p not in t.subdirs:
                return None
            t = t.ensure_dir(p)
        return t

    def finish(self) -> None:
        """Resolve same-layer whiteouts; set ``trusted.overlay.opaque=y`` on opaque dirs' dirmeta."""
        # OCI: a whiteout only hides lower layers.  When this layer also has the
        # name, the whiteout goes (an overlay dir cannot hold both); a directory
        # of that name then hides the lower one by being opaque.
        for pparts, target in self.whiteouts:
            t = self._node(pparts)
            wname = WHITEOUT_PREFIX + target
            if t is None or wname not in t.files:
                continue
            if target in t.files:
                t.remove(wname)
            elif target in t.subdirs:
                t.remove(wname)
                if self.keep_xattrs:
                    self.opaque.add((*pparts, target))
                else:
                    sub = t.ensure_dir(target)
                    info = FileInfo(stat.S_IFREG | 0o644)
                    sub.replace_file(OPAQUE_MARKER, self.repo.write_content(info, b""))
        for parts in sorted(self.opaque):
            t = self._node(parts)
            if t is not None:
                assert t.metadata_checksum is not None
                dm = self.repo.load_dirmeta(t.metadata_checksum)
                xattrs = [x for x in dm.xattrs if obj.xattr_name(x[0]) != b"trusted.overlay.opaque"]
                xattrs = obj.normalize_xattrs([*xattrs, (b"trusted.overlay.opaque", b"y")])
                t.metadata_checksum = self.repo.write_dirmeta(DirMeta(dm.uid, dm.gid, dm.mode, xattrs))

    # -- helpers ------------------------------------------------------------
    def _err(self, entry: str, why: str) -> OstreeError:
        return OstreeError(f"{self.where}: entry '{entry}': {why}")

    def _dirmeta(self, mode: int, uid: int, gid: int, xattrs: Xattrs) -> str:
        if self.canonical:
            mode, uid, gid, xattrs = stat.S_IFDIR | (mode & 0o755), 0, 0, []
        return self.repo.write_dirmeta(DirMeta(uid, gid, mode, xattrs))

    def _info(self, fmt: int, m: tarfile.TarInfo, xattrs: Xattrs) -> FileInfo:
        mode = fmt | (m.mode & 0o7777)
        uid, gid = m.uid, m.gid
        if self.canonical:
            mode = fmt | (mode & 0o755) if fmt == stat.S_IFREG else mode
            uid = gid = 0
            xattrs = []
        return FileInfo(mode, uid, gid, 0, "", xattrs)

    def _xattrs(self, m: tarfile.TarInfo) -> Xattrs:
        if not self.keep_xattrs:
            return []
        pairs: list[tuple[bytes, bytes]] = []
        for k, v in m.pax_headers.items():
            if k.startswith("SCHILY.xattr."):
                pairs.append((k[len("SCHILY.xattr."):].encode("utf-8", "surrogateescape"),
                              v.encode("utf-8", "surrogateescape")))
            elif k.startswith("LIBARCHIVE.xattr."):
                try:
                    val = base64.b64decode(v + "=" * (-len(v) % 4))
                except ValueError:
                    raise self._err(m.name, f"invalid xattr value for {k}") from None
                pairs.append((unquote_to_bytes(k[len("LIBARCHIVE.xattr."):]), val))
        return obj.normalize_xattrs(pairs)

    def _split(self, name: str, what: str = "path") -> list[str]:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise self._err(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                            "invalid UTF-8 in filename") from None
        if len(name) > MAX_PATH:
            raise self._err(name[:80] + "...", f"{what} longer than {MAX_PATH}")
        if name.startswith("/"):
            raise self._err(name, f"absolute {what}")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self._err(name, f"'..' in {what}")
        if "\0" in name:
            raise self._err(name, "NUL in name")
        return parts

    def _parent(self, entry: str, parts: list[str]) -> MutableTree:
        t = self.root
        path = ""
        for p in parts:
            path += "/" + p
            if p in t.files:
                csum = t.files[p]
                if self.repo.load_file(csum).info.is_symlink:
                    raise self._err(entry, f"written through the symlink '{path[1:]}'")
                raise self._err(entry, f"parent '{path[1:]}' is not a directory")
            existed = p in t.subdirs
            t = t.ensure_dir(p)
            if not existed:
                t.metadata_checksum = self._dirmeta(*_DEFAULT_DIR, [])
                self.implicit.add(path)
        return t

    def _under_non_dir(self, parts: list[str]) -> bool:
        """Whether an earlier entry of this layer made a component of *parts* a non-directory."""
        t = self.root
        for p in parts:
            if p in t.files:
                return True
            if p not in t.subdirs:
                return False
            t = t.ensure_dir(p)
        return False

    def _put_file(self, parent: MutableTree, name: str, csum: str) -> None:
        if name in parent.subdirs:
            parent.remove(name)
        parent.replace_file(name, csum)

    # -- entries ------------------------------------------------------------
    def add(self, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        entry = m.name
        for field, value in (("uid", m.uid), ("gid", m.gid)):
            if not 0 <= value <= obj.U32_MAX:
                raise self._err(entry, f"{field} {value} out of range (0 to {obj.U32_MAX})")
        parts = self._split(entry)
        if not parts:  # the layer root
            if not m.isdir():
                raise self._err(entry, "the root must be a directory")
            self.root.metadata_checksum = self._dirmeta(stat.S_IFDIR | (m.mode & 0o7777), m.uid, m.gid,
                                                        self._xattrs(m))
            self.implicit.discard("/")
            return
        if len(parts) > MAX_DEPTH:
            raise self._err(entry, f"deeper than {MAX_DEPTH} directories")
        for p in parts:
            if len(p.encode()) > 255:
                raise self._err(entry, "name component longer than 255 bytes")
        name = parts[-1]
        path = "/" + "/".join(parts)
        if name.startswith((WHITEOUT_PREFIX, SPECIAL_PREFIX)):
            raise self._err(entry, "name reserved for ostree's quoting of whiteouts/special files")
        if name.startswith(OCI_WHITEOUT) and self._under_non_dir(parts[:-1]):
            # umoci 0.4.7 writes "d" (now a file) then "d/.wh.x" for what was under the old
            # directory: the file already hides all of it, so, as umoci and containers/storage
            # do, the whiteout is a no-op
            return
        parent = self._parent(entry, parts[:-1])
        if m.isdir():
            if name in parent.files:
                parent.remove(name)
            existed = name in parent.subdirs
            d = parent.ensure_dir(name)
            d.metadata_checksum = self._dirmeta(stat.S_IFDIR | (m.mode & 0o7777), m.uid, m.gid,
                                                self._xattrs(m))
            self.implicit.discard(path)
            if not existed:
                self.regular.pop(path, None)
            return
        self.regular.pop(path, None)
        if name == OCI_OPAQUE:
            if not m.isreg():
                raise self._err(entry, "opaque whiteout is not a regular file")
            if self.keep_xattrs:  # the dirmeta carries the xattr itself (see finish())
                self.opaque.add(tuple(parts[:-1]))
                return
            info = self._info(stat.S_IFREG, m, [])
            info.mode = stat.S_IFREG | 0o644
            self._put_file(parent, OPAQUE_MARKER, self.repo.write_content(info, b""))
            return
        if name.startswith(OCI_WHITEOUT):
            target = name[len(OCI_WHITEOUT):]
            if not target or target in (".", ".."):
                raise self._err(entry, "invalid whiteout")
            if not m.isreg():
                raise self._err(entry, "whiteout is not a regular file")
            info = self._info(stat.S_IFREG, m, self._xattrs(m))
            self._put_file(parent, WHITEOUT_PREFIX + target, self.repo.write_content(info, b""))
            self.whiteouts.append((tuple(parts[:-1]), target))
            return
        if m.issym():
            target = m.linkname
            try:
                target.encode("utf-8")
            except UnicodeEncodeError:
                raise self._err(entry, "invalid UTF-8 in symlink target") from None
            if not target:
                raise self._err(entry, "empty symlink target")
            if not target.startswith("/"):
                depth = len(parts) - 1
                for c in target.split("/"):
                    if c == "..":
                        depth -= 1
                        if depth < 0:
                            raise self._err(entry, f"symlink to '{target}' leads out of the layer")
                    elif c not in ("", "."):
                        depth += 1
            info = self._info(stat.S_IFLNK, m, self._xattrs(m))
            info.mode = stat.S_IFLNK | 0o777
            info.symlink_target = target
            self._put_file(parent, name, self.repo.write_content(info))
            return
        if m.islnk():
            try:
                tparts = self._split(m.linkname, "hardlink target")
            except OstreeError:
                raise self._err(entry, f"hardlink to '{m.linkname}' leads out of the layer") from None
            tpath = "/" + "/".join(tparts)
            csum = self.regular.get(tpath)
            if csum is None:
                raise self._err(entry, f"hardlink to '{m.linkname}', which is not a regular file "
                                       "earlier in this layer")
            self._put_file(parent, name, csum)
            self.regular[path] = csum
            return
        if m.isreg():
            info = self._info(stat.S_IFREG, m, self._xattrs(m))
            info.size = m.size
            f = tf.extractfile(m)
            assert f is not None
            csum = self._store(info, f)
            self._put_file(parent, name, csum)
            self.regular[path] = csum
            return
        if m.ischr() or m.isblk() or m.isfifo():
            kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                    tarfile.FIFOTYPE: stat.S_IFIFO}[m.type]
            rdev = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
            if not self.special:
                desc = "FIFO" if kind == stat.S_IFIFO else \
                    f"{'char' if kind == stat.S_IFCHR else 'block'} device {m.devmajor}:{m.devminor}"
                raise self._err(entry, f"{desc}; use --quote-special-files to import it")
            info = self._info(stat.S_IFREG, m, self._xattrs(m))
            content = special_content(kind, rdev)
            info.size = len(content)
            self._put_file(parent, SPECIAL_PREFIX + name, self.repo.write_content(info, content))
            return
        raise self._err(entry, f"unsupported tar entry type {m.type!r}")

    def _store(self, info: FileInfo, f: IO[bytes]) -> str:
        if info.size <= _IN_MEMORY:
            data = f.read(info.size)
            if len(data) != info.size:
                raise OstreeError(f"{self.where}: truncated tar stream")
            return self.repo.write_content(info, data)
        with tempfile.TemporaryFile(dir=os.path.join(self.repo.path, "tmp")) as tmp:
            left = info.size
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise OstreeError(f"{self.where}: truncated tar stream")
                tmp.write(chunk)
                left -= len(chunk)
            tmp.flush()
            return self.repo.write_content(info, src_fd=tmp.fileno())


def import_layer_stream(repo: Repo, raw: VerifyingReader, diff_id: str, *, special: bool = False,
                        where: str = "layer", progress: Callable[[int], None] | None = None) -> LayerResult:
    """Parse the layer blob *raw* into a tree (objects written in the open transaction).

    Verifies the blob digest/size (via *raw*) and that the uncompressed stream
    hashes to *diff_id*.
    """
    b = _Builder(repo, special=special, where=where)
    try:
        dec = _decompressor(raw)
        hashed = _Hashing(dec)
        with tarfile.open(fileobj=_TarTail(hashed), mode="r|", tarinfo=_SafeTarInfo) as tf:  # type: ignore[call-overload]
            for n, m in enumerate(tf, 1):
                b.add(m, tf)
                if progress is not None:
                    progress(n)
        b.finish()
        got = hashed.drain()
        blob = raw.finish()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        if isinstance(e, OSError) and not isinstance(e, (EOFError,)) and e.errno is not None:
            raise OstreeError(f"{where}: {e.strerror}") from None
        raise OstreeError(f"{where}: corrupt layer: {e}") from None
    except Exception as e:
        if type(e).__module__.startswith("zstandard") or type(e).__name__ == "ZstdError":
            raise OstreeError(f"{where}: corrupt zstd stream: {e}") from None
        raise
    if got != diff_id:
        raise OstreeError(f"{where}: diff_id mismatch: expected {diff_id}, got {got}")
    return LayerResult(b.root, sorted(b.implicit), diff_id, blob)
