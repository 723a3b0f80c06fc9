"""OSTree object formats: commit, dirtree, dirmeta, file headers, checksums.

Every object is identified by the SHA-256 of a canonical byte stream:

* metadata objects (commit, dirtree, dirmeta) hash their GVariant bytes;
* content ("file") objects hash a length-prefixed file header followed by the
  file's content (empty for symlinks).

The formats here are byte-identical to libostree's; numbers that libostree
byte-swaps to big-endian (uid, gid, mode, timestamp, sizes) are swapped here too.
"""

from __future__ import annotations

import enum
import stat
import struct
from collections.abc import Iterable

from pyostree.errors import OstreeError
from pyostree.store import gvariant

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    import hashlib
    from typing import Any

Xattrs = list[tuple[bytes, bytes]]
"""Extended attributes as ostree stores them: (name with trailing NUL, value), sorted."""


class ObjectType(enum.Enum):
    FILE = "file"
    DIR_TREE = "dirtree"
    DIR_META = "dirmeta"
    COMMIT = "commit"
    TOMBSTONE_COMMIT = "tombstone-commit"
    COMMIT_META = "commitmeta"
    PAYLOAD_LINK = "payload-link"
    FILE_XATTRS = "file-xattrs"
    FILE_XATTRS_LINK = "file-xattrs-link"

    @property
    def is_meta(self) -> bool:
        return self is not ObjectType.FILE

    @classmethod
    def from_name(cls, name: str) -> ObjectType:
        try:
            return cls(name)
        except ValueError:
            raise OstreeError(f"Invalid object type '{name}'") from None


COMMIT_TYPE = "(a{sv}aya(say)sstayay)"
DIRTREE_TYPE = "(a(say)a(sayay))"
DIRMETA_TYPE = "(uuua(ayay))"
FILE_HEADER_TYPE = "(uuuusa(ayay))"
ZLIB_FILE_HEADER_TYPE = "(tuuuusa(ayay))"
FILEMETA_TYPE = "(uuua(ayay))"  # bare-user's user.ostreemeta xattr
METADATA_TYPE = "a{sv}"

OBJECT_VARIANT_TYPES = {
    ObjectType.COMMIT: COMMIT_TYPE,
    ObjectType.DIR_TREE: DIRTREE_TYPE,
    ObjectType.DIR_META: DIRMETA_TYPE,
    ObjectType.COMMIT_META: METADATA_TYPE,
    ObjectType.TOMBSTONE_COMMIT: METADATA_TYPE,
}

MAX_METADATA_SIZE = 10 * 1024 * 1024
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256(b"")


U32_MAX = 0xFFFFFFFF


def check_u32(value: int, what: str) -> int:
    """*value* if it fits the 32 bits ostree stores (uid, gid, mode), else a clear error.

    libostree truncates a tar header's 64-bit uid to 32 bits (2^32 becomes root);
    pyostree refuses it instead.
    """
    if not 0 <= value <= U32_MAX:
        raise OstreeError(f"{what} {value} out of range (0 to {U32_MAX})")
    return value


def _be32(v: int) -> int:
    return int.from_bytes((v & 0xFFFFFFFF).to_bytes(4, "little"), "big")


def _be64(v: int) -> int:
    return int.from_bytes((v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"), "big")


# ---------------------------------------------------------------------------
# Checksums and names


_HEX = frozenset("0123456789abcdef")


def is_valid_checksum(s: str) -> bool:
    return len(s) == 64 and all(c in _HEX for c in s)


def validate_checksum(s: str) -> str:
    if not is_valid_checksum(s):
        raise OstreeError(f"Invalid checksum of length {len(s)} expected 64" if len(s) != 64
                          else f"Invalid checksum '{s}'")
    return s


def checksum_from_bytes(b: bytes) -> str:
    if len(b) != 32:
        raise OstreeError(f"Invalid checksum of length {len(b)} expected 32")
    return b.hex()


def checksum_to_bytes(s: str) -> bytes:
    return bytes.fromhex(validate_checksum(s))


def object_relpath(checksum: str, objtype: ObjectType, archive: bool = False) -> str:
    """``objects/XX/REST.TYPE`` (``.filez`` for content in archive repos)."""
    suffix = objtype.value
    if objtype is ObjectType.FILE and archive:
        suffix = "filez"
    return f"objects/{checksum[:2]}/{checksum[2:]}.{suffix}"


def validate_filename(name: str) -> None:
    """Reject names that could escape a directory: empty, ``.``, ``..``, ``/``, NUL."""
    if not name:
        raise OstreeError("Invalid empty filename")
    if name in (".", ".."):
        raise OstreeError(f"Invalid filename {name}")
    if "/" in name:
        raise OstreeError(f"Invalid / in filename {name}")
    if "\0" in name:
        raise OstreeError("Invalid NUL in filename")


# ---------------------------------------------------------------------------
# xattrs


def normalize_xattrs(pairs: Iterable[tuple[bytes, bytes]]) -> Xattrs:
    """Sort by name and make each name NUL-terminated, as libostree stores them."""
    out: Xattrs = []
    for name, value in pairs:
        if not name.endswith(b"\0"):
            name = name + b"\0"
        if b"\0" in name[:-1] or name == b"\0":
            raise OstreeError(f"Invalid xattr name {name[:-1]!r} (empty or with a NUL byte)")
        out.append((name, bytes(value)))
    out.sort(key=lambda p: p[0])
    return out


def xattr_name(stored: bytes) -> bytes:
    """The real attribute name (without the stored trailing NUL)."""
    return stored[:-1] if stored.endswith(b"\0") else stored


# ---------------------------------------------------------------------------
# Metadata objects


class Record:
    """Base of pyostree's plain value classes: equality and repr over their fields.

    Not dataclasses: importing dataclasses (and inspect with it) costs more
    start-up time than every pyostree module together.  Fields are the
    ``__slots__`` of a slotted subclass (slots keep the per-file objects of a
    big tree small), else the instance's attributes in assignment order.
    """

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> list[tuple[str, Any]]:
        if self.__slots__:
            return [(n, getattr(self, n)) for n in self.__slots__]
        return list(vars(self).items())

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in self._fields())
        return f"{self.__class__.__name__}({args})"


class DirMeta(Record):
    __slots__ = ("uid", "gid", "mode", "xattrs")  # noqa: RUF023  (field order)

    def __init__(self, uid: int, gid: int, mode: int, xattrs: Xattrs | None = None) -> None:
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.xattrs: Xattrs = xattrs if xattrs is not None else []

    def serialize(self) -> bytes:
        return gvariant.serialize(
            DIRMETA_TYPE, (_be32(self.uid), _be32(self.gid), _be32(self.mode), self.xattrs)
        )

    @classmethod
    def parse(cls, data: bytes) -> DirMeta:
        uid, gid, mode, xattrs = gvariant.deserialize(DIRMETA_TYPE, data)
        return cls(_be32(uid), _be32(gid), _be32(mode), [(bytes(n), bytes(v)) for n, v in xattrs])


class DirTree(Record):
    __slots__ = ("files", "dirs")  # noqa: RUF023  (field order)

    def __init__(self, files: list[tuple[str, str]] | None = None,
                 dirs: list[tuple[str, str, str]] | None = None) -> None:
        self.files: list[tuple[str, str]] = files if files is not None else []
        """(name, content checksum), sorted by name."""
        self.dirs: list[tuple[str, str, str]] = dirs if dirs is not None else []
        """(name, dirtree checksum, dirmeta checksum), sorted by name."""

    def serialize(self) -> bytes:
        return gvariant.serialize(
            DIRTREE_TYPE,
            (
                [(n, bytes.fromhex(c)) for n, c in self.files],
                [(n, bytes.fromhex(t), bytes.fromhex(m)) for n, t, m in self.dirs],
            ),
        )

    @classmethod
    def parse(cls, data: bytes, validate: bool = True) -> DirTree:
        files, dirs = gvariant.deserialize(DIRTREE_TYPE, data)
        tree = cls(
            [(n, checksum_from_bytes(c)) for n, c in files],
            [(n, checksum_from_bytes(t), checksum_from_bytes(m)) for n, t, m in dirs],
        )
        if validate:
            for n, *_ in tree.files:
                validate_filename(n)
            for n, *_ in tree.dirs:
                validate_filename(n)
        return tree


class Commit(Record):
    __slots__ = ("metadata", "parent", "related", "subject", "body",  # noqa: RUF023  (field order)
                 "timestamp", "root_contents", "root_meta")

    def __init__(self, metadata: list[tuple[str, gvariant.Variant]], parent: str | None,
                 related: list[tuple[str, bytes]], subject: str, body: str, timestamp: int,
                 root_contents: str, root_meta: str) -> None:
        self.metadata = metadata
        self.parent = parent
        self.related = related
        self.subject = subject
        self.body = body
        self.timestamp = timestamp
        self.root_contents = root_contents
        self.root_meta = root_meta

    def serialize(self) -> bytes:
        return gvariant.serialize(
            COMMIT_TYPE,
            (
                self.metadata,
                bytes.fromhex(self.parent) if self.parent else b"",
                self.related,
                self.subject,
                self.body,
                _be64(self.timestamp),
                bytes.fromhex(self.root_contents),
                bytes.fromhex(self.root_meta),
            ),
        )

    @classmethod
    def parse(cls, data: bytes) -> Commit:
        md, parent, related, subject, body, ts, contents, meta = gvariant.deserialize(COMMIT_TYPE, data)
        return cls(
            list(md),
            checksum_from_bytes(parent) if parent else None,
            [(n, bytes(c)) for n, c in related],
            subject,
            body,
            _be64(ts),
            checksum_from_bytes(contents),
            checksum_from_bytes(meta),
        )

    def get_metadata(self, key: str) -> gvariant.Variant | None:
        for k, v in self.metadata:
            if k == key:
                return v
        return None


def metadata_lookup(md: list[tuple[str, gvariant.Variant]], key: str) -> Any:
    for k, v in md:
        if k == key:
            return v.value
    return None


# ---------------------------------------------------------------------------
# Content objects


class FileInfo(Record):
    """Metadata of a content object (what the file header carries)."""

    __slots__ = ("mode", "uid", "gid", "size", "symlink_target", "xattrs")  # noqa: RUF023  (field order)

    def __init__(self, mode: int, uid: int = 0, gid: int = 0, size: int = 0,
                 symlink_target: str = "", xattrs: Xattrs | None = None) -> None:
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.symlink_target = symlink_target
        self.xattrs: Xattrs = xattrs if xattrs is not None else []

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.mode)


def _lenprefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + b"\0\0\0\0" + data


_FILE_HEADER_CACHE: dict[tuple[int, int, int, str, tuple[tuple[bytes, bytes], ...]], bytes] = {}


def file_header(info: FileInfo) -> bytes:
    """The length-prefixed ``(uuuusa(ayay))`` header hashed into content checksums.

    Memoized: a tree has few distinct (owner, mode, xattrs) combinations, and
    serializing the header was a visible share of a commit's CPU time.
    """
    target = info.symlink_target if stat.S_ISLNK(info.mode) else ""
    key = (info.uid, info.gid, info.mode, target, tuple(info.xattrs))
    hdr = _FILE_HEADER_CACHE.get(key)
    if hdr is None:
        hdr = _lenprefixed(
            gvariant.serialize(
                FILE_HEADER_TYPE, (_be32(info.uid), _be32(info.gid), _be32(info.mode), 0, target, info.xattrs)
            )
        )
        if len(_FILE_HEADER_CACHE) >= 4096:
            _FILE_HEADER_CACHE.clear()
        _FILE_HEADER_CACHE[key] = hdr
    return hdr


def zlib_file_header(info: FileInfo) -> bytes:
    """The length-prefixed ``(tuuuusa(ayay))`` header of an archive ``.filez`` object."""
    target = info.symlink_target if stat.S_ISLNK(info.mode) else ""
    size = info.size if stat.S_ISREG(info.mode) else 0
    return _lenprefixed(
        gvariant.serialize(
            ZLIB_FILE_HEADER_TYPE,
            (_be64(size), _be32(info.uid), _be32(info.gid), _be32(info.mode), 0, target, info.xattrs),
        )
    )


def lenprefixed_header_length(data: bytes, what: str, total: int | None = None) -> int:
    """8 + the header size read from the first 8 bytes of a content object.

    As libostree (``ostree_content_stream_parse``) the only bound is the
    object's own size, *total* when known: headers over 64 KiB (many or large
    xattrs, long symlink targets) are legitimate.
    """
    if len(data) < 8:
        raise OstreeError(f"Corrupted {what}: file header too short")
    (n,) = struct.unpack_from(">I", data, 0)
    if n == 0:
        raise OstreeError(f"Corrupted {what}: File header size is zero")
    if total is not None and 8 + n > total:
        raise OstreeError(f"Corrupted {what}: File header size {n} exceeds size {total}")
    return 8 + int(n)


def parse_lenprefixed_header(data: bytes, what: str) -> tuple[int, bytes]:
    """Split a length-prefixed header off *data*; returns (total header length, variant bytes)."""
    hlen = lenprefixed_header_length(data, what)
    if hlen > len(data):
        raise OstreeError(f"Corrupted {what}: File header size {hlen - 8} exceeds size {len(data)}")
    return hlen, data[8:hlen]


def pread_head(fd: int, what: str, extra: int = 65536) -> bytes:
    """The first bytes of a content object: its whole header, and more (64 KiB, or *extra*
    bytes past a longer header)."""
    import os

    head = os.pread(fd, 65536, 0)
    hlen = lenprefixed_header_length(head, what)
    if hlen > len(head):
        head = os.pread(fd, hlen + extra, 0)
        lenprefixed_header_length(head, what, len(head) if len(head) < hlen else None)
    return head


def parse_zlib_file_header(variant: bytes, what: str) -> FileInfo:
    try:
        size, uid, gid, mode, rdev, target, xattrs = gvariant.deserialize(ZLIB_FILE_HEADER_TYPE, variant)
    except gvariant.GVariantError as e:
        raise OstreeError(f"Corrupted {what}: {e}") from None
    return _info_from_header(_be64(size), uid, gid, mode, rdev, target, xattrs, what)


def parse_file_header(variant: bytes, what: str) -> FileInfo:
    try:
        uid, gid, mode, rdev, target, xattrs = gvariant.deserialize(FILE_HEADER_TYPE, variant)
    except gvariant.GVariantError as e:
        raise OstreeError(f"Corrupted {what}: {e}") from None
    return _info_from_header(0, uid, gid, mode, rdev, target, xattrs, what)


def _info_from_header(size: int, uid: int, gid: int, mode: int, rdev: int, target: str,
                      xattrs: Any, what: str) -> FileInfo:
    mode = _be32(mode)
    if rdev != 0:
        raise OstreeError(f"Corrupted {what}: Corrupted file object; invalid rdev")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OstreeError(f"Corrupted {what}: Invalid file metadata mode {mode:o}")
    return FileInfo(mode, _be32(uid), _be32(gid), size, target, [(bytes(n), bytes(v)) for n, v in xattrs])


def filemeta_serialize(uid: int, gid: int, mode: int, xattrs: Xattrs) -> bytes:
    """The ``user.ostreemeta`` xattr value of bare-user repos."""
    return gvariant.serialize(FILEMETA_TYPE, (_be32(uid), _be32(gid), _be32(mode), xattrs))


def filemeta_parse(data: bytes, what: str) -> tuple[int, int, int, Xattrs]:
    try:
        uid, gid, mode, xattrs = gvariant.deserialize(FILEMETA_TYPE, data)
    except gvariant.GVariantError as e:
        raise OstreeError(f"Corrupted {what}: user.ostreemeta: {e}") from None
    return _be32(uid), _be32(gid), _be32(mode), [(bytes(n), bytes(v)) for n, v in xattrs]


def sha256(data: bytes = b"") -> hashlib._Hash:
    """hashlib.sha256, imported on first use: loading OpenSSL costs start-up
    time that commands which never hash (checkout, refs, ...) should not pay."""
    from hashlib import sha256 as _sha256

    return _sha256(data)


def content_checksum(info: FileInfo, content: bytes = b"") -> str:
    h = sha256(file_header(info))
    if stat.S_ISREG(info.mode):
        h.update(content)
    return h.hexdigest()


def metadata_checksum(data: bytes) -> str:
    return sha256(data).hexdigest()


def validate_bareuseronly_mode(mode: int, checksum: str) -> None:
    if stat.S_ISREG(mode):
        invalid = (mode & ~stat.S_IFMT(mode)) & ~0o775
        if invalid:
            raise OstreeError(
                f"Content object {checksum}: invalid mode 0{mode:o} with bits 0{invalid:o}"
            )
    elif not stat.S_ISLNK(mode):
        raise OstreeError(f"Content object {checksum}: invalid non-regular mode 0{mode:o}")


def varuint64(n: int) -> bytes:
    """Protobuf-style base-128 varint (``_ostree_write_varuint64``)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
