"""Verifying a repository: object checksums, structure, reachability (``ostree fsck``).

:func:`~pyostree.store.verify.verify_object` (in ``verify``) re-hashes one object.
:func:`traverse_commit` computes the objects reachable from a commit (and
optionally which objects reference which, to name the commits an object
belongs to).  :func:`fsck_repo` drives a whole ``ostree fsck`` run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from pyostree.errors import NotFoundError, OstreeError
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.files import write_file_atomic
from pyostree.store.objects import Commit, DirTree, ObjectType
from pyostree.store.repo import Repo
from pyostree.store.verify import (
    verify_object,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import TextIO

ObjectName = tuple[str, ObjectType]
"""(checksum, type) of one object."""

_CHUNK = 1 << 20
_PERM_BITS = 0o7777
# ostree's messages use typographic quotes and an en dash
_LQ, _RQ, _EN = "\u2018", "\u2019", "\u2013"


# ---------------------------------------------------------------------------
# commit state


def commit_state(repo: Repo, checksum: str) -> tuple[bool, bool]:
    """(partial, partial because fsck found corruption) for a commit.

    The state of a commit stored only in a parent repository is the parent's.
    """
    if repo.parent is not None and not repo.has_object_local(ObjectType.COMMIT, checksum) \
            and repo.parent.has_object(ObjectType.COMMIT, checksum):
        return commit_state(repo.parent, checksum)
    try:
        fd = os.open(f"state/{checksum}.commitpartial", os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
    except FileNotFoundError:
        return False, False
    try:
        reason = os.read(fd, 1)
    finally:
        os.close(fd)
    return True, reason == b"f"


def mark_commit_fsck_partial(repo: Repo, checksum: str) -> None:
    """Create ``state/CSUM.commitpartial`` holding ``f`` (fsck-detected corruption)."""
    os.makedirs(f"/proc/self/fd/{repo.dfd}/state", exist_ok=True)
    try:
        fd = os.open(f"state/{checksum}.commitpartial", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o644, dir_fd=repo.dfd)
    except FileExistsError:
        return
    try:
        os.write(fd, b"f")
    finally:
        os.close(fd)


def tombstone_commits_enabled(repo: Repo) -> bool:
    return repo.config.get_bool("core", "tombstone-commits", False)


def write_tombstone(repo: Repo, checksum: str) -> None:
    """Store the ``CSUM.tombstone-commit`` object recording that a commit was deleted."""
    data = gvariant.serialize(obj.METADATA_TYPE,
                              [("commit", gvariant.Variant("ay", checksum.encode() + b"\0"))])
    rel = obj.object_relpath(checksum, ObjectType.TOMBSTONE_COMMIT)
    os.makedirs(f"/proc/self/fd/{repo.dfd}/objects/{checksum[:2]}", exist_ok=True)
    write_file_atomic(repo.path, rel, data, fsync=not repo.disable_fsync, dir_fd=repo.dfd)


def remove_tombstone(repo: Repo, checksum: str) -> None:
    """Drop ``CSUM.tombstone-commit``: libostree does this whenever it writes commit CSUM."""
    try:
        os.unlink(obj.object_relpath(checksum, ObjectType.TOMBSTONE_COMMIT), dir_fd=repo.dfd)
    except FileNotFoundError:
        pass


def delete_object(repo: Repo, objtype: ObjectType, checksum: str) -> None:
    """``ostree_repo_delete_object``: unlink, and leave a tombstone for commits if configured."""
    rel = obj.object_relpath(checksum, objtype, repo.is_archive)
    try:
        os.unlink(rel, dir_fd=repo.dfd)
    except OSError as e:
        raise OstreeError(f"Deleting object {checksum}.{objtype.value}: {os.strerror(e.errno or 0)}",
                          errno=e.errno) from None
    if objtype is ObjectType.COMMIT:  # after the commit: a commit never loses its signature first
        try:
            os.unlink(obj.object_relpath(checksum, ObjectType.COMMIT_META), dir_fd=repo.dfd)
        except FileNotFoundError:
            pass
    repo._meta_cache.pop((objtype, checksum), None)
    if objtype is ObjectType.COMMIT and tombstone_commits_enabled(repo):
        write_tombstone(repo, checksum)


# ---------------------------------------------------------------------------
# traversal


def _load_commit_if_exists(repo: Repo, checksum: str) -> Commit | None:
    try:
        return repo.load_commit(checksum)
    except NotFoundError:
        return None


def _load_dirtree_raw(repo: Repo, checksum: str) -> DirTree:
    data = repo.load_metadata(ObjectType.DIR_TREE, checksum)
    try:
        return DirTree.parse(data, validate=False)
    except (ValueError, OstreeError) as e:
        raise OstreeError(f"Corrupted dirtree object {checksum}: {e}") from None


def traverse_commit(repo: Repo, checksum: str, maxdepth: int, reachable: set[ObjectName],
                    parents: dict[ObjectName, set[ObjectName]] | None = None, *,
                    commit_only: bool = False, tolerate_corrupt: bool = False) -> None:
    """Add every object reachable from commit *checksum* to *reachable*.

    Follows *maxdepth* parents (-1: all).  A missing commit ends the walk; in
    a partial commit missing dirtrees are skipped.  When *parents* is given it
    records, for each object, the objects that reference it.
    """
    csum: str | None = checksum
    depth = maxdepth
    while csum is not None:
        key: ObjectName = (csum, ObjectType.COMMIT)
        if key in reachable:
            break
        commit = _load_commit_if_exists(repo, csum)
        if commit is None:
            break
        partial, _ = commit_state(repo, csum)
        reachable.add(key)
        if not commit_only:
            _traverse_dir(repo, commit.root_contents, commit.root_meta, key, reachable, parents, partial,
                          tolerate_corrupt)
        if maxdepth == -1 or depth > 0:
            if depth > 0:
                depth -= 1
            csum = commit.parent
        else:
            break


def _add_parent(parents: dict[ObjectName, set[ObjectName]] | None, key: ObjectName,
                parent: ObjectName) -> None:
    if parents is not None:
        parents.setdefault(key, set()).add(parent)


def _traverse_dir(repo: Repo, contents: str, meta: str, parent: ObjectName, reachable: set[ObjectName],
                  parents: dict[ObjectName, set[ObjectName]] | None, ignore_missing: bool,
                  tolerate_corrupt: bool = False) -> None:
    mkey: ObjectName = (meta, ObjectType.DIR_META)
    _add_parent(parents, mkey, parent)
    reachable.add(mkey)
    tkey: ObjectName = (contents, ObjectType.DIR_TREE)
    _add_parent(parents, tkey, parent)
    if tkey in reachable:
        return
    try:
        tree = _load_dirtree_raw(repo, contents)
    except NotFoundError:
        if ignore_missing:
            return
        raise
    except OstreeError:
        if not tolerate_corrupt:
            raise
        reachable.add(tkey)
        return
    for _name, fc in tree.files:
        fkey: ObjectName = (fc, ObjectType.FILE)
        _add_parent(parents, fkey, tkey)
        reachable.add(fkey)
    for _name, tc, mc in tree.dirs:
        _traverse_dir(repo, tc, mc, tkey, reachable, parents, ignore_missing, tolerate_corrupt)
    reachable.add(tkey)


def commits_of(parents: dict[ObjectName, set[ObjectName]], key: ObjectName) -> list[str]:
    """The commits that (transitively) contain object *key*."""
    out: set[str] = set()
    seen: set[ObjectName] = set()
    todo = [key]
    while todo:
        k = todo.pop()
        for p in parents.get(k, ()):
            if p in seen:
                continue
            seen.add(p)
            if p[1] is ObjectType.COMMIT:
                out.add(p[0])
            else:
                todo.append(p)
    return sorted(out)


def list_commit_objects(repo: Repo) -> list[str]:
    """Every commit object of *repo* and of its parent repositories (as libostree lists them)."""
    found: set[str] = set()
    r: Repo | None = repo
    while r is not None:
        found.update(c for c, t in r.iter_objects() if t is ObjectType.COMMIT)
        r = r.parent
    return sorted(found)


# ---------------------------------------------------------------------------
# bindings


def _md_strings(commit: Commit, key: str) -> list[str] | None:
    v = commit.get_metadata(key)
    if v is None:
        return None
    if isinstance(v.value, str):
        return [v.value]
    return [str(x) for x in v.value]


def verify_bindings(collection_id: str | None, ref_name: str | None, commit: Commit) -> None:
    """Check a commit's ``ostree.ref-binding`` / ``ostree.collection-binding`` metadata."""
    refs = _md_strings(commit, "ostree.ref-binding")
    if refs is None:
        if collection_id is None:
            return
        raise OstreeError("Expected commit metadata to have ref binding information, found none")
    if ref_name is not None and ref_name not in refs:
        refs_str = ", ".join(f"{_LQ}{r}{_RQ}" for r in refs) if refs else "no refs"
        raise OstreeError(f"Commit has no requested ref {_LQ}{ref_name}{_RQ} in ref binding metadata ({refs_str})")
    if collection_id is not None:
        cb = _md_strings(commit, "ostree.collection-binding")
        if cb is None:
            raise OstreeError("Expected commit metadata to have collection ID binding information, found none")
        if cb[0] != collection_id:
            raise OstreeError(f"Commit has collection ID {_LQ}{cb[0]}{_RQ} in collection binding metadata, "
                              f"while the remote it came from has collection ID {_LQ}{collection_id}{_RQ}")


def list_collection_refs(repo: Repo) -> list[tuple[str, str, str]]:
    """(collection id, ref, checksum) for local refs (with the repo's collection ID) and mirrors."""
    from pyostree.store import refs as _refs

    out: list[tuple[str, str, str]] = []
    cid = repo.collection_id
    if cid:
        for name, c in _refs._walk_refs(repo, "refs/heads"):
            out.append((cid, name, c))
    root = f"/proc/self/fd/{repo.dfd}/refs/mirrors"
    try:
        colls = sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        colls = []
    for coll in colls:
        for name, c in _refs._walk_refs(repo, f"refs/mirrors/{coll}"):
            out.append((coll, name, c))
    return out


def _resolve_collection_ref(repo: Repo, collection_id: str, ref: str) -> str | None:
    for coll, name, c in list_collection_refs(repo):
        if coll == collection_id and name == ref:
            return c
    return None


# ---------------------------------------------------------------------------
# the fsck run


class FsckOptions:
    def __init__(self, *, quiet: bool = False, delete: bool = False, all: bool = False,
                 add_tombstones: bool = False, verify_bindings: bool = False,
                 verify_back_refs: bool = False) -> None:
        self.quiet = quiet
        self.delete = delete
        self.all = all
        self.add_tombstones = add_tombstones
        self.verify_bindings = verify_bindings
        self.verify_back_refs = verify_back_refs


class _Fsck:
    def __init__(self, repo: Repo, opts: FsckOptions, out: TextIO, err: TextIO) -> None:
        self.repo = repo
        self.opts = opts
        self.out = out
        self.err = err
        self.found_corruption = False

    def _print(self, msg: str) -> None:
        if not self.opts.quiet:
            self.out.write(msg + "\n")
            self.out.flush()

    def _printerr(self, msg: str) -> None:
        self.out.flush()
        self.err.write(msg + "\n")
        self.err.flush()

    def one_object(self, checksum: str, objtype: ObjectType, parent_commits: list[str] | None) -> None:
        try:
            verify_object(self.repo, objtype, checksum)
            return
        except NotFoundError:
            pcs = ", ".join(parent_commits) if parent_commits else None
            if pcs:
                self._printerr(f"Object missing in commits {pcs}: {checksum}.{objtype.value}")
            else:
                self._printerr(f"Object missing: {checksum}.{objtype.value}")
            missing = True
        except OstreeError as e:
            msg = str(e)
            if parent_commits:
                msg = f"In commits {', '.join(parent_commits)}: {msg}"
            if self.opts.delete:
                self._printerr(msg)
                try:
                    delete_object(self.repo, objtype, checksum)
                except OstreeError:
                    pass
                missing = True
            elif self.opts.all:
                self.found_corruption = True
                self._printerr(msg)
                missing = False
            else:
                raise OstreeError(msg) from None
        if missing:
            self.found_corruption = True
            if parent_commits and objtype is not ObjectType.COMMIT:
                for pc in parent_commits:
                    partial, _ = commit_state(self.repo, pc)
                    if not partial:
                        self._printerr(f"Marking commit as partial: {pc}")
                        mark_commit_fsck_partial(self.repo, pc)

    def commit_for_ref(self, checksum: str, collection_id: str | None, ref_name: str) -> None:
        self.one_object(checksum, ObjectType.COMMIT, None)
        try:
            commit = self.repo.load_commit(checksum)
        except OstreeError as e:
            where = f"({collection_id}, {ref_name})" if collection_id is not None else ref_name
            raise OstreeError(f"Loading commit for ref {where}: {e}") from None
        if self.opts.verify_bindings:
            try:
                verify_bindings(collection_id, ref_name, commit)
            except OstreeError as e:
                raise OstreeError(f"Commit {checksum}: {e}") from None

    def one_commit(self, checksum: str, commit: Commit, tombstones: list[str]) -> None:
        from pyostree.store import refs as _refs

        if self.opts.verify_back_refs:
            cb = _md_strings(commit, "ostree.collection-binding")
            cid = cb[0] if cb else None
            for ref in _md_strings(commit, "ostree.ref-binding") or []:
                if cid is not None:
                    target = _resolve_collection_ref(self.repo, cid, ref)
                else:
                    target = _refs.resolve_rev(self.repo, ref, True)
                if target is None:
                    if cid is not None:
                        raise OstreeError(f"Collection{_EN}ref ({cid}, {ref}) in bindings for commit {checksum} "
                                          "does not exist")
                    raise OstreeError(f"Ref {_LQ}{ref}{_RQ} in bindings for commit {checksum} does not exist")
                if target != checksum:
                    if cid is not None:
                        raise OstreeError(f"Collection{_EN}ref ({cid}, {ref}) in bindings for commit {checksum} "
                                          "does not resolve to that commit")
                    raise OstreeError(f"Ref {_LQ}{ref}{_RQ} in bindings for commit {checksum} "
                                      "does not resolve to that commit")
        if (self.opts.add_tombstones and commit.parent
                and not self.repo.has_object(ObjectType.COMMIT, commit.parent)):
            tombstones.append(checksum)

    def run(self) -> int:
        """Returns the number of commits verified; raises on corruption."""
        from pyostree.store import refs as _refs

        repo = self.repo
        opts = self.opts
        if opts.verify_back_refs:
            opts.verify_bindings = True
        self._print("Validating refs...")
        for refspec, checksum in sorted(_refs.list_refs(repo).items()):
            ref_name = refspec.split(":", 1)[1] if ":" in refspec else refspec
            self.commit_for_ref(checksum, None, ref_name)
        self._print("Validating refs in collections...")
        for coll, name, checksum in list_collection_refs(repo):
            self.commit_for_ref(checksum, coll, name)
        self._print("Enumerating commits...")
        commits: list[str] = []
        tombstones: list[str] = []
        n_partial = 0
        n_fsck_partial = 0
        for csum in list_commit_objects(repo):
            commit = repo.load_commit(csum)
            self.one_commit(csum, commit, tombstones)
            partial, fsck_partial = commit_state(repo, csum)
            if partial:
                n_partial += 1
                if fsck_partial:
                    n_fsck_partial += 1
            else:
                commits.append(csum)
        self._print(f"Verifying content integrity of {len(commits)} commit objects...")
        reachable: set[ObjectName] = set()
        parents: dict[ObjectName, set[ObjectName]] = {}
        for csum in commits:
            traverse_commit(repo, csum, 0, reachable, parents, tolerate_corrupt=True)
        total = len(reachable)
        for i, key in enumerate(_fsck_order(reachable), 1):
            self.one_object(key[0], key[1], commits_of(parents, key))
            if i == 1 or i == total:
                # what libglnx's console progress prints when stdout is not a terminal (even with -q)
                self.out.write(f"fsck objects ({i}/{total}) {i * 100 // total}%\n")
        if opts.add_tombstones:
            if tombstones and not tombstone_commits_enabled(repo):
                repo.config.set("core", "tombstone-commits", "true")
                repo.write_config()
            for csum in tombstones:
                self.out.write(f"Adding tombstone for commit {csum}\n")
                delete_object(repo, ObjectType.COMMIT, csum)
        elif n_partial > 0:
            self.out.write(f"{n_partial} partial commits not verified\n")
        if self.found_corruption:
            raise OstreeError("Repository corruption encountered")
        if n_fsck_partial > 0:
            raise OstreeError(f"{n_partial} partial commits from fsck-detected corruption")
        self.out.write(f"object fsck of {len(commits)} commits completed successfully - no errors found.\n")
        return len(commits)


def _fsck_order(keys: Iterable[ObjectName]) -> list[ObjectName]:
    rank = {ObjectType.COMMIT: 0, ObjectType.DIR_TREE: 1, ObjectType.DIR_META: 2, ObjectType.FILE: 3}
    return sorted(keys, key=lambda k: (rank.get(k[1], 4), k[0]))


def fsck_repo(repo: Repo, opts: FsckOptions | None = None, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    """Run ``ostree fsck`` on *repo*; returns the number of commits verified.

    Progress goes to *out*, per-object problems to *err*; raises
    :class:`OstreeError` when corruption was found.
    """
    return _Fsck(repo, opts or FsckOptions(), out or sys.stdout, err or sys.stderr).run()
