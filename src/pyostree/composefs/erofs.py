"""A composefs EROFS image writer, byte for byte the image libcomposefs's ``lcfs_write_to`` writes.

The in-memory tree (``CfsNode``) mirrors libcomposefs's ``lcfs_node_s``; ``write_image`` follows
the steps of ``lcfs_write_erofs_to`` (libcomposefs 1.0.x, the on-disk format is frozen):

1. the format version: 0, raised to 1 (when ``max_version`` allows) if the tree holds a char 0:0;
2. the tree is rewritten for overlayfs: ``trusted.overlay.*`` xattrs are escaped to
   ``trusted.overlay.overlay.*``; each non-empty regular file without inline content gets
   ``trusted.overlay.metacopy`` (empty, or version 0, length 36, flags 0, algorithm 1 and the
   fs-verity digest) and ``trusted.overlay.redirect`` = ``/`` + its payload path; a char 0:0
   whiteout becomes an empty regular file with ``trusted.overlay.overlay.whiteout`` and
   ``user.overlay.whiteout``, its directory gets ``...overlay.whiteouts`` (and, from version 1,
   ``...overlay.opaque=x``) in both namespaces; every directory gets ``.`` and ``..`` entries;
   the root gets ``trusted.overlay.opaque=y`` and the 256 whiteouts ``00``..``ff`` (char 0:0,
   0644) that hide the object directories of the data-only lower layer;
3. inodes are numbered breadth first, children sorted by name (bytes, as strcmp), xattrs sorted
   by name; directory link counts are 2 + subdirectories;
4. xattrs used by more than one inode are shared (in descending name/value order); inodes are
   compact (32 bytes) when their mtime is the tree's minimum and ids/links/size fit 16/32 bits,
   else extended (64 bytes); tails (directory entries, symlink targets, the 4-byte null chunk
   index of an external file) are packed inline without crossing a block;
5. layout: composefs header (32 bytes) | zero pad to 1024 | EROFS superblock | inodes (32-byte
   slots) | shared xattrs | 4 KiB blocks of directory entries and overflowing symlinks.

The fs-verity digest of the image is computed while writing.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Callable

from pyostree.composefs.fsverity import FsVerityHasher

BLKSIZ = 4096
BLKSIZ_BITS = 12
SLOTSIZE = 32
SUPER_OFFSET = 1024
SUPER_SIZE = 128
COMPACT_SIZE = 32
EXTENDED_SIZE = 64
XATTR_HEADER_SIZE = 12
DIRENT_SIZE = 12
CHUNK_BLKBITS_MASK = 0x1F
MAX_NONINLINE_CHUNKS = 1024
XATTR_LONG_PREFIX = 0x80
XATTR_FILTER_SEED = 0x25BBE08F
EROFS_SUPER_MAGIC_V1 = 0xE0F5E1E2
LCFS_EROFS_MAGIC = 0xD078629A
LCFS_EROFS_VERSION = 1
LCFS_VERSION_MAX = 1
FEATURE_COMPAT_MTIME = 0x2
FEATURE_COMPAT_XATTR_FILTER = 0x4
LAYOUT_FLAT_PLAIN = 0
LAYOUT_FLAT_INLINE = 2
LAYOUT_CHUNK_BASED = 4
NULL_ADDR = b"\xff\xff\xff\xff"

OVERLAY = b"trusted.overlay."
OVERLAY_ESCAPE = b"trusted.overlay.overlay."
XATTR_METACOPY = b"trusted.overlay.metacopy"
XATTR_REDIRECT = b"trusted.overlay.redirect"
XATTR_OPAQUE = b"trusted.overlay.opaque"
ESCAPED_WHITEOUT = b"trusted.overlay.overlay.whiteout"
ESCAPED_WHITEOUTS = b"trusted.overlay.overlay.whiteouts"
ESCAPED_OPAQUE = b"trusted.overlay.overlay.opaque"
USER_WHITEOUT = b"user.overlay.whiteout"
USER_WHITEOUTS = b"user.overlay.whiteouts"
USER_OPAQUE = b"user.overlay.opaque"

_XATTR_PREFIXES = ((b"user.", 1), (b"system.posix_acl_access", 2), (b"system.posix_acl_default", 3),
                   (b"trusted.", 4), (b"security.", 6))

_FILE_TYPES = {stat.S_IFREG: 1, stat.S_IFDIR: 2, stat.S_IFCHR: 3, stat.S_IFBLK: 4,
               stat.S_IFIFO: 5, stat.S_IFSOCK: 6, stat.S_IFLNK: 7}


class CfsError(ValueError):
    """The tree cannot be written as a composefs image."""


class CfsNode:
    """One inode of the image tree (or, with ``link_to``, a hard link to another)."""

    __slots__ = ("_blocks", "_compact", "_ipad", "_isize", "_nid", "_shared", "_tail",
                 "_xsize", "children", "digest", "gid", "ino", "link_to", "mode", "mtime",
                 "mtime_nsec", "name", "nlink", "parent", "payload", "rdev", "size", "uid",
                 "xattrs")

    def __init__(self, mode: int = 0, uid: int = 0, gid: int = 0, size: int = 0,
                 payload: bytes = b"", digest: bytes | None = None, rdev: int = 0,
                 mtime: int = 0, mtime_nsec: int = 0) -> None:
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.payload = payload
        """Symlink target, or the path of a regular file's data in the lower layer."""
        self.digest = digest
        """fs-verity digest of a regular file's data, or None."""
        self.rdev = rdev
        self.mtime = mtime
        self.mtime_nsec = mtime_nsec
        self.nlink = 1
        self.xattrs: dict[bytes, bytes] = {}
        self.children: dict[bytes, CfsNode] = {}
        self.name = b""
        self.parent: CfsNode | None = None
        self.link_to: CfsNode | None = None
        self.ino = 0
        self._nid = 0
        self._blocks = 0
        self._tail = 0
        self._compact = True
        self._xsize = 0
        self._isize = 0
        self._ipad = 0
        self._shared: dict[tuple[bytes, bytes], int] = {}

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def add_child(self, name: bytes, child: CfsNode) -> CfsNode:
        if not self.is_dir:
            raise CfsError(f"{name!r}: parent is not a directory")
        if not name or len(name) > 255 or b"/" in name or b"\0" in name:
            raise CfsError(f"invalid file name {name!r}")
        if name in self.children:
            raise CfsError(f"{name!r} already exists")
        self.children[name] = child
        child.name = name
        child.parent = self
        return child

    def make_hardlink(self, target: CfsNode) -> None:
        """Turn this (new, unattached) node into a hard link to *target*."""
        while target.link_to is not None:
            target = target.link_to
        self.link_to = target
        target.nlink += 1

    def target(self) -> CfsNode:
        node = self
        while node.link_to is not None:
            node = node.link_to
        return node


def _xxh32(data: bytes, seed: int) -> int:
    """xxHash32 (the kernel's lib/xxhash.c), as EROFS's xattr name filter uses it."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    m = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    n = len(data)
    i = 0
    if n >= 16:
        v1, v2, v3, v4 = (seed + p1 + p2) & m, (seed + p2) & m, seed & m, (seed - p1) & m
        limit = n - 16
        while i <= limit:
            a, b, c, d = struct.unpack_from("<IIII", data, i)
            v1 = rotl((v1 + a * p2) & m, 13) * p1 & m
            v2 = rotl((v2 + b * p2) & m, 13) * p1 & m
            v3 = rotl((v3 + c * p2) & m, 13) * p1 & m
            v4 = rotl((v4 + d * p2) & m, 13) * p1 & m
            i += 16
        h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & m
    else:
        h = (seed + p5) & m
    h = (h + n) & m
    while i + 4 <= n:
        (w,) = struct.unpack_from("<I", data, i)
        h = rotl((h + w * p3) & m, 17) * p4 & m
        i += 4
    while i < n:
        h = rotl((h + data[i] * p5) & m, 11) * p1 & m
        i += 1
    h ^= h >> 15
    h = h * p2 & m
    h ^= h >> 13
    h = h * p3 & m
    h ^= h >> 16
    return h


_INDEX_CACHE: dict[bytes, tuple[int, bytes, int]] = {}


def _xattr_key(key: bytes) -> tuple[int, bytes, int]:
    """(EROFS name index, name suffix, name filter bit) of an xattr name, cached."""
    got = _INDEX_CACHE.get(key)
    if got is None:
        index, suffix = 0, key
        for prefix, i in _XATTR_PREFIXES:
            if key.startswith(prefix):
                index, suffix = i, key[len(prefix):]
                break
        got = (index, suffix, 1 << (_xxh32(suffix, XATTR_FILTER_SEED + index) & 31))
        if len(_INDEX_CACHE) < 4096:
            _INDEX_CACHE[key] = got
    return got


def _xattr_index(key: bytes) -> tuple[int, bytes]:
    index, suffix, _ = _xattr_key(key)
    return index, suffix


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _xattr_entry(key: bytes, value: bytes) -> bytes:
    index, suffix = _xattr_index(key)
    e = struct.pack("<BBH", len(suffix), index, len(value)) + suffix + value
    return e + bytes(-len(e) % 4)


def _xattr_entry_size(key: bytes, value: bytes) -> int:
    return _round_up(4 + len(_xattr_index(key)[1]) + len(value), 4)


def chunk_bits(size: int) -> int:
    """log2 of the chunk size libcomposefs picks for an external file: one chunk if possible."""
    bits = (size - 1).bit_length()
    if bits < BLKSIZ_BITS:
        return BLKSIZ_BITS
    if bits > CHUNK_BLKBITS_MASK + BLKSIZ_BITS:
        return CHUNK_BLKBITS_MASK + BLKSIZ_BITS
    return bits


def chunk_count(size: int) -> int:
    return -(-size // (1 << chunk_bits(size)))


def _is_whiteout(node: CfsNode) -> bool:
    return stat.S_ISCHR(node.mode) and node.rdev == 0


def _validate(node: CfsNode) -> None:
    if node.link_to is not None:
        if node.target().is_dir:
            raise CfsError(f"{node.name!r}: hard link to a directory")
        return
    if stat.S_IFMT(node.mode) not in _FILE_TYPES:
        raise CfsError(f"{node.name!r}: invalid mode 0{node.mode:o}")
    if stat.S_ISREG(node.mode) and node.size > 0 and chunk_count(node.size) > MAX_NONINLINE_CHUNKS:
        raise CfsError(f"{node.name!r}: file too large")
    if node.children and not node.is_dir:
        raise CfsError(f"{node.name!r}: only directories have children")


def _format_version(root: CfsNode, version: int, max_version: int) -> int:
    if version >= 1 or max_version < 1:
        return version
    stack = [root]
    while stack:
        node = stack.pop()
        if _is_whiteout(node):
            return 1
        stack.extend(c for c in node.children.values() if c.link_to is None)
    return version


def _rewrite_node(node: CfsNode, version: int) -> None:
    for key in [k for k in node.xattrs if k.startswith(OVERLAY)]:
        node.xattrs[OVERLAY_ESCAPE + key[len(OVERLAY):]] = node.xattrs.pop(key)
    if stat.S_ISREG(node.mode) and node.size > 0:
        if node.digest is not None:
            node.xattrs[XATTR_METACOPY] = bytes((0, 36, 0, 1)) + node.digest
        else:
            node.xattrs[XATTR_METACOPY] = b""
        if node.payload:
            node.xattrs[XATTR_REDIRECT] = b"/" + node.payload
    if _is_whiteout(node):
        parent = node.parent
        assert parent is not None
        node.size = 0
        node.mode = stat.S_IFREG | stat.S_IMODE(node.mode)
        node.xattrs[ESCAPED_WHITEOUT] = b""
        node.xattrs[USER_WHITEOUT] = b""
        parent.xattrs[ESCAPED_WHITEOUTS] = b""
        parent.xattrs[USER_WHITEOUTS] = b""
        if version >= 1:
            # an opaque directory ("y") stays opaque: libcomposefs 1.0.8 fails (ERANGE) on such a
            # tree, and "x" would drop the opacity (measured on 6.18: the lower's entries show)
            if parent.xattrs.get(ESCAPED_OPAQUE) != b"y":
                parent.xattrs[ESCAPED_OPAQUE] = b"x"
            if parent.xattrs.get(USER_OPAQUE) != b"y":
                parent.xattrs[USER_OPAQUE] = b"x"


def _rewrite_tree(root: CfsNode, version: int) -> None:
    stack: list[tuple[CfsNode, CfsNode]] = [(root, root)]
    while stack:
        node, parent = stack.pop()
        _validate(node)
        _rewrite_node(node, version)
        if node.is_dir:
            if b"." not in node.children:
                dot = CfsNode()
                dot.make_hardlink(node)
                node.add_child(b".", dot)
            if b".." not in node.children:
                dotdot = CfsNode()
                dotdot.make_hardlink(parent)
                node.add_child(b"..", dotdot)
            # children are processed in name order, depth first (as the C recursion does);
            # the order only matters for which child's escaping marks its parent first
            kids = [c for _, c in sorted(node.children.items()) if c.link_to is None]
            stack.extend((c, node) for c in reversed(kids))
    root.xattrs[XATTR_OPAQUE] = b"y"
    selinux = root.xattrs.get(b"security.selinux")
    for i in range(256):
        name = b"%02x" % i
        if name in root.children:
            continue
        wh = CfsNode(stat.S_IFCHR | 0o644, root.uid, root.gid, mtime=root.mtime, mtime_nsec=root.mtime_nsec)
        if selinux is not None:
            wh.xattrs[b"security.selinux"] = selinux
        root.add_child(name, wh)


class _Layout:
    __slots__ = ("data_start", "has_acl", "inodes", "inodes_end", "min_mtime", "n_data_blocks",
                 "shared", "shared_size")

    def __init__(self) -> None:
        self.inodes: list[CfsNode] = []
        self.min_mtime = (0, 0)
        self.has_acl = False
        self.shared: list[tuple[bytes, bytes]] = []
        self.shared_size = 0
        self.inodes_end = 0
        self.n_data_blocks = 0
        self.data_start = 0


def _sorted_children(node: CfsNode) -> list[tuple[bytes, CfsNode]]:
    return sorted(node.children.items())


def _compute_tree(root: CfsNode, lay: _Layout) -> None:
    queue = [root]
    lay.min_mtime = (root.mtime, root.mtime_nsec)
    i = 0
    while i < len(queue):
        node = queue[i]
        if node.is_dir:
            node.nlink = 2 + sum(1 for c in node.children.values() if c.is_dir)
        if (node.mtime, node.mtime_nsec) < lay.min_mtime:
            lay.min_mtime = (node.mtime, node.mtime_nsec)
        node.ino = i
        if b"system.posix_acl_access" in node.xattrs or b"system.posix_acl_default" in node.xattrs:
            lay.has_acl = True
        for _, child in _sorted_children(node):
            if child.link_to is None:
                queue.append(child)
        i += 1
    lay.inodes = queue


def _shared_xattrs(lay: _Layout) -> dict[tuple[bytes, bytes], int]:
    counts: dict[tuple[bytes, bytes], int] = {}
    for node in lay.inodes:
        for kv in node.xattrs.items():
            counts[kv] = counts.get(kv, 0) + 1
    # xattrs_ht_sort: descending by key, then by value length, then by value bytes
    order = sorted(counts, key=lambda kv: (kv[0], len(kv[1]), kv[1]), reverse=True)
    offsets: dict[tuple[bytes, bytes], int] = {}
    off = 0
    for kv in order:
        if counts[kv] > 1:
            offsets[kv] = off
            lay.shared.append(kv)
            off += _xattr_entry_size(*kv)
    lay.shared_size = off
    return offsets


def _dir_size(node: CfsNode) -> None:
    blocks = 0
    size = 0
    for name in sorted(node.children):
        n = DIRENT_SIZE + len(name)
        if size + n > BLKSIZ:
            blocks += 1
            size = 0
        size += n
    if size > BLKSIZ // 2:
        blocks += 1
        size = 0
    node._blocks = blocks
    node._tail = size


def _inode_size(node: CfsNode) -> None:
    if node.is_dir:
        _dir_size(node)
    elif stat.S_ISLNK(node.mode):
        node._blocks = 0
        node._tail = len(node.payload)
    elif stat.S_ISREG(node.mode) and node.size > 0:
        node._blocks = 0
        node._tail = chunk_count(node.size) * 4
    else:
        node._blocks = 0
        node._tail = 0


def _fits_compact(node: CfsNode, lay: _Layout) -> bool:
    if (node.mtime, node.mtime_nsec) != lay.min_mtime:
        return False
    if node.nlink > 0xFFFF or node.uid > 0xFFFF or node.gid > 0xFFFF:
        return False
    size = node._blocks * BLKSIZ + node._tail if node.is_dir else node.size
    return size <= 0xFFFFFFFF


def _tail_padding(node: CfsNode, pos: int, inode_size: int, xattr_size: int) -> int:
    non_tail = inode_size + xattr_size
    total = non_tail + node._tail
    if stat.S_ISLNK(node.mode):
        pos_block = pos // BLKSIZ
        end_block = (pos + total - 1) // BLKSIZ
        if total // BLKSIZ > 0:
            node._blocks += 1
            node._tail = 0
        if pos_block != end_block:
            return _round_up(pos, BLKSIZ) - pos
        return 0
    remainder = BLKSIZ - (pos + non_tail) % BLKSIZ
    if remainder < node._tail:
        extra = _round_up(remainder, SLOTSIZE)
        remainder = BLKSIZ - (pos + non_tail + extra) % BLKSIZ
        if node._tail <= remainder:
            return extra
        node._blocks += 1
        node._tail = 0
        return _round_up(pos, BLKSIZ) - pos
    return 0


def _compute_inodes(lay: _Layout, offsets: dict[tuple[bytes, bytes], int]) -> None:
    pos = SUPER_OFFSET + SUPER_SIZE
    for node in lay.inodes:
        _inode_size(node)
        node._compact = _fits_compact(node, lay)
        inode_size = COMPACT_SIZE if node._compact else EXTENDED_SIZE
        shared: dict[tuple[bytes, bytes], int] = {}
        unshared = 0
        for kv in sorted(node.xattrs.items()):
            off = offsets.get(kv)
            if off is not None and len(shared) < XATTR_LONG_PREFIX:
                shared[kv] = off
            else:
                unshared += _xattr_entry_size(*kv)
        node._shared = shared
        xsize = _round_up(XATTR_HEADER_SIZE + 4 * len(shared) + unshared, 4) if node.xattrs else 0
        node._xsize = xsize
        ppos = pos
        pos = _round_up(pos, SLOTSIZE)
        extra = _tail_padding(node, pos, inode_size, xsize)
        node._ipad = pos - ppos + extra
        pos += extra
        node._isize = inode_size + xsize + node._tail
        lay.n_data_blocks += node._blocks
        node._nid = pos // SLOTSIZE
        pos += node._isize
    lay.inodes_end = _round_up(pos, SLOTSIZE)


class _Out:
    """Counts, hashes and passes on the image bytes, in 1 MiB pieces."""

    __slots__ = ("buf", "hasher", "n", "write")

    def __init__(self, write: Callable[[bytes], object] | None, hasher: FsVerityHasher | None) -> None:
        self.write = write
        self.hasher = hasher
        self.n = 0
        self.buf = bytearray()

    def put(self, data: bytes) -> None:
        self.n += len(data)
        self.buf += data
        if len(self.buf) >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        data = bytes(self.buf)
        self.buf.clear()
        if self.hasher is not None:
            self.hasher.update(data)
        if self.write is not None:
            self.write(data)

    def align(self, a: int) -> None:
        self.put(bytes(-self.n % a))


def _dentries_chunk(node: CfsNode, names: list[bytes], align: int) -> bytes:
    out = bytearray()
    nameoff = len(names) * DIRENT_SIZE
    for name in names:
        t = node.children[name].target()
        out += struct.pack("<QHBB", t._nid, nameoff, _FILE_TYPES[stat.S_IFMT(t.mode)], 0)
        nameoff += len(name)
    for name in names:
        out += name
    out += bytes(-len(out) % align)
    return bytes(out)


def _dentries(node: CfsNode) -> tuple[list[bytes], bytes]:
    """(full directory blocks, inline tail) of a directory."""
    names = sorted(node.children)
    blocks: list[bytes] = []
    size = 0
    first = 0
    for i, name in enumerate(names):
        n = DIRENT_SIZE + len(name)
        if size + n > BLKSIZ:
            blocks.append(_dentries_chunk(node, names[first:i], BLKSIZ))
            size = 0
            first = i
        size += n
    if len(blocks) < node._blocks:
        blocks.append(_dentries_chunk(node, names[first:], BLKSIZ))
        size = 0
        first = len(names)
    tail = _dentries_chunk(node, names[first:], 1) if size > 0 else b""
    return blocks, tail


def _write_inode(out: _Out, node: CfsNode, lay: _Layout, data_end: list[int]) -> None:
    out.put(bytes(node._ipad))
    ftype = stat.S_IFMT(node.mode)
    xicount = (node._xsize - XATTR_HEADER_SIZE) // 4 + 1 if node._xsize else 0
    if xicount > 0xFFFF:
        raise CfsError(f"{node.name!r}: too many xattrs")
    layout = LAYOUT_FLAT_INLINE if node._tail > 0 else LAYOUT_FLAT_PLAIN
    chunk_format = None
    if node.is_dir:
        size = node._blocks * BLKSIZ + node._tail
    elif ftype == stat.S_IFREG:
        size = node.size
        if size > 0:
            layout = LAYOUT_CHUNK_BASED
            chunk_format = chunk_bits(size) - BLKSIZ_BITS
    elif ftype == stat.S_IFLNK:
        size = node._tail if node._blocks == 0 else node.size
    else:
        size = 0
    iu = 0
    if ftype in (stat.S_IFCHR, stat.S_IFBLK):
        iu = node.rdev & 0xFFFFFFFF
    elif ftype in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK) and node._blocks > 0:
        iu = data_end[0] // BLKSIZ
        data_end[0] += BLKSIZ * node._blocks
    if chunk_format is not None:
        iu = (iu & 0xFFFF0000) | chunk_format  # the union's first le16 is the chunk format
    fmt = layout << 1 | (0 if node._compact else 1)
    if node._compact:
        out.put(struct.pack("<HHHHIIIIHHI", fmt, xicount, node.mode & 0xFFFF, node.nlink, size, 0, iu,
                            node.ino, node.uid, node.gid, 0))
    else:
        out.put(struct.pack("<HHHHQIIIIQII16s", fmt, xicount, node.mode & 0xFFFF, 0, size, iu, node.ino,
                            node.uid, node.gid, node.mtime & 0xFFFFFFFFFFFFFFFF, node.mtime_nsec,
                            node.nlink, b""))
    if node._xsize:
        bits = 0
        for key in node.xattrs:
            bits |= _xattr_key(key)[2]
        body = bytearray(struct.pack("<IB7s", 0xFFFFFFFF & ~bits, len(node._shared), b""))
        base = lay.inodes_end % BLKSIZ
        for off in node._shared.values():
            body += struct.pack("<I", (base + off) // 4)
        for kv in sorted(node.xattrs.items()):
            if kv not in node._shared:
                body += _xattr_entry(*kv)
        assert len(body) == node._xsize, (len(body), node._xsize)
        out.put(bytes(body))
    if node.is_dir:
        out.put(_dentries(node)[1])
    elif ftype == stat.S_IFLNK:
        if node._blocks == 0:
            out.put(node.payload)
    elif ftype == stat.S_IFREG and node._tail > 0:
        out.put(NULL_ADDR * chunk_count(node.size))


def _write_data(out: _Out, node: CfsNode) -> None:
    if node.is_dir:
        for block in _dentries(node)[0]:
            out.put(block)
        return
    if node._blocks == 0:
        return
    if stat.S_ISREG(node.mode):
        out.put(NULL_ADDR * 1024)
    elif stat.S_ISLNK(node.mode):
        out.put(node.payload[:BLKSIZ])
        out.align(BLKSIZ)


def write_image(root: CfsNode, write: Callable[[bytes], object] | None = None, *,
                want_digest: bool = True, version: int = 0, max_version: int = 1) -> bytes | None:
    """Write the composefs image of *root* through *write*; return its fs-verity digest.

    The tree is rewritten in place (as libcomposefs does on its clone): build a fresh tree for
    each image.
    """
    if not root.is_dir:
        raise CfsError("the root of a composefs image must be a directory")
    if version > LCFS_VERSION_MAX or max_version > LCFS_VERSION_MAX:
        raise CfsError(f"unknown composefs format version {max(version, max_version)}")
    max_version = max(max_version, version)
    version = _format_version(root, version, max_version)
    _rewrite_tree(root, version)
    lay = _Layout()
    _compute_tree(root, lay)
    offsets = _shared_xattrs(lay)
    _compute_inodes(lay, offsets)
    return _emit(root, lay, write, want_digest, version)


def _emit(root: CfsNode, lay: _Layout, write: Callable[[bytes], object] | None, want_digest: bool,
          version: int) -> bytes | None:
    hasher = FsVerityHasher() if want_digest else None
    out = _Out(write, hasher)
    flags = 1 if lay.has_acl else 0
    out.put(struct.pack("<IIII16s", LCFS_EROFS_MAGIC, LCFS_EROFS_VERSION, flags, version, b""))
    out.put(bytes(SUPER_OFFSET - 32))
    if root._nid >= 0xFFFF:
        raise CfsError("root inode too far into the image")
    data_start = _round_up(lay.inodes_end + lay.shared_size, BLKSIZ)
    sb = struct.pack("<IIIBBHQQIIII16s16sIHHHBBIQB23s", EROFS_SUPER_MAGIC_V1, 0,
                     FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER, BLKSIZ_BITS, 0, root._nid,
                     len(lay.inodes), lay.min_mtime[0] & 0xFFFFFFFFFFFFFFFF, lay.min_mtime[1],
                     data_start // BLKSIZ + lay.n_data_blocks,
                     (SUPER_OFFSET + SUPER_SIZE) // BLKSIZ, lay.inodes_end // BLKSIZ,
                     b"", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0, b"")
    assert len(sb) == SUPER_SIZE
    out.put(sb)
    data_end = [data_start]
    for node in lay.inodes:
        _write_inode(out, node, lay, data_end)
    out.align(SLOTSIZE)
    assert out.n == lay.inodes_end
    for kv in lay.shared:
        out.put(_xattr_entry(*kv))
    out.align(BLKSIZ)
    assert out.n == data_start
    for node in lay.inodes:
        _write_data(out, node)
    assert out.n == data_end[0] == data_start + lay.n_data_blocks * BLKSIZ
    out.flush()
    return hasher.digest() if hasher is not None else None
