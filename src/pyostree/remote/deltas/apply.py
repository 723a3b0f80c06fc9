"""Static deltas: applying a delta to a repository (``static-delta apply-offline``, pull through deltas)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable

from pyostree.errors import OstreeError
from pyostree.remote.deltas.format import (
    _OP_INDEX,
    DELTAPART_VERSION,
    OP_BSPATCH,
    OP_CLOSE,
    OP_OPEN,
    OP_OPEN_SPLICE_AND_CLOSE,
    OP_SET_READ_SOURCE,
    OP_UNSET_READ_SOURCE,
    OP_WRITE,
    ObjectName,
    PartHeader,
    PartPayload,
    Superblock,
    _open_superblock,
    _read_rel,
    decode_part,
    delta_name,
    delta_relpath,
    index_relpath,
    list_deltas,
    parse_delta_name,
    parse_superblock,
    read_varuint,
)
from pyostree.store import gvariant
from pyostree.store.gvariant import Variant
from pyostree.store.objects import FileInfo, ObjectType
from pyostree.store.repo import Repo
from pyostree.store.verify import verify_metadata_bytes

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
                verify_metadata_bytes(t, csum, data)
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
                  label: str | None = None, signature_checked: bool = False) -> str:
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
    if sb.signed and not signature_checked and repo.config.get_bool("core", "sign-verify-deltas", False):
        raise OstreeError("Key is mandatory to check delta signature")
    if sb.from_ is not None and not repo.has_object(ObjectType.COMMIT, sb.from_):
        raise OstreeError(f"Commit {sb.from_}, which is the delta source, is not in repository")
    if sb.fallbacks:
        raise OstreeError("Cannot execute delta offline: contains nonempty http fallback entries")
    def read_part(i: int, ph: PartHeader) -> bytes:
        try:
            with open(os.path.join(dirpath, str(i)), "rb") as f:
                return f.read()
        except OSError as e:
            raise OstreeError(f"{what}: Opening deltapart '{i}': {e.strerror}") from None

    had_commit = repo.has_object(ObjectType.COMMIT, sb.to)
    own_txn = not repo.in_transaction
    if own_txn:
        repo.prepare_transaction()
    try:
        detached = apply_superblock(repo, sb, what, read_part, on_progress=on_progress)
        if own_txn:
            repo.commit_transaction()
    except BaseException:
        if own_txn:
            repo.abort_transaction()
        raise
    if detached is not None and not had_commit:
        repo.write_detached_metadata(sb.to, list(gvariant.deserialize("a{sv}", detached)))
    return sb.to


def apply_superblock(repo: Repo, sb: Superblock, what: str, read_part: Callable[[int, PartHeader], bytes], *,
                     on_progress: Callable[[str], None] | None = None,
                     before_commit: Callable[[bytes, bytes | None], None] | None = None) -> bytes | None:
    """Write the target commit of *sb* and execute its parts (in *repo*'s open transaction).

    Parts whose objects are all present are skipped; the others come inline
    from the superblock or from *read_part(i, header)* (checked against the
    part's sha256).  Every object is verified before it is written.
    *before_commit(commit, detached)* runs before the commit object is
    written (signature checks); fallback objects are left to the caller.
    Returns the target's detached metadata (serialized), if the delta has it.
    """
    detached: bytes | None = None
    dv = sb.meta(delta_relpath(sb.from_, sb.to, "commitmeta"))
    if dv is not None and dv.type == "a{sv}":
        detached = gvariant.serialize("a{sv}", dv.value)
    if not repo.has_object(ObjectType.COMMIT, sb.to):
        verify_metadata_bytes(ObjectType.COMMIT, sb.to, sb.commit)
        if before_commit is not None:
            before_commit(sb.commit, detached)
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
            payload = decode_part(read_part(i, ph), ph.checksum, pwhat)
        _execute(repo, ph.objects, payload, f"{what}: Executing delta part {i}")
        if on_progress:
            on_progress(f"part {i}")
    return detached


def show(repo: Repo, delta_id: str) -> list[str]:
    """The lines ``ostree static-delta show`` prints."""
    from pyostree.store.dump import format_size

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
