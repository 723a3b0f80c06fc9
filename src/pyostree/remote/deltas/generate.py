"""Static deltas: generating a delta between two commits (``ostree static-delta generate``)."""

from __future__ import annotations

import os
import struct
import sys
import time

from pyostree.errors import OstreeError
from pyostree.remote.deltas.format import (
    _OBJTYPE_NUM,
    FALLBACK_TYPE,
    META_ENTRY_TYPE,
    OP_CLOSE,
    OP_OPEN,
    OP_SET_READ_SOURCE,
    OP_UNSET_READ_SOURCE,
    OP_WRITE,
    Fallback,
    ObjectName,
    _PartBuilder,
    _raw_array,
    _raw_sv_entry,
    _raw_tuple,
    _swap64,
    _write_atomic,
    delta_relpath,
)
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.gvariant import Variant
from pyostree.store.objects import FileInfo, ObjectType, Record, varuint64
from pyostree.store.repo import Repo

# ---------------------------------------------------------------------------
# generation


class GenerateOptions(Record):
    def __init__(self, max_chunk_size: int = 32, min_fallback_size: int = 4, inline: bool = False,
                 filename: str | None = None, endianness: str | None = None, bsdiff: bool = True,
                 max_bsdiff_size: int = 128, metadata: list[tuple[str, Variant]] | None = None,
                 sign_type: str = "ed25519", sign_keys: list[str] | None = None) -> None:
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
        self.sign_type = sign_type
        self.sign_keys: list[str] = sign_keys if sign_keys is not None else []
        """Secret keys: the superblock is signed with each (``--sign``, ``--keys-file``)."""



class GenerateStats(Record):
    def __init__(self, n_parts: int = 0, n_fallback: int = 0, n_bsdiff: int = 0, uncompressed: int = 0,
                 compressed: int = 0, loose: int = 0, n_rollsum: int = 0, rollsum_size: int = 0) -> None:
        self.n_parts = n_parts
        self.n_fallback = n_fallback
        self.n_bsdiff = n_bsdiff
        self.n_rollsum = n_rollsum
        self.rollsum_size = rollsum_size
        """Bytes of the rollsum'd objects copied from the old objects."""
        self.uncompressed = uncompressed
        self.compressed = compressed
        self.loose = loose



def _reachable(repo: Repo, commit: str) -> set[ObjectName]:
    from pyostree.store.fsck import traverse_commit

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
    parts: list[_DeltaPartBuilder] = [_DeltaPartBuilder()]

    def room(n: int) -> _DeltaPartBuilder:
        cur = parts[-1]
        if cur.objects and len(cur.blob) + n > max_chunk:
            cur = _DeltaPartBuilder()
            parts.append(cur)
        return cur

    for csum, t in meta:
        data = repo.load_metadata(t, csum)
        room(len(data)).add_metadata(csum, t, data)
    modified: dict[str, str] = {}
    if from_ is not None:
        modified = _similar_objects(repo, from_, to, set(content))
    for csum, src in sorted(modified.items()):
        if _encode_modified(repo, csum, src, opts, stats, parts, max_chunk):
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
        if opts.sign_keys:
            from pyostree.remote.deltas.signing import sign_superblock

            sb = sign_superblock(sb, opts.sign_type, opts.sign_keys)
        _write_atomic(dfd, sb_name, sb)
    finally:
        os.close(dfd)
    return stats


class _DeltaPartBuilder(_PartBuilder):
    def add_rollsum(self, checksum: str, info: FileInfo, source: str, new: bytes,
                    matches: list[tuple[int, int, int]]) -> None:
        """As ostree's process_one_rollsum: open, then writes from the blob or
        (between set/unset-read-source) from the old object, then close."""
        self.objects.append((checksum, ObjectType.FILE))
        mi, xi = self._mode_xattr(info)
        src_off = len(self.blob)
        self.blob += obj.checksum_to_bytes(source)
        ops = self.ops
        ops.append(OP_OPEN)
        ops += varuint64(mi) + varuint64(xi) + varuint64(info.size)
        written = 0
        reading_payload = True

        def literal(upto: int) -> None:
            nonlocal written
            ops.append(OP_WRITE)
            ops.extend(varuint64(upto - written) + varuint64(len(self.blob)))
            self.blob += new[written:upto]
            written = upto

        for length, to_start, from_start in matches:
            if to_start > written:
                if not reading_payload:
                    ops.append(OP_UNSET_READ_SOURCE)
                    reading_payload = True
                literal(to_start)
            if reading_payload:
                ops.append(OP_SET_READ_SOURCE)
                ops += varuint64(src_off)
                reading_payload = False
            ops.append(OP_WRITE)
            ops += varuint64(length) + varuint64(from_start)
            written += length
        if not reading_payload:
            ops.append(OP_UNSET_READ_SOURCE)
        if written < len(new):
            literal(len(new))
        ops.append(OP_CLOSE)
        self.usize += info.size


def _encode_modified(repo: Repo, csum: str, src: str, opts: GenerateOptions, stats: GenerateStats,
                     parts: list[_DeltaPartBuilder], max_chunk: int) -> bool:
    """Send the new object *csum* as a bsdiff patch or rollsum copy from *src*; False to send it whole.

    bsdiff when it is enabled and both sizes add up to at most
    ``--max-bsdiff-size``; otherwise rollsum where ostree would use it (half
    of the new object's chunks found in the old one, as ostree counts them),
    copying every chunk we find.  ostree tries rollsum first, but the CRC it
    computes only lets it match files that share a prefix, and there bsdiff,
    matching at byte granularity, gives the smaller patch.  Using rollsum
    only where ostree does keeps ``--disable-bsdiff`` deltas applicable by
    ostree into archive repositories wherever ostree's own are (ostree can
    run neither ``o`` nor ``B`` there).
    """
    from pyostree.remote.deltas import bsdiff, rollsum

    src_co = repo.load_file(src)
    if not src_co.info.mode & 0o004:
        return False  # the client may not be able to read it (as ostree)
    to_co = repo.load_file(csum)
    to_info = to_co.info
    old = src_co.read()
    new = to_co.read()
    if len(new) != to_info.size:
        raise OstreeError(f"Corrupted content object {csum}: size {len(new)}, expected {to_info.size}")
    cur = parts[-1]
    if cur.objects and len(cur.blob) > max_chunk:
        cur = _DeltaPartBuilder()
        parts.append(cur)
    if opts.bsdiff and to_info.size + src_co.info.size <= opts.max_bsdiff_size * 1000 * 1000:
        cur.add_bsdiff(csum, to_info, src, bsdiff.diff(old, new))
        stats.n_bsdiff += 1
        return True
    m = rollsum.compute_matches(old, new)
    if m.ostree_ratio < 50 or not m.matches:
        return False
    cur.add_rollsum(csum, to_info, src, new, m.matches)
    stats.n_rollsum += 1
    stats.rollsum_size += m.match_size
    return True


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


def make_bsdiff(old: bytes, new: bytes) -> bytes:
    """A bsdiff stream turning *old* into *new* (what ostree's ``B`` operation applies)."""
    from pyostree.remote.deltas import bsdiff

    return bsdiff.diff(old, new)
