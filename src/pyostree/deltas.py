"""Static deltas (``ostree static-delta``), byte-format compatible with libostree.

A delta from commit FROM (or from nothing, "from scratch") to commit TO lives
in ``deltas/`` under a name built from the modified base64 (``/`` -> ``_``, no
padding) of the binary checksums::

    deltas/FF/FFFF...-TTTT...   (FROM-TO: split after FROM's first 2 chars)
    deltas/TT/TTTT...           (from scratch: split after TO's first 2 chars)

The directory holds ``superblock`` and the parts ``0``, ``1``, ...

superblock, GVariant ``(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))``:
  metadata (``ostree.endianness``: ``y`` 'l'/'B', inline parts keyed by
  their relative path, the target's detached metadata under
  ``deltas/.../commitmeta``), timestamp (big-endian), FROM (empty for from
  scratch), TO, the TO commit object itself, an empty dependency array, the
  part headers ``(version, sha256 of the part file, part size, uncompressed
  size of its objects, concatenated (objtype byte + 32-byte checksum))``
  and the fallback objects ``(objtype, checksum, compressed, uncompressed)``.
  The integers of headers and fallbacks are in the byte order named by
  ``ostree.endianness`` (host order when written by ostree).  A signed
  superblock is ``(taya{sv})`` starting with the magic ``OSTSGNDT``.

part file, GVariant ``(yay)``: a compression byte (0: none, ``x``: xz) and
the (compressed) payload ``(a(uuu)aa(ayay)ayay)``: (uid, gid, mode) triples in
big-endian, xattr sets, a data blob and the operations, each an opcode
followed by LEB128 varints:

====  ======================  ==============================================
``S`` open-splice-and-close   metadata: length, offset; content: mode index,
                              xattr index, size, offset
``o`` open                    mode index, xattr index, size
``w`` write                   length, offset (in the blob or the read source)
``r`` set-read-source         offset of a 32-byte checksum in the blob
``R`` unset-read-source
``c`` close
``B`` bspatch                 offset, length of a bsdiff stream in the blob
====  ======================  ==============================================

Each operation that closes an object consumes the next entry of the part's
object list.  We generate whole objects only (``S``); applying understands
every opcode, including ostree's rollsum (``o/w/r/R/c``) and bsdiff (``B``).
"""

from __future__ import annotations

import base64
import hashlib
import lzma
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterable

from . import gvariant
from . import objects as obj
from .errors import OstreeError
from .gvariant import Variant
from .objects import FileInfo, ObjectType, Record, varuint64
from .repo import Repo, rm_rf_at

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

SUPERBLOCK_TYPE = "(a{sv}tayay" + obj.COMMIT_TYPE + "aya(uayttay)a(yaytt))"
META_ENTRY_TYPE = "(uayttay)"
FALLBACK_TYPE = "(yaytt)"
PART_PAYLOAD_TYPE = "(a(uuu)aa(ayay)ayay)"
SIGNED_TYPE = "(taya{sv})"
SIGNED_MAGIC = b"OSTSGNDT"
DELTAPART_VERSION = 0
OBJTYPE_CSUM_LEN = 33

OP_OPEN_SPLICE_AND_CLOSE = ord("S")
OP_OPEN = ord("o")
OP_WRITE = ord("w")
OP_SET_READ_SOURCE = ord("r")
OP_UNSET_READ_SOURCE = ord("R")
OP_CLOSE = ord("c")
OP_BSPATCH = ord("B")
_OP_INDEX = {OP_OPEN_SPLICE_AND_CLOSE: 0, OP_OPEN: 1, OP_WRITE: 2, OP_SET_READ_SOURCE: 3,
             OP_UNSET_READ_SOURCE: 4, OP_CLOSE: 5, OP_BSPATCH: 6}

_OBJTYPE_NUM = {ObjectType.FILE: 1, ObjectType.DIR_TREE: 2, ObjectType.DIR_META: 3, ObjectType.COMMIT: 4,
                ObjectType.TOMBSTONE_COMMIT: 5, ObjectType.COMMIT_META: 6, ObjectType.PAYLOAD_LINK: 7,
                ObjectType.FILE_XATTRS: 8, ObjectType.FILE_XATTRS_LINK: 9}
_NUM_OBJTYPE = {v: k for k, v in _OBJTYPE_NUM.items()}

ObjectName = tuple[str, ObjectType]


# ---------------------------------------------------------------------------
# names and paths


def checksum_to_b64(checksum: str) -> str:
    """ostree's modified base64 of a checksum: 43 chars, ``/`` -> ``_``."""
    return base64.b64encode(obj.checksum_to_bytes(checksum)).decode("ascii").rstrip("=").replace("/", "_")


def b64_to_checksum(s: str) -> str:
    if len(s) != 43:
        raise OstreeError(f"Invalid delta checksum encoding '{s}'")
    try:
        raw = base64.b64decode(s.replace("_", "/") + "=", validate=True)
    except ValueError:
        raise OstreeError(f"Invalid delta checksum encoding '{s}'") from None
    return raw.hex()


def delta_relpath(from_: str | None, to: str, target: str | None = None) -> str:
    """``deltas/...`` directory of a delta, or *target* inside it."""
    to64 = checksum_to_b64(to)
    if from_ is not None:
        f64 = checksum_to_b64(from_)
        rel = f"deltas/{f64[:2]}/{f64[2:]}-{to64}"
    else:
        rel = f"deltas/{to64[:2]}/{to64[2:]}"
    return rel + "/" + target if target is not None else rel


def index_relpath(to: str) -> str:
    to64 = checksum_to_b64(to)
    return f"delta-indexes/{to64[:2]}/{to64[2:]}.index"


def delta_name(from_: str | None, to: str) -> str:
    return f"{from_}-{to}" if from_ else to


def parse_delta_name(name: str) -> tuple[str | None, str]:
    """``FROM-TO`` or ``TO`` -> (from or None, to), validating the checksums as ostree."""
    first, dash, second = name.partition("-")
    _validate_rev_checksum(first)
    if dash:
        _validate_rev_checksum(second)
        return first, second
    return None, first


def _validate_rev_checksum(s: str) -> None:
    # ostree_validate_checksum_string -> ostree_validate_structureof_checksum_string
    if not obj.is_valid_checksum(s):
        raise OstreeError(f"Invalid rev {s}")


def list_deltas(repo: Repo) -> list[str]:
    """Names (``FROM-TO`` or ``TO``) of the deltas in the repository that have a superblock."""
    out: list[str] = []
    base = f"/proc/self/fd/{repo.dfd}/deltas"
    try:
        prefixes = sorted(os.listdir(base))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for p in prefixes:
        if not os.path.isdir(f"{base}/{p}") or os.path.islink(f"{base}/{p}"):
            continue
        for n in sorted(os.listdir(f"{base}/{p}")):
            full = f"{base}/{p}/{n}"
            if not os.path.isdir(full) or os.path.islink(full) or not os.path.exists(full + "/superblock"):
                continue
            joined = p + n
            first, dash, second = joined.partition("-")
            try:
                name = b64_to_checksum(first)
                if dash:
                    name += "-" + b64_to_checksum(second)
            except OstreeError:
                continue
            out.append(name)
    return out


def list_delta_indexes(repo: Repo) -> list[str]:
    out: list[str] = []
    base = f"/proc/self/fd/{repo.dfd}/delta-indexes"
    try:
        prefixes = sorted(os.listdir(base))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for p in prefixes:
        if len(p) != 2 or not os.path.isdir(f"{base}/{p}"):
            continue
        for n in sorted(os.listdir(f"{base}/{p}")):
            if len(n) != 41 + len(".index") or not n.endswith(".index") or not os.path.isfile(f"{base}/{p}/{n}"):
                continue
            try:
                out.append(b64_to_checksum(p + n[:41]))
            except OstreeError:
                continue
    return out


def reindex(repo: Repo, to: str | None = None) -> None:
    """Regenerate ``delta-indexes/`` (all, or only the one for *to*)."""
    if not repo.config.get_bool("core", "indexed-deltas", False):
        repo.config.set("core", "indexed-deltas", "true")
        repo.write_config()
    wanted: dict[str, list[str | None] | None] = {}
    if to is None:
        for c in list_delta_indexes(repo):
            wanted[c] = None
    else:
        obj.validate_checksum(to)
        wanted[to] = None
    for name in list_deltas(repo):
        f, t = parse_delta_name(name)
        if to is not None and t != to:
            continue
        lst = wanted.get(t)
        if lst is None:
            lst = []
            wanted[t] = lst
        lst.append(f)
    for t, froms in wanted.items():
        rel = index_relpath(t)
        if froms is None:
            try:
                os.unlink(rel, dir_fd=repo.dfd)
            except FileNotFoundError:
                pass
            continue
        entries: list[tuple[str, Variant]] = []
        for f in sorted(froms, key=lambda x: x or ""):
            digest = hashlib.sha256(_read_rel(repo, delta_relpath(f, t, "superblock"))).digest()
            entries.append((delta_name(f, t), Variant("ay", digest)))
        entries.sort(key=lambda kv: kv[0])
        data = gvariant.serialize("a{sv}", [("ostree.static-deltas", Variant("a{sv}", entries))])
        os.makedirs(f"/proc/self/fd/{repo.dfd}/{os.path.dirname(rel)}", mode=0o755, exist_ok=True)
        try:
            if _read_rel(repo, rel) == data:
                continue
        except OstreeError:
            pass
        _write_atomic(repo.dfd, rel, data)


def _read_rel(repo: Repo, rel: str) -> bytes:
    try:
        fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
    except OSError as e:
        raise OstreeError(f"openat({rel}): {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _write_atomic(dfd: int, rel: str, data: bytes) -> None:
    d, _, base = rel.rpartition("/")
    tmp = f"{d}/.tmp-{base}-{os.getpid()}" if d else f".tmp-{base}-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    os.rename(tmp, rel, src_dir_fd=dfd, dst_dir_fd=dfd)


# ---------------------------------------------------------------------------
# varints and raw GVariant assembly


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for count in range(10):
        if pos >= len(data):
            raise OstreeError("Unexpected EOF reading varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << (7 * count)
        if not b & 0x80:
            return result, pos
    raise OstreeError("Unexpected EOF reading varint")


def _raw_tuple(children: list[tuple[str, bytes]]) -> bytes:
    """Serialize a tuple from already-serialized children (type string, bytes)."""
    buf = bytearray()
    ends: list[int] = []
    last = len(children) - 1
    for i, (ts, data) in enumerate(children):
        t = gvariant.parse_type(ts)
        pad = (-len(buf)) % t.align
        buf += b"\0" * pad
        buf += data
        if t.fixed is None and i != last:
            ends.append(len(buf))
    width = _offset_width(len(buf), len(ends))
    return bytes(buf) + b"".join(o.to_bytes(width, "little") for o in reversed(ends)) if width else bytes(buf)


def _raw_array(elements: list[bytes], align: int) -> bytes:
    """``aT`` for a variable-size T from serialized elements."""
    buf = bytearray()
    ends: list[int] = []
    for data in elements:
        buf += b"\0" * ((-len(buf)) % align)
        buf += data
        ends.append(len(buf))
    width = _offset_width(len(buf), len(ends))
    return bytes(buf) + b"".join(o.to_bytes(width, "little") for o in ends) if width else bytes(buf)


def _offset_width(body: int, n: int) -> int:
    if n == 0:
        return 0
    for w in (1, 2, 4):
        if body + w * n < (1 << (8 * w)):
            return w
    return 8


def _raw_sv_entry(key: str, vtype: str, vdata: bytes) -> bytes:
    return _raw_tuple([("s", gvariant.serialize("s", key)), ("v", vdata + b"\0" + vtype.encode("ascii"))])


# ---------------------------------------------------------------------------
# superblock


class PartHeader(Record):
    def __init__(self, version: int, checksum: str, size: int, usize: int, objects: list[ObjectName]) -> None:
        self.version = version
        self.checksum = checksum
        self.size = size
        self.usize = usize
        self.objects = objects



class Fallback(Record):
    def __init__(self, objtype: ObjectType, checksum: str, size: int, usize: int) -> None:
        self.objtype = objtype
        self.checksum = checksum
        self.size = size
        self.usize = usize



class Superblock(Record):
    def __init__(self, metadata: list[tuple[str, Variant]], timestamp: int, from_: str | None, to: str,
                 commit: bytes, parts: list[PartHeader], fallbacks: list[Fallback], n_parents: int = 0,
                 signed: bool = False, endianness: str = "little", swap: bool = False,
                 signatures: list[str] | None = None) -> None:
        self.metadata = metadata
        self.timestamp = timestamp
        self.from_ = from_
        self.to = to
        self.commit = commit
        self.parts = parts
        self.fallbacks = fallbacks
        self.n_parents = n_parents
        self.signed = signed
        self.endianness = endianness
        self.swap = swap
        self.signatures: list[str] = signatures if signatures is not None else []

    def meta(self, key: str) -> Variant | None:
        for k, v in self.metadata:
            if k == key:
                return v
        return None


def _parse_objects(data: bytes, what: str) -> list[ObjectName]:
    if len(data) % OBJTYPE_CSUM_LEN:
        raise OstreeError(f"{what}: Invalid checksum array length {len(data)}")
    out: list[ObjectName] = []
    for i in range(0, len(data), OBJTYPE_CSUM_LEN):
        t = _NUM_OBJTYPE.get(data[i])
        if t is None:
            raise OstreeError(f"{what}: Invalid object type '{data[i]}'")
        out.append((data[i + 1:i + OBJTYPE_CSUM_LEN].hex(), t))
    return out


def _encode_objects(objs: Iterable[ObjectName]) -> bytes:
    return b"".join(bytes([_OBJTYPE_NUM[t]]) + obj.checksum_to_bytes(c) for c, t in objs)


def _swap64(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little"), "big")


def _swap32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "little"), "big")


def parse_superblock(data: bytes, what: str = "static delta superblock") -> Superblock:
    """Decode a (possibly signed) superblock; integers are returned in host meaning."""
    signed = False
    signatures: list[str] = []
    try:
        if data[:8] == SIGNED_MAGIC:
            _magic, inner, sigs = gvariant.deserialize(SIGNED_TYPE, data)
            signed = True
            signatures = [k[len("ostree.sign."):] for k, _ in sigs if k.startswith("ostree.sign.")]
            data = inner
        md, ts, from_b, to_b, commit_v, deps, entries, fallbacks = gvariant.deserialize(SUPERBLOCK_TYPE, data)
    except ValueError as e:
        raise OstreeError(f"Invalid {what}: {e}") from None
    if from_b and len(from_b) != 32:
        raise OstreeError(f"Invalid {what}: Invalid checksum of length {len(from_b)} expected 32")
    if len(to_b) != 32:
        raise OstreeError(f"Invalid {what}: Invalid checksum of length {len(to_b)} expected 32")
    # the commit object as stored: re-extract its exact bytes
    commit_bytes = gvariant.serialize(obj.COMMIT_TYPE, commit_v)
    sb = Superblock(list(md), struct.unpack(">Q", struct.pack("<Q", ts))[0],
                    from_b.hex() if from_b else None, to_b.hex(), commit_bytes, [], [],
                    n_parents=len(deps) // 64, signed=signed, signatures=signatures)
    endian, heuristic = _endianness(sb.metadata, entries)
    sb.endianness = endian + (" (heuristic)" if heuristic and endian != "invalid" else "")
    sb.swap = (endian == "big") == (sys.byteorder == "little") if endian != "invalid" else False
    for i, (version, csum, size, usize, objs) in enumerate(entries):
        if sb.swap:
            version, size, usize = _swap32(version), _swap64(size), _swap64(usize)
        if len(csum) != 32:
            raise OstreeError(f"Invalid {what}: part {i}: Invalid checksum of length {len(csum)} expected 32")
        sb.parts.append(PartHeader(version, csum.hex(), size, usize, _parse_objects(objs, f"{what}: part {i}")))
    for t, csum, size, usize in fallbacks:
        if sb.swap:
            size, usize = _swap64(size), _swap64(usize)
        ot = _NUM_OBJTYPE.get(t)
        if ot is None or len(csum) != 32:
            raise OstreeError(f"Invalid {what}: bad fallback entry")
        sb.fallbacks.append(Fallback(ot, csum.hex(), size, usize))
    return sb


def _endianness(md: list[tuple[str, Variant]], entries: list[Any]) -> tuple[str, bool]:
    for k, v in md:
        if k == "ostree.endianness" and v.type == "y":
            return {ord("l"): "little", ord("B"): "big"}.get(v.value, "invalid"), False
    total_size = total_objects = 0
    swapped = False
    for _v, _c, size, usize, objs in entries:
        total_objects += len(objs) // OBJTYPE_CSUM_LEN
        total_size += size
        if size > usize and usize and size / usize > 1.2:
            swapped = True
            break
    if not swapped and total_objects > 0 and total_size // total_objects > 0xFFFFFFFF:
        swapped = True
    if swapped:
        return ("big" if sys.byteorder == "little" else "little"), True
    return "invalid", True


# ---------------------------------------------------------------------------
# parts


class PartPayload(Record):
    def __init__(self, modes: list[tuple[int, int, int]], xattrs: list[list[tuple[bytes, bytes]]],
                 blob: bytes, ops: bytes) -> None:
        self.modes = modes
        """(uid, gid, mode), already converted from big-endian."""
        self.xattrs = xattrs
        self.blob = blob
        self.ops = ops



def encode_part(payload: PartPayload, compress: bool = True) -> bytes:
    """The bytes of a part file (``(yay)``: compression byte + payload)."""
    modes_be = [(_swap32(u), _swap32(g), _swap32(m)) for u, g, m in payload.modes]
    raw = gvariant.serialize(PART_PAYLOAD_TYPE, (modes_be, payload.xattrs, payload.blob, payload.ops))
    if compress:
        return b"x" + lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=8)
    return b"\0" + raw


def decode_part(data: bytes, expected_checksum: str | None, what: str) -> PartPayload:
    """Check and decode a part file (or inline part); errors name *what*."""
    if expected_checksum is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_checksum:
            raise OstreeError(f"{what}: Checksum mismatch in static delta part; "
                              f"expected={expected_checksum} actual={actual}")
    if not data:
        raise OstreeError(f"{what}: Reading initial compression flag byte: unexpected end of file")
    comp = data[0]
    if comp == 0:
        raw = data[1:]
    elif comp == ord("x"):
        try:
            raw = lzma.decompress(data[1:], format=lzma.FORMAT_XZ)
        except lzma.LZMAError as e:
            raise OstreeError(f"{what}: lzma decompression failed: {e}") from None
    else:
        raise OstreeError(f"{what}: Invalid compression type '{comp}'")
    try:
        modes, xattrs, blob, ops = gvariant.deserialize(PART_PAYLOAD_TYPE, raw)
    except ValueError as e:
        raise OstreeError(f"{what}: Invalid delta part payload: {e}") from None
    return PartPayload([(_swap32(u), _swap32(g), _swap32(m)) for u, g, m in modes], xattrs, blob, ops)


class _PartBuilder:
    def __init__(self) -> None:
        self.objects: list[ObjectName] = []
        self.blob = bytearray()
        self.ops = bytearray()
        self.modes: list[tuple[int, int, int]] = []
        self.mode_index: dict[tuple[int, int, int], int] = {}
        self.xattrs: list[list[tuple[bytes, bytes]]] = []
        self.xattr_index: dict[bytes, int] = {}
        self.usize = 0

    def add_metadata(self, checksum: str, objtype: ObjectType, data: bytes) -> None:
        self.objects.append((checksum, objtype))
        off = len(self.blob)
        self.blob += data
        self.ops.append(OP_OPEN_SPLICE_AND_CLOSE)
        self.ops += varuint64(len(data)) + varuint64(off)
        self.usize += len(data)

    def add_content(self, checksum: str, info: FileInfo, data: bytes) -> None:
        self.objects.append((checksum, ObjectType.FILE))
        mi, xi = self._mode_xattr(info)
        off = len(self.blob)
        self.blob += data
        self.ops.append(OP_OPEN_SPLICE_AND_CLOSE)
        self.ops += varuint64(mi) + varuint64(xi) + varuint64(len(data)) + varuint64(off)
        self.usize += len(data)

    def _mode_xattr(self, info: FileInfo) -> tuple[int, int]:
        key = (info.uid, info.gid, info.mode)
        mi = self.mode_index.setdefault(key, len(self.modes))
        if mi == len(self.modes):
            self.modes.append(key)
        xkey = gvariant.serialize("a(ayay)", info.xattrs)
        xi = self.xattr_index.setdefault(xkey, len(self.xattrs))
        if xi == len(self.xattrs):
            self.xattrs.append(list(info.xattrs))
        return mi, xi

    def add_bsdiff(self, checksum: str, info: FileInfo, source: str, patch: bytes) -> None:
        """As ostree: set-read-source, open, bspatch, close, unset-read-source."""
        self.objects.append((checksum, ObjectType.FILE))
        mi, xi = self._mode_xattr(info)
        self.ops.append(OP_SET_READ_SOURCE)
        self.ops += varuint64(len(self.blob))
        self.blob += obj.checksum_to_bytes(source)
        self.ops.append(OP_OPEN)
        self.ops += varuint64(mi) + varuint64(xi) + varuint64(info.size)
        self.ops.append(OP_BSPATCH)
        self.ops += varuint64(len(self.blob)) + varuint64(len(patch))
        self.blob += patch
        self.ops.append(OP_CLOSE)
        self.ops.append(OP_UNSET_READ_SOURCE)
        self.usize += info.size

    def finish(self, swap: bool) -> tuple[bytes, bytes]:
        """(part file bytes, serialized header)."""
        part = encode_part(PartPayload(self.modes, self.xattrs, bytes(self.blob), bytes(self.ops)))
        size, usize, version = len(part), self.usize, DELTAPART_VERSION
        if swap:
            size, usize, version = _swap64(size), _swap64(usize), _swap32(version)
        header = gvariant.serialize(META_ENTRY_TYPE, (version, hashlib.sha256(part).digest(), size, usize,
                                                      _encode_objects(self.objects)))
        return part, header


# ---------------------------------------------------------------------------
# generation


class GenerateOptions(Record):
    def __init__(self, max_chunk_size: int = 32, min_fallback_size: int = 4, inline: bool = False,
                 filename: str | None = None, endianness: str | None = None, bsdiff: bool = True,
                 max_bsdiff_size: int = 128, metadata: list[tuple[str, Variant]] | None = None) -> None:
        self.max_chunk_size = max_chunk_size
        """Megabytes (10^6 bytes) per part."""
        self.min_fallback_size = min_fallback_size
        """Objects over this many megabytes are fetched individually; 0 disables."""
        self.inline = inline
        self.filename = filename
        self.endianness = endianness
        """'l' or 'B'; None for host order."""
        self.bsdiff = bsdiff
        """Encode modified files (same basename, similar size) as bsdiff patches."""
        self.max_bsdiff_size = max_bsdiff_size
        """Megabytes: pairs whose summed size exceed this are sent whole."""
        self.metadata: list[tuple[str, Variant]] = metadata if metadata is not None else []



class GenerateStats(Record):
    def __init__(self, n_parts: int = 0, n_fallback: int = 0, n_bsdiff: int = 0, uncompressed: int = 0,
                 compressed: int = 0, loose: int = 0) -> None:
        self.n_parts = n_parts
        self.n_fallback = n_fallback
        self.n_bsdiff = n_bsdiff
        self.uncompressed = uncompressed
        self.compressed = compressed
        self.loose = loose



def _reachable(repo: Repo, commit: str) -> set[ObjectName]:
    from .fsck import traverse_commit

    out: set[ObjectName] = set()
    traverse_commit(repo, commit, 0, out)
    return out


def generate(repo: Repo, from_: str | None, to: str, opts: GenerateOptions | None = None) -> GenerateStats:
    """Write the delta FROM -> TO into ``deltas/`` (or ``opts.filename``)."""
    opts = opts or GenerateOptions()
    stats = GenerateStats()
    obj.validate_checksum(to)
    if from_ is not None:
        obj.validate_checksum(from_)
        repo.load_commit(from_)
    commit_bytes = repo.load_metadata(ObjectType.COMMIT, to)
    commit_v = gvariant.deserialize(obj.COMMIT_TYPE, commit_bytes)
    if gvariant.serialize(obj.COMMIT_TYPE, commit_v) != commit_bytes:
        raise OstreeError(f"Commit {to} is not in GVariant normal form; cannot embed it in a delta")
    swap = opts.endianness is not None and (opts.endianness == "B") == (sys.byteorder == "little")
    endian_char = opts.endianness or ("l" if sys.byteorder == "little" else "B")

    new = _reachable(repo, to)
    if from_ is not None:
        new -= _reachable(repo, from_)
    new.discard((to, ObjectType.COMMIT))
    meta = sorted(k for k in new if k[1].is_meta)
    content = sorted(k[0] for k in new if k[1] is ObjectType.FILE)

    max_chunk = opts.max_chunk_size * 1000 * 1000
    min_fallback = opts.min_fallback_size * 1000 * 1000
    parts: list[_PartBuilder] = [_PartBuilder()]

    def room(n: int) -> _PartBuilder:
        cur = parts[-1]
        if cur.objects and len(cur.blob) + n > max_chunk:
            cur = _PartBuilder()
            parts.append(cur)
        return cur

    for csum, t in meta:
        data = repo.load_metadata(t, csum)
        room(len(data)).add_metadata(csum, t, data)
    modified: dict[str, str] = {}
    if from_ is not None and opts.bsdiff:
        modified = _similar_objects(repo, from_, to, set(content))
    for csum, src in sorted(modified.items()):
        to_info = repo.load_file(csum).info
        src_co = repo.load_file(src)
        if not src_co.info.mode & 0o004:
            continue  # the client may not be able to read it (as ostree)
        if to_info.size + src_co.info.size > opts.max_bsdiff_size * 1000 * 1000:
            continue
        new_data = repo.load_file(csum).read()
        patch = make_bsdiff(src_co.read(), new_data)
        room(len(patch)).add_bsdiff(csum, to_info, src, patch)
        stats.n_bsdiff += 1
        content.remove(csum)
    fallbacks: list[Fallback] = []
    regular: list[tuple[str, FileInfo]] = []
    symlinks: list[tuple[str, FileInfo]] = []
    for csum in content:
        co = repo.load_file(csum)
        if co.info.is_symlink:
            symlinks.append((csum, co.info))
            continue
        if min_fallback > 0 and co.info.size > min_fallback:
            st = os.stat(co.relpath, dir_fd=co.repo.dfd, follow_symlinks=False)
            fallbacks.append(Fallback(ObjectType.FILE, csum, st.st_size, co.info.size))
            continue
        regular.append((csum, co.info))
    for csum, info in regular:
        data = repo.load_file(csum).read()
        if len(data) != info.size:
            raise OstreeError(f"Corrupted content object {csum}: size {len(data)}, expected {info.size}")
        room(len(data)).add_content(csum, info, data)
    for csum, info in symlinks:
        data = info.symlink_target.encode("utf-8")
        room(len(data)).add_content(csum, info, data)

    # where to write
    if opts.filename:
        dest_dir = os.path.dirname(opts.filename) or "."
        sb_name = os.path.basename(opts.filename)
        try:
            dfd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise OstreeError(f"opendir({dest_dir}): {e.strerror}") from None
    else:
        rel = delta_relpath(from_, to)
        os.makedirs(f"/proc/self/fd/{repo.dfd}/{rel}", mode=0o755, exist_ok=True)
        dfd = os.open(rel, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=repo.dfd)
        sb_name = "superblock"
    try:
        md_entries: list[bytes] = [gvariant.serialize("{sv}", kv) for kv in opts.metadata]
        md_entries.append(gvariant.serialize("{sv}", ("ostree.endianness", Variant("y", ord(endian_char)))))
        headers: list[bytes] = []
        for i, pb in enumerate(parts):
            if not pb.objects and i > 0:
                continue
            part, header = pb.finish(swap)
            headers.append(header)
            stats.compressed += len(part)
            stats.uncompressed += pb.usize
            if opts.inline:
                md_entries.append(_raw_sv_entry(delta_relpath(from_, to, str(i)), "(yay)", part))
            else:
                _write_atomic(dfd, str(i), part)
        stats.n_parts = len(headers)
        fb_ser: list[bytes] = []
        for fb in fallbacks:
            size, usize = (_swap64(fb.size), _swap64(fb.usize)) if swap else (fb.size, fb.usize)
            fb_ser.append(gvariant.serialize(FALLBACK_TYPE, (_OBJTYPE_NUM[fb.objtype],
                                                             obj.checksum_to_bytes(fb.checksum), size, usize)))
        stats.n_fallback = len(fb_ser)
        try:
            detached = repo.load_metadata(ObjectType.COMMIT_META, to)
        except OstreeError:
            detached = None
        if detached is not None:
            md_entries.append(_raw_sv_entry(delta_relpath(from_, to, "commitmeta"), "a{sv}", detached))
        sb = _raw_tuple([
            ("a{sv}", _raw_array(md_entries, 8)),
            ("t", struct.pack(">Q", int(time.time()))),
            ("ay", obj.checksum_to_bytes(from_) if from_ else b""),
            ("ay", obj.checksum_to_bytes(to)),
            (obj.COMMIT_TYPE, commit_bytes),
            ("ay", b""),
            ("a" + META_ENTRY_TYPE, _raw_array(headers, 8)),
            ("a" + FALLBACK_TYPE, _raw_array(fb_ser, 8)),
        ])
        _write_atomic(dfd, sb_name, sb)
    finally:
        os.close(dfd)
    return stats


def _sizenames(repo: Repo, commit: str, only: set[str] | None) -> dict[str, tuple[int, list[str]]]:
    """Regular files reachable from *commit*: checksum -> (size, basenames)."""
    out: dict[str, tuple[int, list[str]]] = {}
    sizes: dict[str, int | None] = {}

    def walk(tree_csum: str) -> None:
        tree = repo.load_dirtree(tree_csum)
        for name, csum in tree.files:
            if only is not None and csum not in only:
                continue
            if csum not in sizes:
                info = repo.load_file(csum).info
                sizes[csum] = info.size if info.is_regular else None
            size = sizes[csum]
            if size is None:
                continue
            out.setdefault(csum, (size, []))[1].append(name)
        for _name, sub, _meta in tree.dirs:
            walk(sub)
    walk(repo.load_commit(commit).root_contents)
    return out


def _is_candidate(size: int, names: list[str]) -> bool:
    if size == 0:
        return False
    return not any(n.rpartition(".")[2] in ("xz", "bz2") for n in names if "." in n)


def _names_intersect(a: list[str], b: list[str], fuzzy: bool) -> bool:
    for x in a:
        for y in b:
            if fuzzy and "." in x and "." in y and x.index(".") == y.index(".") and x.index(".") > 0:
                if x[:x.index(".")] == y[:y.index(".")]:
                    return True
            elif x == y:
                return True
    return False


def _similar_objects(repo: Repo, from_: str, to: str, new_content: set[str]) -> dict[str, str]:
    """New regular files -> an old one with a shared basename and a size within 30% (as ostree)."""
    old = sorted(_sizenames(repo, from_, None).items(), key=lambda kv: kv[1][0])
    new = sorted(_sizenames(repo, to, new_content).items(), key=lambda kv: kv[1][0])
    out: dict[str, str] = {}
    for csum, (size, names) in new:
        if not _is_candidate(size, names):
            continue
        lo, hi = size * 0.7, size * 1.3
        found = False
        for fuzzy in (False, True):
            for ocsum, (osize, onames) in old:
                if not _is_candidate(osize, onames) or osize < lo:
                    continue
                if osize > hi:
                    break
                if _names_intersect(onames, names, fuzzy):
                    out[csum] = ocsum
                    found = True
                    break
            if found:
                break
    return out


def _offtout(v: int) -> bytes:
    return (abs(v) | ((1 << 63) if v < 0 else 0)).to_bytes(8, "little")


def make_bsdiff(old: bytes, new: bytes) -> bytes:
    """A bsdiff stream (the format ostree's bspatch reads) turning *old* into *new*.

    Not bsdiff's suffix-sorting search: the common prefix and suffix are
    encoded as (all-zero) diff runs, the middle as extra bytes.  Any valid
    stream applies; this one is cheap to compute and compresses well.
    """
    n = min(len(old), len(new))
    prefix = _common_len(old, new, n, from_end=False)
    suffix = _common_len(old, new, n - prefix, from_end=True)
    out = bytearray()
    # 1: prefix as diff against old[0:prefix], then the changed middle as extra,
    #    then seek old to where the common suffix starts
    mid = new[prefix:len(new) - suffix]
    seek = (len(old) - suffix) - prefix
    out += _offtout(prefix) + _offtout(len(mid)) + _offtout(seek)
    out += bytes(prefix)
    out += mid
    if suffix:
        out += _offtout(suffix) + _offtout(0) + _offtout(0)
        out += bytes(suffix)
    return bytes(out)


def _common_len(a: bytes, b: bytes, limit: int, from_end: bool) -> int:
    """Length of the common prefix (or suffix) of *a* and *b*, at most *limit* (binary search)."""
    def same(k: int) -> bool:
        if from_end:
            return k == 0 or a[len(a) - k:] == b[len(b) - k:]
        return a[:k] == b[:k]
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if same(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# ---------------------------------------------------------------------------
# reading deltas from a repository


def _open_superblock(repo: Repo, delta_id: str) -> tuple[Superblock, str | None, str]:
    if "/" in delta_id:
        try:
            with open(delta_id, "rb") as f:
                data = f.read()
        except OSError as e:
            raise OstreeError(f"opendir({delta_id}): {e.strerror}") from None
        sb = parse_superblock(data, f"superblock {delta_id}")
        return sb, sb.from_, sb.to
    from_, to = parse_delta_name(delta_id)
    rel = delta_relpath(from_, to, "superblock")
    return parse_superblock(_read_rel(repo, rel), f"superblock of delta {delta_id}"), from_, to


def show(repo: Repo, delta_id: str) -> list[str]:
    """The lines ``ostree static-delta show`` prints."""
    from .pull_local import format_size

    sb, _from, _to = _open_superblock(repo, delta_id)
    lines = [f"Delta: {delta_id}", f"Signed: {'yes' if sb.signed else 'no'}"]
    lines.append(f"From: {sb.from_}" if sb.from_ else "From <scratch>")
    lines.append(f"To: {sb.to}")
    lines.append(f"Endianness: {sb.endianness}")
    lines.append(f"Timestamp: {sb.timestamp}")
    lines.append(f"Number of parents: {sb.n_parents}")
    lines.append(f"Number of fallback entries: {len(sb.fallbacks)}")
    fsize = fusize = 0
    for fb in sb.fallbacks:
        lines.append(f"  {fb.checksum}")
        fsize += fb.size
        fusize += fb.usize
    lines.append(f"Total Fallback Size: {fsize} ({format_size(fsize)})")
    lines.append(f"Total Fallback Uncompressed Size: {fusize} ({format_size(fusize)})")
    lines.append(f"Number of parts: {len(sb.parts)}")
    tsize = tusize = 0
    for i, ph in enumerate(sb.parts):
        tsize += ph.size
        tusize += ph.usize
        lines.append(f"PartMeta{i}: nobjects={len(ph.objects)} size={ph.size} usize={ph.usize}")
        inline = sb.meta(delta_relpath(sb.from_, sb.to, str(i)))
        if inline is not None and inline.type == "(yay)":
            data = bytes([inline.value[0]]) + inline.value[1]
        else:
            data = _read_rel(repo, delta_relpath(sb.from_, sb.to, str(i)))
        payload = decode_part(data, None, f"Delta {delta_id} part {i}")
        lines.append(f"PartPayload{i}: nmodes={len(payload.modes)} nxattrs={len(payload.xattrs)} "
                     f"blobsize={len(payload.blob)} opsize={len(payload.ops)}")
        n = _execute(None, ph.objects, payload, f"Delta {delta_id} part {i}")
        lines.append(f"PartPayloadOps{i}: openspliceclose={n[0]} open={n[1]} write={n[2]} setread={n[3]} "
                     f"unsetread={n[4]} close={n[5]} bspatch={n[6]}")
    lines.append(f"Total Part Size: {tsize} ({format_size(tsize)})")
    lines.append(f"Total Part Uncompressed Size: {tusize} ({format_size(tusize)})")
    lines.append(f"Total Size: {tsize + fsize} ({format_size(tsize + fsize)})")
    lines.append(f"Total Uncompressed Size: {tusize + fusize} ({format_size(tusize + fusize)})")
    return lines


def exists(repo: Repo, delta_id: str) -> bool:
    from_, to = parse_delta_name(delta_id)
    try:
        os.stat(delta_relpath(from_, to, "superblock"), dir_fd=repo.dfd)
        return True
    except FileNotFoundError:
        return False


def delete(repo: Repo, delta_id: str) -> None:
    from_, to = parse_delta_name(delta_id)
    rel = delta_relpath(from_, to)
    try:
        os.stat(rel, dir_fd=repo.dfd)
    except FileNotFoundError:
        raise OstreeError(f"Can't find delta {delta_id}") from None
    parent, _, base = rel.rpartition("/")
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=repo.dfd)
    try:
        rm_rf_at(pfd, base)
    finally:
        os.close(pfd)


# ---------------------------------------------------------------------------
# applying


class _State:
    def __init__(self, repo: Repo | None, objects: list[ObjectName], payload: PartPayload, what: str) -> None:
        self.repo = repo
        self.objects = objects
        self.p = payload
        self.what = what
        self.index = 0
        self.read_source: bytes | None = None
        self.read_source_csum: str | None = None
        self.target: ObjectName | None = None
        self.info: FileInfo | None = None
        self.buf: bytearray | None = None
        self.have = False

    def next_target(self) -> ObjectName:
        if self.target is not None:
            raise OstreeError("object already open")
        if self.index >= len(self.objects):
            raise OstreeError("more operations than objects in the part")
        self.target = self.objects[self.index]
        return self.target

    def check_range(self, off: int, length: int) -> None:
        if off + length > len(self.p.blob):
            raise OstreeError(f"Invalid offset/length {off}/{length}")

    def open_content(self, mi: int, xi: int, size: int) -> FileInfo:
        if mi >= len(self.p.modes) or xi >= len(self.p.xattrs):
            raise OstreeError(f"Invalid mode/xattr index {mi}/{xi}")
        uid, gid, mode = self.p.modes[mi]
        info = FileInfo(mode, uid, gid, size if stat.S_ISREG(mode) else 0, "", list(self.p.xattrs[xi]))
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise OstreeError(f"Invalid mode 0{mode:o} for content object")
        return info

    def write_content(self, info: FileInfo, data: bytes) -> None:
        assert self.target is not None and self.repo is not None
        csum = self.target[0]
        if info.is_symlink:
            try:
                info.symlink_target = data.decode("utf-8")
            except UnicodeDecodeError:
                raise OstreeError(f"Invalid symlink target for {csum}") from None
            data = b""
        else:
            info.size = len(data)
        self.repo.write_content(info, data, expected=csum)

    def close(self) -> None:
        if self.repo is not None and self.target is not None and self.buf is not None and self.info is not None and not self.have:
            if len(self.buf) != self.info.size:
                raise OstreeError(f"opcode close: wrote {len(self.buf)} bytes, expected {self.info.size}")
            self.write_content(self.info, bytes(self.buf))
        self.read_source = None
        self.read_source_csum = None
        self.buf = None
        self.info = None
        self.target = None
        self.have = False
        self.index += 1


def _bspatch(old: bytes, newsize: int, patch: bytes) -> bytes:
    """Apply a bsdiff stream (mendsley format: no header, control triples inline)."""
    def offtin(b: bytes) -> int:
        v = int.from_bytes(b[:7] + bytes([b[7] & 0x7F]), "little")
        return -v if b[7] & 0x80 else v

    if newsize > len(patch):  # every output byte comes from the stream's diff or extra data
        raise OstreeError("bsdiff patch failed")
    new = bytearray(newsize)
    newpos = oldpos = pos = 0
    oldsize = len(old)
    while newpos < newsize:
        if pos + 24 > len(patch):
            raise OstreeError("bsdiff patch failed")
        c0, c1, c2 = offtin(patch[pos:pos + 8]), offtin(patch[pos + 8:pos + 16]), offtin(patch[pos + 16:pos + 24])
        pos += 24
        if c0 < 0 or c1 < 0 or newpos + c0 > newsize or pos + c0 > len(patch):
            raise OstreeError("bsdiff patch failed")
        diff = patch[pos:pos + c0]
        pos += c0
        lo, hi = max(oldpos, 0), min(oldpos + c0, oldsize)
        if lo < hi:
            src = bytes(lo - oldpos) + old[lo:hi] + bytes(max(0, oldpos + c0 - hi))
        else:
            src = bytes(c0)
        new[newpos:newpos + c0] = bytes((a + b) & 0xFF for a, b in zip(diff, src, strict=True))
        newpos += c0
        oldpos += c0
        if newpos + c1 > newsize or pos + c1 > len(patch):
            raise OstreeError("bsdiff patch failed")
        new[newpos:newpos + c1] = patch[pos:pos + c1]
        pos += c1
        newpos += c1
        oldpos += c2
    return bytes(new)


def _execute(repo: Repo | None, objects: list[ObjectName], payload: PartPayload, what: str) -> list[int]:
    """Run a part's operations (*repo* None: only validate and count them)."""
    counts = [0] * 7
    if not objects:
        return counts
    st = _State(repo, objects, payload, what)
    ops = payload.ops
    pos = 0
    blob = payload.blob
    names = {OP_OPEN_SPLICE_AND_CLOSE: "open-splice-and-close", OP_OPEN: "open", OP_WRITE: "write",
             OP_SET_READ_SOURCE: "set-read-source", OP_UNSET_READ_SOURCE: "unset-read-source",
             OP_CLOSE: "close", OP_BSPATCH: "bspatch"}
    n_executed = 0
    while pos < len(ops):
        op = ops[pos]
        pos += 1
        if op not in _OP_INDEX:
            raise OstreeError(f"{what}: Unknown opcode {op} at offset {n_executed}")
        try:
            pos = _dispatch(st, op, ops, pos, blob)
        except OstreeError as e:
            raise OstreeError(f"{what}: opcode {names[op]}: {e}") from None
        counts[_OP_INDEX[op]] += 1
        n_executed += 1
    return counts


def _dispatch(st: _State, op: int, ops: bytes, pos: int, blob: bytes) -> int:
    repo = st.repo

    def v() -> int:
        nonlocal pos
        val, pos = read_varuint(ops, pos)
        return val

    if op == OP_OPEN_SPLICE_AND_CLOSE:
        csum, t = st.next_target()
        if t.is_meta:
            length, off = v(), v()
            st.check_range(off, length)
            if repo is not None:
                data = blob[off:off + length]
                repo.write_metadata(t, data, expected=csum)
        else:
            mi, xi = v(), v()
            size, off = v(), v()
            info = st.open_content(mi, xi, size)
            st.check_range(off, size)
            if repo is not None and not repo.has_object(ObjectType.FILE, csum):
                st.write_content(info, blob[off:off + size])
        st.close()
    elif op == OP_OPEN:
        csum, t = st.next_target()
        if t.is_meta:
            raise OstreeError(f"cannot open metadata object {csum}.{t.value} for writing")
        mi, xi, size = v(), v(), v()
        st.info = st.open_content(mi, xi, size)
        st.buf = bytearray()
        if repo is not None:
            st.have = repo.has_object(ObjectType.FILE, csum)
    elif op == OP_WRITE:
        size, off = v(), v()
        if st.buf is None:
            raise OstreeError("no object open")
        if st.read_source is not None:
            if off + size > len(st.read_source):
                raise OstreeError(f"Unexpected EOF reading object {st.read_source_csum}")
            st.buf += st.read_source[off:off + size]
        elif repo is not None or st.read_source_csum is None:
            st.check_range(off, size)
            st.buf += blob[off:off + size]
    elif op == OP_SET_READ_SOURCE:
        off = v()
        st.check_range(off, 32)
        src = blob[off:off + 32].hex()
        st.read_source_csum = src
        st.read_source = repo.load_file(src).read() if repo is not None else None
    elif op == OP_UNSET_READ_SOURCE:
        st.read_source = None
        st.read_source_csum = None
    elif op == OP_CLOSE:
        if repo is None:
            st.buf = None
        st.close()
    elif op == OP_BSPATCH:
        off, length = v(), v()
        st.check_range(off, length)
        if repo is not None and not st.have:
            if st.info is None or st.buf is None:
                raise OstreeError("no object open")
            if st.read_source is None:
                raise OstreeError("no read source")
            st.buf = bytearray(_bspatch(st.read_source, st.info.size, blob[off:off + length]))
    return pos


def apply_offline(repo: Repo, path: str, *, on_progress: Callable[[str], None] | None = None,
                  label: str | None = None) -> str:
    """Apply the delta in directory *path* (or whose superblock is *path*); returns the target commit.

    Everything goes through one transaction: on any error nothing is written.
    """
    if os.path.isdir(path):
        dirpath, sbname = path, "superblock"
    else:
        dirpath, sbname = os.path.dirname(path) or ".", os.path.basename(path)
        if not os.path.isdir(dirpath):
            raise OstreeError(f"opendir({dirpath}): No such file or directory")
    try:
        with open(os.path.join(dirpath, sbname), "rb") as f:
            sbdata = f.read()
    except OSError as e:
        raise OstreeError(f"openat({sbname}): {e.strerror}") from None
    what = label or f"static delta {path}"
    sb = parse_superblock(sbdata, f"superblock of {what}")
    if sb.signed and repo.config.get_bool("core", "sign-verify-deltas", False):
        raise OstreeError("Key is mandatory to check delta signature")
    if sb.from_ is not None and not repo.has_object(ObjectType.COMMIT, sb.from_):
        raise OstreeError(f"Commit {sb.from_}, which is the delta source, is not in repository")
    if sb.fallbacks:
        raise OstreeError("Cannot execute delta offline: contains nonempty http fallback entries")
    own_txn = not repo.in_transaction
    if own_txn:
        repo.prepare_transaction()
    try:
        detached: bytes | None = None
        if not repo.has_object(ObjectType.COMMIT, sb.to):
            dv = sb.meta(delta_relpath(sb.from_, sb.to, "commitmeta"))
            if dv is not None and dv.type == "a{sv}":
                detached = gvariant.serialize("a{sv}", dv.value)
            repo.write_metadata(ObjectType.COMMIT, sb.commit, expected=sb.to)
        for i, ph in enumerate(sb.parts):
            pwhat = f"{what}: part {i}"
            if ph.version > DELTAPART_VERSION:
                raise OstreeError(f"{pwhat}: Delta part has too new version {ph.version}")
            if all(repo.has_object(t, c) for c, t in ph.objects):
                continue
            inline = sb.meta(delta_relpath(sb.from_, sb.to, str(i)))
            if inline is not None and inline.type == "(yay)":
                comp, pdata = inline.value
                payload = decode_part(bytes([comp]) + pdata, None, pwhat)
            else:
                try:
                    with open(os.path.join(dirpath, str(i)), "rb") as f:
                        pbytes = f.read()
                except OSError as e:
                    raise OstreeError(f"{what}: Opening deltapart '{i}': {e.strerror}") from None
                payload = decode_part(pbytes, ph.checksum, pwhat)
            _execute(repo, ph.objects, payload, f"{what}: Executing delta part {i}")
            if on_progress:
                on_progress(f"part {i}")
        if own_txn:
            repo.commit_transaction()
    except BaseException:
        if own_txn:
            repo.abort_transaction()
        raise
    if detached is not None:
        repo.write_detached_metadata(sb.to, list(gvariant.deserialize("a{sv}", detached)))
    return sb.to


__all__ = [
    "Fallback", "GenerateOptions", "GenerateStats", "PartHeader", "PartPayload", "Superblock",
    "apply_offline", "b64_to_checksum", "checksum_to_b64", "decode_part", "delete", "delta_name",
    "delta_relpath", "encode_part", "exists", "generate", "list_delta_indexes", "list_deltas",
    "parse_delta_name", "parse_superblock", "reindex", "show",
]


# ---------------------------------------------------------------------------
# pulling through deltas from a local repository


def _src_delta_names(src: Repo, to: str) -> dict[str, bytes | None]:
    """Deltas to *to* the source advertises: name -> superblock sha256 (None: not advertised)."""
    try:
        summary = _read_rel(src, "summary")
    except OstreeError:
        summary = None
    if summary is None and not src.config.get_bool("core", "indexed-deltas", False):
        return {n: None for n in list_deltas(src) if parse_delta_name(n)[1] == to}
    md: list[tuple[str, Variant]] = []
    if summary is not None:
        try:
            _refs, md = gvariant.deserialize("(a(s(taya{sv}))a{sv})", summary)
        except ValueError as e:
            raise OstreeError(f"Invalid summary of {src.path}: {e}") from None
    indexed = src.config.get_bool("core", "indexed-deltas", False) or \
        any(k == "ostree.summary.indexed-deltas" and v.value is True for k, v in md)
    entries: list[tuple[str, Variant]] = []
    if indexed:
        try:
            idx = gvariant.deserialize("a{sv}", _read_rel(src, index_relpath(to)))
        except OstreeError:
            idx = []
        except ValueError as e:
            raise OstreeError(f"Invalid delta index for {to}: {e}") from None
        for k, v in idx:
            if k == "ostree.static-deltas" and v.type == "a{sv}":
                entries = list(v.value)
    else:
        for k, v in md:
            if k == "ostree.static-deltas" and v.type == "a{sv}":
                entries = list(v.value)
    out: dict[str, bytes | None] = {}
    for name, digest in entries:
        if parse_delta_name(name)[1] == to:
            out[name] = bytes(digest.value) if digest.type == "ay" else None
    return out


def pull_from_repo(dest: Repo, src: Repo, to: str, ref: str | None = None, *, require: bool = True) -> bool:
    """Fetch commit *to* from the local repository *src* through a static delta.

    Picks a delta from a commit *dest* has (the newest one), else a from-scratch
    delta, as ostree's pull does.  Returns False when none applies (an error
    with *require*).
    """
    if dest.has_object(ObjectType.COMMIT, to) and not dest.is_commit_partial(to):
        return True
    names = _src_delta_names(src, to)
    best: tuple[int, str] | None = None
    scratch = False
    for name in names:
        f, _t = parse_delta_name(name)
        if f is None:
            scratch = True
            continue
        if dest.has_object(ObjectType.COMMIT, f) and not dest.is_commit_partial(f):
            ts = dest.load_commit(f).timestamp
            if best is None or ts > best[0]:
                best = (ts, f)
    if best is not None:
        from_: str | None = best[1]
    elif scratch:
        from_ = None
    else:
        if require:
            raise OstreeError(f"Static deltas required, but none found for {ref or ''} to {to}")
        return False
    name = delta_name(from_, to)
    rel = delta_relpath(from_, to)
    digest = names.get(name)
    if digest is not None:
        actual = hashlib.sha256(_read_rel(src, rel + "/superblock")).digest()
        if actual != digest:
            raise OstreeError(f"Invalid checksum for static delta {name}")
    apply_offline(dest, f"/proc/self/fd/{src.dfd}/{rel}", label=f"static delta {name} of {src.path}")
    return True
