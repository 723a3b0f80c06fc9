"""``ostree create-usb``: copy collection refs onto removable media, as libostree lays them out.

The refs go into an ``archive`` repository at ``MOUNT/.ostree/repo`` (or ``--destination-repo``,
which must lie on the same file system), as mirrored collection refs (``refs/mirrors/COLL/REF``,
or ``refs/heads`` for the repository's own collection), with their commits' objects and
signatures, and a regenerated summary.  A repository outside the two places
``OstreeRepoFinderMount`` looks (``.ostree/repo``, ``ostree/repo``) gets a symlink
``.ostree/repos.d/NN-generated`` so that the finder still sees it.
"""

from __future__ import annotations

import os

from pyostree.errors import OstreeError, os_error
from pyostree.store.refs import validate_collection_id, validate_rev
from pyostree.store.repo import Repo, RepoMode

_WELL_KNOWN = ("ostree/repo", ".ostree/repo")
_LQ, _RQ = "\u2018", "\u2019"  # ostree's typographic quotes


def _source_ref(src: Repo, collection_id: str, ref: str) -> str:
    """The commit *src* has for (collection, ref): its own collection's refs/heads, a mirror, or
    a remote whose collection-id matches."""
    from pyostree.remote.remotes import list_collection_refs

    checksum = list_collection_refs(src, collection_id).get((collection_id, ref))
    if checksum is None:
        raise OstreeError(f"Refspec {_LQ}({collection_id}, {ref}){_RQ} not found")
    return checksum


def create_usb(src: Repo, mount_path: str, refs: list[tuple[str, str]], *,
               destination_repo: str | None = None, commit: str | None = None,
               disable_fsync: bool = False) -> str:
    """Copy *refs* ((collection ID, ref) pairs) with their commits from *src* to the repository on
    *mount_path*; returns the message ``ostree create-usb`` prints."""
    from pyostree.remote.pull_local import check_bindings, pull_local
    from pyostree.remote.summary import regenerate_summary
    from pyostree.store.reflist import write_collection_ref

    for cid, ref in refs:
        validate_collection_id(cid)
        validate_rev(ref)
    if commit is not None and len(refs) > 1:
        raise OstreeError("The --commit option can only be used when a single COLLECTION-ID REF pair "
                          "is specified")
    try:
        mount_st = os.stat(mount_path)
    except OSError as e:
        raise os_error(e, f"opendir({mount_path})") from None
    if not os.path.isdir(mount_path):
        raise OstreeError(f"opendir({mount_path}): Not a directory")
    dest_rel = destination_repo if destination_repo is not None else ".ostree/repo"
    dest_path = os.path.join(mount_path, dest_rel)
    try:
        os.makedirs(dest_path, 0o755, exist_ok=True)
    except OSError as e:
        raise os_error(e, f"mkdir({dest_rel})") from None
    dest = Repo.create(dest_path, RepoMode.ARCHIVE)
    try:
        dest_st = os.fstat(dest.dfd)
        if dest_st.st_dev != mount_st.st_dev:
            raise OstreeError("--destination-repo must be a descendent of MOUNT-PATH")
        src_st = os.fstat(src.dfd)
        if (src_st.st_dev, src_st.st_ino) == (dest_st.st_dev, dest_st.st_ino):
            raise OstreeError("--destination-repo must not be the source repository")
        if disable_fsync:
            dest.disable_fsync = True
        targets = [(cid, ref, commit if commit is not None else _source_ref(src, cid, ref))
                   for cid, ref in refs]
        # one local pull of the commits (no refs), then the mirrored collection refs
        pull_local(dest, src.path, [c for _cid, _ref, c in targets], verify_bindings=False)
        for cid, ref, checksum in targets:
            check_bindings(cid, ref, dest.load_commit(checksum), checksum)
            write_collection_ref(dest, cid, ref, checksum)
        regenerate_summary(dest)
        if dest_rel.strip("/") not in _WELL_KNOWN:
            _link_repos_d(mount_path, dest_rel, dest_st)
    finally:
        dest.close()
    n = len(refs)
    return (f"Copied {n}/{n} refs successfully from {_LQ}{os.path.abspath(src.path)}{_RQ} to "
            f"{_LQ}{dest_rel}{_RQ} repository in {_LQ}{mount_path}{_RQ}.")


def _link_repos_d(mount_path: str, dest_rel: str, dest_st: os.stat_result) -> None:
    """``.ostree/repos.d/NN-generated`` -> the repository, unless a link there already leads to it
    (libostree means to reuse one but compares the link's own inode, so it adds another)."""
    repos_d = os.path.join(mount_path, ".ostree/repos.d")
    os.makedirs(repos_d, 0o755, exist_ok=True)
    for name in sorted(os.listdir(repos_d)):
        try:
            st = os.stat(os.path.join(repos_d, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dest_st.st_dev, dest_st.st_ino):
            return
    target = os.path.join("..", "..", dest_rel)
    for i in range(100):
        try:
            os.symlink(target, os.path.join(repos_d, f"{i:02d}-generated"))
            return
        except FileExistsError:
            continue
        except OSError as e:
            raise os_error(e, f"symlinkat(.ostree/repos.d/{i:02d}-generated → {target})") from None
    raise OstreeError("Could not find an unused symlink name for the repository")
