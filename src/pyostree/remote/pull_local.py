"""Copying commits between repositories on the local filesystem (``ostree pull-local``).

Objects are hardlinked when both repositories store them the same way
(metadata always; content when the modes match) and otherwise re-written
through :meth:`Repo.write_content`, which converts between storage formats
(archive <-> bare, bare-user, ...).  With ``untrusted`` every object is
re-hashed before it is linked or copied.

As in libostree a commit being pulled is marked ``state/CSUM.commitpartial``
until all of its objects are present; a commit already stored but marked
partial is scanned again so that missing objects get filled in.
"""

from __future__ import annotations

import errno
import os

from pyostree.errors import NotFoundError, OstreeError
from pyostree.store import objects as obj
from pyostree.store import refs as _refs
from pyostree.store.objects import Commit, ObjectType
from pyostree.store.repo import Repo, RepoMode

_SPOOL_THRESHOLD = 16 << 20
"""Archive objects larger than this are decompressed to a temporary file, not memory."""


class PullStats:
    """Counters of one pull (a plain class: importing dataclasses costs start-up time)."""

    metadata_imported = 0
    content_imported = 0
    content_bytes_written = 0
    _commits: dict[str, str] | None = None

    @property
    def commits(self) -> dict[str, str]:
        """ref (or checksum) requested -> commit checksum."""
        if self._commits is None:
            self._commits = {}
        return self._commits


def _copy_detached_metadata(dest: Repo, src: Repo, checksum: str) -> None:
    md = src.load_detached_metadata(checksum)
    if md is not None:
        dest.write_detached_metadata(checksum, md)


def import_object(dest: Repo, src: Repo, objtype: ObjectType, checksum: str, *, trusted: bool = True,
                  verify_bareuseronly: bool = False) -> bool:
    """Copy one object from *src* into *dest*'s open transaction. True if it was written.

    Raises :class:`NotFoundError` when *src* lacks the object, and
    :class:`OstreeError` naming the object when it is corrupt (untrusted) or
    when ``verify_bareuseronly`` rejects its mode.
    """
    if objtype is ObjectType.COMMIT:
        if not src.has_object(ObjectType.COMMIT, checksum):
            raise NotFoundError(f"No such metadata object {checksum}.commit")
        _copy_detached_metadata(dest, src, checksum)
    if dest.has_object_local(objtype, checksum):
        return False
    sdfd = dest._require_txn()
    same_mode = src.mode is dest.mode
    if objtype.is_meta:
        # as libostree: verify first when untrusted, then hardlink (metadata is the same in every mode)
        if dest._try_link(src, objtype, checksum, sdfd, verify=not trusted):
            return True
        data = src.load_metadata(objtype, checksum)
        if not trusted:
            from pyostree.store.verify import verify_metadata_bytes

            verify_metadata_bytes(objtype, checksum, data)
        dest.write_metadata(objtype, data, expected=checksum)
        return True
    # same storage: link before reading the object's header, which nothing needs then
    if same_mode and not verify_bareuseronly and dest._try_link(src, objtype, checksum, sdfd,
                                                                verify=not trusted):
        return True
    co = src.load_file(checksum)
    info = co.info
    if verify_bareuseronly:
        obj.validate_bareuseronly_mode(info.mode, checksum)
        if same_mode and dest._try_link(src, objtype, checksum, sdfd, verify=not trusted):
            return True
    if (src.mode is RepoMode.BARE_USER and dest.mode is RepoMode.BARE_USER_ONLY and info.is_regular
            and _link_bareuser_to_bareuseronly(dest, src, checksum, info, trusted)):
        return True
    if info.is_regular and src.mode is not RepoMode.ARCHIVE:
        fd = os.open(co.relpath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=co.repo.dfd)
        try:
            if os.fstat(fd).st_size != info.size:
                raise OstreeError(f"Corrupted file object {checksum}: size changed")
            dest.write_content(info, src_fd=fd, expected=None if trusted else checksum,
                               trusted_checksum=checksum if trusted else None)
        finally:
            os.close(fd)
        return True
    if info.is_regular and info.size > _SPOOL_THRESHOLD:
        import tempfile

        with tempfile.TemporaryFile(dir=f"/proc/self/fd/{dest.dfd}/tmp") as tmp, co.open() as f:
            n = 0
            while chunk := f.read(1 << 20):
                tmp.write(chunk)
                n += len(chunk)
            tmp.flush()
            if n != info.size:
                raise OstreeError(f"Corrupted file object {checksum}: content is {n} bytes, header says {info.size}")
            dest.write_content(info, src_fd=tmp.fileno(), expected=None if trusted else checksum,
                               trusted_checksum=checksum if trusted else None)
        return True
    data = co.read() if info.is_regular else b""
    if info.is_regular and len(data) != info.size:
        raise OstreeError(f"Corrupted file object {checksum}: content is {len(data)} bytes, header says {info.size}")
    dest.write_content(info, data, expected=None if trusted else checksum,
                               trusted_checksum=checksum if trusted else None)
    return True


def _link_bareuser_to_bareuseronly(dest: Repo, src: Repo, checksum: str, info: obj.FileInfo,
                                   trusted: bool) -> bool:
    """libostree's bare-user -> bare-user-only shortcut: hardlink a regular file whose
    on-disk mode already is what bare-user-only reads back."""
    if info.uid or info.gid or info.xattrs:
        return False
    rel = obj.object_relpath(checksum, ObjectType.FILE)
    try:
        st = os.stat(rel, dir_fd=src.dfd, follow_symlinks=False)
    except OSError:
        return False
    if st.st_mode != info.mode:
        return False
    if not trusted:
        from pyostree.store.verify import verify_object

        verify_object(src, ObjectType.FILE, checksum)
    sdfd = dest._stage_prefix_dfd(checksum)
    try:
        os.link(rel[len("objects/"):], rel[len("objects/"):], src_dir_fd=src._objects_dfd, dst_dir_fd=sdfd,
                follow_symlinks=False)
    except FileExistsError:
        pass
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            return False
        raise
    dest._staged.add(checksum + ObjectType.FILE.value)
    return True


class _LocalPuller:
    def __init__(self, dest: Repo, src: Repo, *, trusted: bool, commit_only: bool, depth: int,
                 bareuseronly_files: bool, verify_bindings: bool = True) -> None:
        self.dest = dest
        self.verify_bindings = verify_bindings
        self.src = src
        self.trusted = trusted
        self.commit_only = commit_only
        self.maxdepth = depth
        self.bareuseronly = bareuseronly_files
        self.stats = PullStats()
        self.scanned: set[tuple[str, ObjectType]] = set()
        self.requested_content: set[str] = set()
        self.scanned_commits: list[str] = []
        self.commit_depth: dict[str, int] = {}
        # Trusted imports hardlink objects stored the same way in both repositories
        # straight into the staging directory, without decoding them, as libostree's
        # import_one_object_direct (metadata: any modes; content: the same mode).
        # Untrusted pulls, conversions and failed links go through import_object.
        self.link_meta = trusted and dest.parent is None
        self.link_content = self.link_meta and src.mode is dest.mode and not bareuseronly_files
        self.file_suffix = ".filez" if dest.is_archive else ".file"
        self.present: set[str] | None = None
        """dest's objects/XX directories when the scan started (no XX/: no object to stat)."""

    def _import(self, objtype: ObjectType, checksum: str) -> None:
        wrote = import_object(self.dest, self.src, objtype, checksum, trusted=self.trusted,
                              verify_bareuseronly=self.bareuseronly)
        if objtype is ObjectType.COMMIT:
            from pyostree.store.fsck import remove_tombstone

            remove_tombstone(self.dest, checksum)
        if objtype.is_meta:
            self.stats.metadata_imported += 1
        elif wrote:
            self.stats.content_imported += 1

    def _link(self, objtype: ObjectType, checksum: str, suffix: str) -> bool | None:
        """Trusted direct import: True when the object was hardlinked into the staging
        directory, False when dest has it already, None to take import_object's way
        (the source lacks it or keeps it in a parent, another filesystem, ...).

        One stat of dest (none while dest has no objects/XX/) and one link.
        """
        dest = self.dest
        key = checksum + objtype.value
        if key in dest._staged:
            return False
        present = self.present
        if present is None:
            present = self.present = set(os.listdir(dest._objects_dfd))
        prefix = checksum[:2]
        rel = f"{prefix}/{checksum[2:]}{suffix}"
        if prefix in present:
            try:
                os.stat(rel, dir_fd=dest._objects_dfd, follow_symlinks=False)
                return False
            except FileNotFoundError:
                pass
            except OSError:
                return None
        sdfd = dest._stage_prefix_dfd(checksum)
        try:
            os.link(rel, rel, src_dir_fd=self.src._objects_dfd, dst_dir_fd=sdfd, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno == errno.EXDEV:  # the next ones would fail the same way
                self.link_meta = self.link_content = False
            return None
        dest._staged.add(key)
        return True

    def scan_commit(self, checksum: str, is_parent: bool, ref: str | None = None) -> None:
        key = (checksum, ObjectType.COMMIT)
        if key in self.scanned:
            return
        self.scanned.add(key)
        dest = self.dest
        if not dest.has_object(ObjectType.COMMIT, checksum):
            from pyostree.store.fsck import commit_state

            if not commit_state(dest, checksum)[0]:
                dest.mark_commit_partial(checksum, True)
            try:
                self._import(ObjectType.COMMIT, checksum)
            except NotFoundError:
                if is_parent and self.maxdepth != 0:
                    dest.mark_commit_partial(checksum, False)
                    return
                raise
        elif self.src.has_object(ObjectType.COMMIT, checksum):
            _copy_detached_metadata(dest, self.src, checksum)
        commit = dest.load_commit(checksum)
        if self.verify_bindings:
            check_bindings(self.src.collection_id, None if is_parent else ref, commit, checksum)
        depth = self.commit_depth.get(checksum, self.maxdepth)
        if commit.parent and (self.maxdepth == -1 or depth > 0):
            self.commit_depth[commit.parent] = depth - 1 if depth > 0 else -1
            self.scan_commit(commit.parent, True)
        from pyostree.store.fsck import commit_state

        partial, _ = commit_state(dest, checksum)
        if partial and not self.commit_only:
            self.scan_dirmeta(commit.root_meta)
            self.scan_dirtree(commit.root_contents)
            self.scanned_commits.append(checksum)

    def scan_dirmeta(self, checksum: str) -> None:
        key = (checksum, ObjectType.DIR_META)
        if key in self.scanned:
            return
        self.scanned.add(key)
        if self.link_meta:
            linked = self._link(ObjectType.DIR_META, checksum, ".dirmeta")
            if linked is not None:
                self.stats.metadata_imported += linked
                return
        if not self.dest.has_object(ObjectType.DIR_META, checksum):
            self._import(ObjectType.DIR_META, checksum)

    def scan_dirtree(self, checksum: str) -> None:
        key = (checksum, ObjectType.DIR_TREE)
        if key in self.scanned:
            return
        self.scanned.add(key)
        dest = self.dest
        linked = self._link(ObjectType.DIR_TREE, checksum, ".dirtree") if self.link_meta else None
        if linked is not None:
            self.stats.metadata_imported += linked
        elif not dest.has_object(ObjectType.DIR_TREE, checksum):
            self._import(ObjectType.DIR_TREE, checksum)
        from pyostree.tree.checkout import load_dirtree_fast

        try:
            files, dirs = load_dirtree_fast(dest, checksum)
        except OstreeError as e:
            raise OstreeError(f"Validating dirtree {checksum}: {e}") from None
        requested = self.requested_content
        for _name, fc in files:
            if fc in requested:
                continue
            requested.add(fc)
            if self.link_content:
                linked = self._link(ObjectType.FILE, fc, self.file_suffix)
                if linked is not None:
                    self.stats.content_imported += linked
                    continue
            if dest.has_object(ObjectType.FILE, fc):
                continue
            self._import(ObjectType.FILE, fc)
        for _name, tc, mc in dirs:
            self.scan_dirtree(tc)
            self.scan_dirmeta(mc)


def _read_optional(src: Repo, name: str) -> bytes | None:
    try:
        with open(os.path.join(src.path, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _verify_src_commit(dest: Repo, src: Repo, checksum: str, remote: str | None) -> None:
    """GPG-check a commit of *src* with *dest*'s keyrings for *remote*, before importing it."""
    from pyostree.remote import gpg

    data = src.load_metadata(ObjectType.COMMIT, checksum)
    sigs = gpg.commit_signatures(src, checksum)
    if not sigs:
        raise gpg.GpgError("GPG verification enabled, but no signatures found "
                           "(use gpg-verify=false in remote config to disable)")
    gpg.verify_data(data, sigs, gpg.collect_keyrings(dest, remote)).require_valid()


def check_bindings(collection_id: str | None, ref: str | None, commit: Commit, checksum: str) -> None:
    """libostree's pull check of a commit's ``ostree.ref-binding``/``ostree.collection-binding``:
    *ref* (None for a parent or a commit asked for by checksum) must be bound, and with a
    *collection_id* (the source's) the commit must be bound to it."""
    from pyostree.store.fsck import verify_bindings

    try:
        verify_bindings(collection_id, ref, commit)
    except OstreeError as e:
        raise OstreeError(f"Commit {checksum}: {e}") from None


def pull_local(dest: Repo, src_path: str, refs: list[str] | None = None, *, remote: str | None = None,
               untrusted: bool = False, commit_only: bool = False, depth: int = 0,
               bareuseronly_files: bool = False, gpg_verify: bool = False,
               gpg_verify_summary: bool = False, require_static_deltas: bool = False,
               verify_bindings: bool = True) -> PullStats:
    """Pull *refs* (all of the source's refs when None) from the repository at *src_path*.

    Refs are written as local refs, or as ``remote:ref`` when *remote* is set;
    a plain checksum is pulled without writing a ref.  Each commit's ref and collection bindings
    are checked against the name it was pulled by and the source's collection ID unless
    *verify_bindings* is false (``--disable-verify-bindings``).
    """
    if (gpg_verify or gpg_verify_summary) and remote is None:
        raise OstreeError("Must specify remote name to enable gpg verification")
    try:
        src = Repo.open(src_path)
    except OstreeError as e:
        raise OstreeError(f"{e}") from None
    try:
        if gpg_verify_summary:
            assert remote is not None
            from pyostree.remote import gpg

            gpg.verify_summary(dest, remote, _read_optional(src, "summary"), _read_optional(src, "summary.sig"))
        if refs is None or len(refs) == 0:
            names = sorted(_refs.list_refs(src).keys())
        else:
            names = list(refs)
        targets: list[tuple[str, str | None]] = []  # (commit, ref name to write)
        for name in names:
            if obj.is_valid_checksum(name):
                targets.append((name, None))
                continue
            _refs.validate_rev(name)  # as ostree: "remote:ref" names are refused
            ref = name
            resolved = _refs.resolve_rev(src, name, False)
            assert resolved is not None
            targets.append((resolved, ref))
        if gpg_verify:
            for target, _r in targets:
                _verify_src_commit(dest, src, target, remote)
        if require_static_deltas:
            from pyostree.remote import deltas as _deltas

            for target, refname in targets:
                _deltas.pull_from_repo(dest, src, target, refname)
        puller = _LocalPuller(dest, src, trusted=not untrusted, commit_only=commit_only, depth=depth,
                              bareuseronly_files=bareuseronly_files, verify_bindings=verify_bindings)
        before = dest.stats["content_bytes_written"]
        with dest.transaction():
            for target, refname in targets:
                puller.scan_commit(target, False, refname)
            for target, refname in targets:
                if refname is not None:
                    _refs.set_ref(dest, remote, refname, target)
                    puller.stats.commits[refname] = target
                else:
                    puller.stats.commits[target] = target
        for done in puller.scanned_commits:
            dest.mark_commit_partial(done, False)
        puller.stats.content_bytes_written = dest.stats["content_bytes_written"] - before
        return puller.stats
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OstreeError("No space left on device", errno=e.errno) from None
        raise
    finally:
        src.close()
