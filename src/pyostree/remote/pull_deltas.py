"""The static-delta side of ``ostree pull`` (libostree's ``initiate_request`` and what follows it).

For each commit to pull, when deltas are enabled (not ``--disable-static-deltas``,
not ``--commit-metadata-only``, not into an archive repo, and for file://
remotes only with ``--require-static-deltas``, as libostree):

* the deltas on offer come from the remote's delta index
  (``delta-indexes/TT/TTTT.index``, when the summary says
  ``ostree.summary.indexed-deltas`` or the remote config ``core.indexed-deltas``),
  else from the summary's ``ostree.static-deltas`` (name -> superblock sha256);
  with neither, a superblock is asked for directly (FROM = the local ref, else
  from scratch) and a 404 falls back to objects;
* the best delta is the one from the newest complete local commit, else a
  from-scratch delta (not used when the ref exists locally: an object pull is
  cheaper then); none means objects (or an error with ``--require-static-deltas``);
* the superblock is checked against the digest the summary/index gives, must be
  for the FROM/TO asked for, and its commit passes the same signature checks as
  a fetched commit before it is written; each part is checked against the
  sha256 in the superblock and each object it produces against its checksum
  before it is stored (:func:`deltas.apply.apply_superblock`).

Fallback objects and anything else a delta didn't bring are fetched by the
ordinary object walk that runs afterwards, so a pull that succeeds always
leaves complete commits.  ``--dry-run`` stops after the superblocks and gives
ostree's ``Delta update: ...`` line.
"""

from __future__ import annotations

import hashlib

from pyostree.errors import OstreeError
from pyostree.remote.deltas.apply import apply_superblock
from pyostree.remote.deltas.format import (
    Superblock,
    delta_name,
    delta_relpath,
    index_relpath,
    parse_delta_name,
    parse_superblock,
)
from pyostree.store import gvariant
from pyostree.store import refs as _refs
from pyostree.store.fsck import commit_state, remove_tombstone
from pyostree.store.objects import ObjectType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyostree.remote.deltas.format import PartHeader
    from pyostree.remote.pull import _HttpPuller, _Target

MAX_SUPERBLOCK_SIZE = 64 << 20
MAX_INDEX_SIZE = 50 << 20


def summary_deltas(md: dict[str, gvariant.Variant]) -> dict[str, bytes | None]:
    """Delta name -> superblock sha256 from an ``ostree.static-deltas`` a{sv} (summary or index)."""
    v = md.get("ostree.static-deltas")
    out: dict[str, bytes | None] = {}
    if v is None or v.type != "a{sv}":
        return out
    for name, digest in v.value:
        try:
            parse_delta_name(name)
        except OstreeError as e:
            raise OstreeError(f"Invalid static delta name in summary: {e}") from None
        out[name] = bytes(digest.value) if digest.type == "ay" and len(digest.value) == 32 else None
    return out


class DeltaTotals:
    """What ``--dry-run`` reports (libostree's delta progress counters)."""

    def __init__(self) -> None:
        self.parts = 0
        self.fetched_parts = 0
        self.fallbacks = 0
        self.size = 0
        self.fetched_size = 0
        self.usize = 0

    def line(self) -> str:
        from pyostree.store.dump import format_size

        return (f"Delta update: {self.fetched_parts}/{self.parts + self.fallbacks} parts, "
                f"{format_size(self.fetched_size)}/{format_size(self.size)}, "
                f"{format_size(self.usize)} total uncompressed")


def _complete(p: _HttpPuller, csum: str) -> bool:
    return p.dest.has_object(ObjectType.COMMIT, csum) and not commit_state(p.dest, csum)[0]


def initiate(p: _HttpPuller, t: _Target) -> None:
    """Bring commit *t* through a delta if one applies (else leave it to the object walk)."""
    to = t.commit
    delta_from: str | None = None
    if t.ref is not None:
        delta_from = _refs.read_ref(p.dest, None if p.opts.mirror else p.remote_name, t.ref)
    if p.indexed_deltas:
        data = p.read_rel(index_relpath(to), MAX_INDEX_SIZE, optional=True)
        offered: dict[str, bytes | None] = {}
        if data is not None:
            try:
                idx = dict(gvariant.deserialize("a{sv}", data))
            except gvariant.GVariantError as e:
                raise OstreeError(f"Invalid delta index {p.url_for(index_relpath(to))}: {e}") from None
            offered = summary_deltas(idx)
        p.stats.metadata_fetched += 1
        _from_offer(p, t, offered, delta_from)
    elif p.summary_deltas:
        _from_offer(p, t, p.summary_deltas, delta_from)
    elif t.ref is not None:
        if delta_from is not None and not _complete(p, delta_from):
            delta_from = None
        if delta_from == to:
            return
        _superblock(p, delta_from, t, {})
    else:
        _superblock(p, None, t, {})


def _from_offer(p: _HttpPuller, t: _Target, offered: dict[str, bytes | None], delta_from: str | None) -> None:
    """libostree's ``get_best_static_delta_start_for`` and ``initiate_delta_request``."""
    to = t.commit
    if _complete(p, to):
        return  # unchanged
    scratch = False
    best: tuple[int, str] | None = None
    for name in offered:
        f, tt = parse_delta_name(name)
        if tt != to:
            continue
        if f is None:
            scratch = True
            continue
        if not _complete(p, f):
            continue
        ts = p.dest.load_commit(f).timestamp
        if best is None or ts > best[0]:
            best = (ts, f)
    if best is not None:
        _superblock(p, best[1], t, offered)
    elif scratch:
        if delta_from is None:
            _superblock(p, None, t, offered)
    elif p.opts.require_static_deltas:
        raise OstreeError(f"Static deltas required, but none found for {t.ref or ''} to {to}")


def _superblock(p: _HttpPuller, from_: str | None, t: _Target, offered: dict[str, bytes | None]) -> None:
    to = t.commit
    name = delta_name(from_, to)
    rel = delta_relpath(from_, to)
    data = p.read_rel(rel + "/superblock", MAX_SUPERBLOCK_SIZE, optional=True)
    if data is None:
        if p.opts.require_static_deltas:
            raise OstreeError(f"Static deltas required, but none found for {from_ or '(null)'} to {to}")
        return
    p.stats.metadata_fetched += 1
    expected = offered.get(name)
    if p.opts.gpg_verify_summary and expected is None:
        raise OstreeError("GPG verification enabled, but no summary signatures found "
                          "(use gpg-verify-summary=false in remote config to disable)")
    if expected is not None and hashlib.sha256(data).digest() != expected:
        raise OstreeError(f"Invalid checksum for static delta {name}")
    what = f"static delta {name}"
    sb = parse_superblock(data, f"superblock of {what} ({p.url_for(rel + '/superblock')})")
    if sb.to != to or sb.from_ != from_:
        raise OstreeError(f"Static delta superblock {p.url_for(rel + '/superblock')} is for "
                          f"{sb.from_ or '(scratch)'}-{sb.to}, not {name}")
    if p.opts.dry_run:
        _count(p, sb)
        return
    _apply(p, sb, t, rel, what)


def _count(p: _HttpPuller, sb: Superblock) -> None:
    tot = p.delta_totals
    for fb in sb.fallbacks:
        tot.fallbacks += 1
        tot.size += fb.size
        tot.usize += fb.usize
        if p.dest.has_object(fb.objtype, fb.checksum):
            tot.fetched_size += fb.size
    for ph in sb.parts:
        tot.parts += 1
        tot.size += ph.size
        tot.usize += ph.usize
        if all(p.dest.has_object(ot, c) for c, ot in ph.objects):
            tot.fetched_parts += 1
            tot.fetched_size += ph.size


def _apply(p: _HttpPuller, sb: Superblock, t: _Target, rel: str, what: str) -> None:
    dest = p.dest
    for fb in sb.fallbacks:
        if fb.objtype.is_meta:
            raise OstreeError(f"Found metadata object as fallback: {fb.checksum}.{fb.objtype.value}")

    def before_commit(commit: bytes, detached: bytes | None) -> None:
        if p.opts.gpg_verify or p.opts.sign_verifiers:
            p._gpg_verify_commit(sb.to, commit, detached)
        if not commit_state(dest, sb.to)[0]:
            dest.mark_commit_partial(sb.to, True)
        remove_tombstone(dest, sb.to)

    def read_part(i: int, ph: PartHeader) -> bytes:
        body = p.read_rel(f"{rel}/{i}", ph.size, optional=False)
        assert body is not None
        if len(body) != ph.size:
            raise OstreeError(f"{what}: part {i} ({p.url_for(f'{rel}/{i}')}) is {len(body)} bytes, "
                              f"the superblock says {ph.size}")
        return body

    had_commit = dest.has_object(ObjectType.COMMIT, sb.to)
    detached = apply_superblock(dest, sb, f"{what} ({p.url_for(rel)})", read_part, before_commit=before_commit)
    p.stats.delta_parts += len(sb.parts)
    if detached is not None and not had_commit:
        dest.write_detached_metadata(sb.to, list(gvariant.deserialize("a{sv}", detached)))
