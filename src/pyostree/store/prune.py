"""Deleting unreachable objects (``ostree prune``).

Reachability is computed as libostree does: from every commit object in the
repository (default), or only from refs (``refs_only``), following *depth*
parents; ``retain_branch_depth``, ``only_branches`` and
``keep_younger_than`` select per-branch depths.  Only loose objects of this
repository are considered (never a parent repository's), and the exclusive
repository lock is held while deleting.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.fsck import (
    ObjectName,
    delete_object,
    list_collection_refs,
    tombstone_commits_enabled,
    traverse_commit,
)
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo

_PRUNABLE = (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.COMMIT,
             ObjectType.PAYLOAD_LINK)
_DELETE_ORDER = {ObjectType.COMMIT: 0, ObjectType.DIR_TREE: 1, ObjectType.DIR_META: 2, ObjectType.FILE: 3,
                 ObjectType.PAYLOAD_LINK: 4}


@dataclass
class PruneOptions:
    refs_only: bool = False
    no_prune: bool = False
    commit_only: bool = False
    depth: int = -1
    delete_commit: str | None = None
    keep_younger_than: int | None = None
    """Seconds since the epoch."""
    retain_branch_depth: dict[str, int] = field(default_factory=dict)
    only_branches: list[str] = field(default_factory=list)


@dataclass
class PruneResult:
    total: int = 0
    pruned: int = 0
    freed_bytes: int = 0


# ---------------------------------------------------------------------------
# dates


def parse_date(text: str, now: float | None = None) -> int:
    """Seconds since the epoch for ``--keep-younger-than`` values (a subset of
    gnulib parse_datetime: what ``commit --timestamp`` accepts, ``N UNIT(s) ago``,
    ``Month D YYYY``...)."""
    from pyostree.store.timeutil import parse_datetime_words, parse_timestamp

    loose = parse_datetime_words(text, now)
    if loose is not None:
        return loose
    try:
        return parse_timestamp(text, allow_negative=True)
    except OstreeError:
        raise OstreeError(f"Could not parse '{text}'") from None


def parse_branch_depth(spec: str) -> tuple[str, int]:
    """``BRANCH=DEPTH`` for ``--retain-branch-depth``."""
    branch, eq, depthstr = spec.partition("=")
    if not eq:
        raise OstreeError(f"Invalid value {spec}, must specify BRANCH=DEPTH")
    m = re.match(r"\s*[+-]?\d+", depthstr)
    if not m:
        raise OstreeError(f"Invalid depth {depthstr}")
    return branch, int(m.group(0))


# ---------------------------------------------------------------------------


def _all_ref_targets(repo: Repo) -> dict[str, str]:
    from pyostree.store import refs as _refs

    return _refs.list_refs(repo)


def delete_commit(repo: Repo, checksum: str) -> None:
    """``prune --delete-commit``: refuse if a ref points at it, leave a tombstone."""
    for ref, c in sorted(_all_ref_targets(repo).items()):
        if c == checksum:
            raise OstreeError(f"Commit '{checksum}' is referenced by '{ref}'")
    for coll, name, c in list_collection_refs(repo):
        if c == checksum:
            raise OstreeError(f"Commit '{checksum}' is referenced by ({coll}, {name})")
    if not tombstone_commits_enabled(repo):
        repo.config.set("core", "tombstone-commits", "true")
        repo.write_config()
    delete_object(repo, ObjectType.COMMIT, checksum)


def _loose_objects(repo: Repo, commit_only: bool) -> list[ObjectName]:
    out: list[ObjectName] = []
    for csum, t in repo.iter_objects():
        if t not in _PRUNABLE:
            continue
        if commit_only and t is not ObjectType.COMMIT:
            continue
        out.append((csum, t))
    return out


def _storage_size(repo: Repo, key: ObjectName) -> int:
    rel = obj.object_relpath(key[0], key[1], repo.is_archive)
    try:
        return os.stat(rel, dir_fd=repo.dfd, follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _keep_younger_than(repo: Repo, checksum: str, ts: int, reachable: set[ObjectName],
                       commit_only: bool) -> None:
    traverse_commit(repo, checksum, 0, reachable, commit_only=commit_only)
    nxt: str | None = checksum
    while nxt is not None:
        try:
            commit = repo.load_commit(nxt)
        except OstreeError:
            break
        if commit.timestamp >= ts:
            traverse_commit(repo, nxt, 0, reachable, commit_only=commit_only)
            nxt = commit.parent
        else:
            break


def compute_reachable(repo: Repo, opts: PruneOptions) -> tuple[set[ObjectName], bool]:
    """Objects to keep; second item: whether the per-branch (refs-only) path was used."""
    from pyostree.store import refs as _refs

    reachable: set[ObjectName] = set()
    co = opts.commit_only
    if not (opts.retain_branch_depth or opts.keep_younger_than is not None or opts.only_branches):
        if opts.refs_only:
            for c in _all_ref_targets(repo).values():
                traverse_commit(repo, c, opts.depth, reachable, commit_only=co)
            for _coll, _name, c in list_collection_refs(repo):
                traverse_commit(repo, c, opts.depth, reachable, commit_only=co)
        else:
            for csum, t in repo.iter_objects():
                if t is ObjectType.COMMIT:
                    traverse_commit(repo, csum, opts.depth, reachable, commit_only=co)
        return reachable, False
    depths = dict(opts.retain_branch_depth)
    all_refs = _all_ref_targets(repo)
    if opts.only_branches:
        for ref in opts.only_branches:
            _refs.resolve_rev(repo, ref, False)
        only = set(opts.only_branches)
        for ref in all_refs:
            if ref not in only and ref not in depths:
                depths[ref] = -1
    for ref, c in sorted(all_refs.items()):
        if ref in depths:
            depth = depths[ref]
        elif opts.keep_younger_than is not None:
            _keep_younger_than(repo, c, opts.keep_younger_than, reachable, co)
            continue
        else:
            depth = opts.depth
        traverse_commit(repo, c, depth, reachable, commit_only=co)
    return reachable, True


def plan_deletions(repo: Repo, opts: PruneOptions) -> tuple[PruneResult, list[ObjectName]]:
    """The objects prune deletes, in the order it deletes them, and its counts.

    Crash safety: fsck (ours and ostree's) walks every commit object present, so no instant
    may leave a commit whose trees are gone.  Commits go first, then what they reference
    top-down; every commit left is reachable, and a reachable commit reaches only kept
    objects.  (tests/test_torture_kill.py checks every prefix of this order with both fscks.)
    """
    reachable, _ = compute_reachable(repo, opts)
    result = PruneResult()
    doomed: list[ObjectName] = []
    for key in _loose_objects(repo, opts.commit_only):
        result.total += 1
        if key in reachable:
            continue
        result.freed_bytes += _storage_size(repo, key)
        result.pruned += 1
        doomed.append(key)
    doomed.sort(key=lambda k: _DELETE_ORDER[k[1]])
    return result, doomed


def delete_one(repo: Repo, csum: str, objtype: ObjectType) -> None:
    """Delete one object as prune does: a commit before its partial marker (removing the
    marker first would leave a partial commit that fsck no longer excuses)."""
    delete_object(repo, objtype, csum)
    if objtype is ObjectType.COMMIT:
        repo.mark_commit_partial(csum, False)


def prune(repo: Repo, opts: PruneOptions | None = None) -> PruneResult:
    """Delete (or with ``no_prune`` only count) objects not reachable under *opts*."""
    opts = opts or PruneOptions()
    if opts.delete_commit is not None and opts.no_prune:
        raise OstreeError("Cannot specify both --delete-commit and --no-prune")
    with repo.lock(exclusive=True):
        if opts.delete_commit is not None:
            checksum = repo.resolve_rev(opts.delete_commit) or opts.delete_commit
            delete_commit(repo, checksum)
        result, doomed = plan_deletions(repo, opts)
        if not opts.no_prune:
            for csum, objtype in doomed:
                delete_one(repo, csum, objtype)
        if not opts.no_prune:
            _prune_static_deltas(repo)
    return result


def prune_static_deltas_for(repo: Repo, commit: str) -> None:
    """``--static-deltas-only --delete-commit``: remove the deltas leading to *commit*."""
    with repo.lock(exclusive=True):
        _prune_static_deltas(repo, repo.resolve_rev(commit) or commit)


def _prune_static_deltas(repo: Repo, commit: str | None = None) -> None:
    """Remove static deltas whose target commit is gone (or is *commit*)."""
    from pyostree.store.files import rm_rf_at

    base = f"/proc/self/fd/{repo.dfd}/deltas"
    try:
        prefixes = os.listdir(base)
    except (FileNotFoundError, NotADirectoryError):
        return
    for p in prefixes:
        try:
            names = os.listdir(f"{base}/{p}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        for n in names:
            full = p + n
            to_b64 = full.split("-", 1)[1] if "-" in full else full
            try:
                to = _b64_to_checksum(to_b64)
            except ValueError:
                continue
            if (to == commit) if commit else not repo.has_object(ObjectType.COMMIT, to):
                pfd = os.open(f"deltas/{p}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=repo.dfd)
                try:
                    rm_rf_at(pfd, n)
                finally:
                    os.close(pfd)


def _b64_to_checksum(s: str) -> str:
    import base64

    raw = base64.b64decode(s.replace("_", "/") + "=", validate=True)
    if len(raw) != 32:
        raise ValueError(s)
    return raw.hex()


def summary_lines(result: PruneResult, opts: PruneOptions) -> list[str]:
    """The lines ``ostree prune`` prints."""
    from pyostree.store.dump import format_size

    lines = [f"Total (commit only) objects: {result.total}" if opts.commit_only
             else f"Total objects: {result.total}"]
    if result.pruned == 0:
        lines.append("No unreachable objects")
    elif opts.no_prune:
        lines.append(f"Would delete: {result.pruned} objects, freeing {format_size(result.freed_bytes)}")
    else:
        lines.append(f"Deleted {result.pruned} objects, {format_size(result.freed_bytes)} freed")
    return lines
