"""Static deltas: names and paths, the superblock and part formats, and reading them back.

The byte format is described in the package docstring (``pyostree.remote.deltas``).
"""

from __future__ import annotations

import base64
import hashlib
import lzma
import os
import struct
import sys
from collections.abc import Iterable

from pyostree.errors import OstreeError
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.files import rm_rf_at
from pyostree.store.gvariant import Variant
from pyostree.store.objects import FileInfo, ObjectType, Record, varuint64
from pyostree.store.repo import Repo

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
