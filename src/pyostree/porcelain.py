"""The porcelain: what a Python user does with OSTree, named as the ``pyostree`` command names it.

``import pyostree`` exposes every function here (``pyostree.commit(...)``), loaded on first use.
Each call takes a :class:`~pyostree.store.repo.Repo` (from :func:`init` or :func:`open_repo`, a
context manager) or, for convenience, a repository path, and raises
:class:`~pyostree.errors.OstreeError` (``str(e)`` is the message the CLI prints after ``error:``)::

    import pyostree

    repo = pyostree.init("repo", mode="bare-user")
    checksum = pyostree.commit(repo, "rootfs", branch="os/main", subject="Build 1")
    pyostree.checkout(repo, "os/main", "deploy-1", user_mode=True)

The plumbing below it (``pyostree.store``, ``pyostree.tree``, ``pyostree.remote``, ``pyostree.oci``,
``pyostree.sysroot``) stays available for what the porcelain does not cover; see docs/api.md for what
is public and what is internal.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence

from pyostree.errors import NotFoundError, OstreeError
from pyostree.oci.image import ImportResult
from pyostree.remote.pull import HttpPullStats, PullOptions
from pyostree.remote.pull_local import PullStats
from pyostree.store import gvariant
from pyostree.store import refs as _refs
from pyostree.store.fsck import FsckOptions, fsck_repo
from pyostree.store.objects import Commit
from pyostree.store.prune import PruneOptions, PruneResult
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree.checkout import CheckoutMode, CheckoutOptions, OverwriteMode, checkout_tree
from pyostree.tree.commit import CommitModifier, commit_directory
from pyostree.tree.diff import DiffResult, diff_dirs, open_side
from pyostree.tree.treewalk import Node, commit_root, resolve

__all__ = [
    "CheckoutOptions", "Commit", "CommitModifier", "DiffResult", "ImportResult", "LogEntry", "Node",
    "OstreeError", "PullOptions", "PullStats", "Repo", "RepoMode", "cat", "checkout", "commit",
    "container_import", "diff", "fsck", "init", "list_refs", "log", "ls", "open_repo", "prune",
    "pull", "pull_local", "resolve_rev", "set_ref", "stat",
]

RepoLike = Repo | str
"""A :class:`Repo`, or the path of one (opened for the call and closed after it)."""

MetadataValue = str | bytes | bool | int | float | Sequence[str]


# ---------------------------------------------------------------------------
# repositories


def init(path: str, mode: str | RepoMode = RepoMode.BARE_USER, *, collection_id: str | None = None) -> Repo:
    """Create a repository at *path* (``pyostree init --mode=MODE``) and return it open.

    *mode* is ``bare``, ``bare-user``, ``bare-user-only`` or ``archive`` (``archive-z2``). An
    existing repository of the same mode is opened; one of another mode is an error.
    """
    m = mode if isinstance(mode, RepoMode) else RepoMode.parse(mode)
    return Repo.create(path, m, collection_id=collection_id)


def open_repo(path: str) -> Repo:
    """Open the repository at *path*; use it as a context manager to close it."""
    return Repo.open(path)


class _Opened:
    """``with _Opened(repo_or_path) as repo``: open a path for one call, leave a Repo as it is."""

    def __init__(self, repo: RepoLike) -> None:
        self._own = not isinstance(repo, Repo)
        self.repo = Repo.open(repo) if isinstance(repo, str) else repo

    def __enter__(self) -> Repo:
        return self.repo

    def __exit__(self, *exc: object) -> None:
        if self._own:
            self.repo.close()


# ---------------------------------------------------------------------------
# refs


def resolve_rev(repo: RepoLike, rev: str) -> str:
    """The commit checksum *rev* names (``pyostree rev-parse``): a ref, ``REMOTE:REF``, a checksum
    or a unique checksum prefix, with ``^`` suffixes for parents."""
    with _Opened(repo) as r:
        checksum = _refs.resolve_rev(r, rev)
    assert checksum is not None  # allow_noent is off: a missing rev raised
    return checksum


def list_refs(repo: RepoLike, prefix: str | None = None) -> dict[str, str]:
    """Refs (``REF`` and ``REMOTE:REF``) and their commits, as ``pyostree refs`` lists them."""
    with _Opened(repo) as r:
        return dict(sorted(_refs.list_refs(r, prefix).items()))


def set_ref(repo: RepoLike, ref: str, checksum: str | None) -> None:
    """Point *ref* (``REF`` or ``REMOTE:REF``) at *checksum*; None deletes it (``refs --create``,
    ``refs --delete``)."""
    remote, name = _refs.parse_refspec(ref)
    with _Opened(repo) as r:
        if checksum is not None:
            checksum = resolve_rev(r, checksum)
        _refs.set_ref(r, remote, name, checksum)


# ---------------------------------------------------------------------------
# commit and checkout


def _metadata_variant(key: str, value: MetadataValue) -> gvariant.Variant:
    if isinstance(value, bool):
        return gvariant.Variant("b", value)
    if isinstance(value, int):
        return gvariant.Variant("t" if value >= 0 else "x", value)
    if isinstance(value, float):
        return gvariant.Variant("d", value)
    if isinstance(value, str):
        return gvariant.Variant("s", value)
    if isinstance(value, (bytes, bytearray)):
        return gvariant.Variant("ay", bytes(value))
    if all(isinstance(v, str) for v in value):
        return gvariant.Variant("as", list(value))
    raise OstreeError(f"Metadata key {key}: unsupported value {value!r}")


def commit(repo: RepoLike, path: str, *, branch: str | None = None, subject: str = "",
           body: str = "", metadata: Mapping[str, MetadataValue] | None = None,
           parent: str | None = None, timestamp: int | None = None, owner_uid: int | None = None,
           owner_gid: int | None = None, canonical_permissions: bool = False,
           skip_xattrs: bool = False) -> str:
    """Commit directory *path* (``pyostree commit``) and return the commit checksum.

    *branch* is moved to the new commit, whose parent is the branch's old commit unless *parent*
    is given. *metadata* values become GVariants as ``--add-metadata`` would type them (``str``
    ``s``, ``bytes`` ``ay``, ``bool`` ``b``, ``int`` ``t``/``x``, ``float`` ``d``, a list of ``str``
    ``as``); *timestamp* defaults to now (or ``SOURCE_DATE_EPOCH``).
    """
    modifier = None
    if owner_uid is not None or owner_gid is not None or canonical_permissions or skip_xattrs:
        modifier = CommitModifier(owner_uid=owner_uid, owner_gid=owner_gid, skip_xattrs=skip_xattrs,
                                  canonical_permissions=canonical_permissions)
    md = [(k, _metadata_variant(k, v)) for k, v in sorted((metadata or {}).items())]
    with _Opened(repo) as r:
        if parent is not None:
            parent = resolve_rev(r, parent)
        return commit_directory(r, path, subject=subject, body=body, branch=branch, parent=parent,
                                metadata=md, modifier=modifier, timestamp=timestamp)


def checkout(repo: RepoLike, rev: str, destination: str, *, user_mode: bool = False,
             union: bool = False, subpath: str = "/", force_copy: bool = False,
             process_passthrough_whiteouts: bool = False,
             options: CheckoutOptions | None = None) -> None:
    """Check out *rev* into *destination* (``pyostree checkout``), hardlinking where it can.

    *user_mode* is ``-U`` (no owners, no special modes), *union* ``--union``,
    *process_passthrough_whiteouts* turns ``.ostree-wh.NAME`` into overlayfs whiteouts (the
    container-storage case). *options* gives every other flag and overrides the keywords.
    """
    o = options or CheckoutOptions(
        mode=CheckoutMode.USER if user_mode else CheckoutMode.NONE,
        overwrite=OverwriteMode.UNION_FILES if union else OverwriteMode.NONE, subpath=subpath,
        force_copy=force_copy, process_passthrough_whiteouts=process_passthrough_whiteouts)
    with _Opened(repo) as r:
        checkout_tree(r, resolve_rev(r, rev), destination, o)


# ---------------------------------------------------------------------------
# reading commits


class LogEntry:
    """One commit of :func:`log`: its checksum and the parsed commit object."""

    __slots__ = ("checksum", "commit")

    def __init__(self, checksum: str, commit: Commit) -> None:
        self.checksum = checksum
        self.commit = commit

    def __repr__(self) -> str:
        return f"LogEntry({self.checksum!r}, subject={self.commit.subject!r})"


def log(repo: Repo, rev: str) -> Iterator[LogEntry]:
    """*rev*'s commit and its ancestors, newest first, as far as the repository has them
    (``pyostree log``; a pull with ``--depth`` leaves older parents out)."""
    checksum: str | None = resolve_rev(repo, rev)
    while checksum is not None:
        try:
            c = repo.load_commit(checksum)
        except NotFoundError:
            return
        yield LogEntry(checksum, c)
        checksum = c.parent


def stat(repo: Repo, rev: str, path: str = "/") -> Node:
    """The file or directory at *path* in commit *rev*: a :class:`~pyostree.tree.treewalk.Node`
    with ``info`` (mode, uid, gid, size, symlink target, xattrs), ``children()`` and ``open()``."""
    root = commit_root(repo, rev)
    return resolve(root, root, path)


def ls(repo: Repo, rev: str, path: str = "/") -> list[Node]:
    """The entries of directory *path* in commit *rev* (``pyostree ls``), files then directories."""
    node = stat(repo, rev, path)
    if not node.is_dir:
        return [node]
    return list(node.children())


def cat(repo: Repo, rev: str, path: str) -> bytes:
    """The content of regular file *path* in commit *rev* (``pyostree cat``)."""
    node = stat(repo, rev, path)
    with node.open() as f:
        data = f.read()
    return data


def diff(repo: RepoLike, rev_a: str, rev_b: str) -> DiffResult:
    """Paths modified, removed and added from *rev_a* to *rev_b* (``pyostree diff``); a side that
    starts with ``/`` or ``./`` is a directory on disk. ``format()`` gives ostree's text."""
    with _Opened(repo) as r:
        return diff_dirs(r, open_side(r, rev_a), open_side(r, rev_b))


# ---------------------------------------------------------------------------
# maintenance


def fsck(repo: RepoLike, *, delete: bool = False) -> int:
    """Verify every object reachable from the refs (``pyostree fsck``); returns the number of
    commits checked and raises :class:`OstreeError` naming what is corrupt."""
    sink = io.StringIO()
    with _Opened(repo) as r:
        return fsck_repo(r, FsckOptions(quiet=True, delete=delete), out=sink, err=sink)


def prune(repo: RepoLike, *, refs_only: bool = False, depth: int = -1,
          keep_younger_than: int | None = None, dry_run: bool = False) -> PruneResult:
    """Delete objects no ref reaches (``pyostree prune``): *refs_only* keeps only what refs
    reach, *depth* limits history kept per ref, *keep_younger_than* (seconds since the epoch)
    keeps newer commits. Returns counts and freed bytes."""
    from pyostree.store.prune import prune as _prune

    opts = PruneOptions(refs_only=refs_only, no_prune=dry_run, depth=depth,
                        keep_younger_than=keep_younger_than)
    with _Opened(repo) as r:
        return _prune(r, opts)


# ---------------------------------------------------------------------------
# moving commits


def pull(repo: RepoLike, remote_or_url: str, refs: list[str] | None = None,
         options: PullOptions | None = None) -> HttpPullStats:
    """Pull *refs* from a configured remote or a URL (``pyostree pull``): HTTP(S) or file://."""
    from pyostree.remote.pull import pull as _pull

    with _Opened(repo) as r:
        return _pull(r, remote_or_url, refs, options)


def pull_local(repo: RepoLike, src_path: str, refs: list[str] | None = None, *,
               remote: str | None = None, untrusted: bool = False) -> PullStats:
    """Copy *refs* (all when None) with their objects from the repository at *src_path*
    (``pyostree pull-local``); refs become ``REMOTE:REF`` when *remote* is given."""
    from pyostree.remote.pull_local import pull_local as _pull_local

    with _Opened(repo) as r:
        return _pull_local(r, src_path, refs, remote=remote, untrusted=untrusted)


def container_import(repo: RepoLike, source: str, ref: str) -> ImportResult:
    """Import a container image (``oci:DIR[:TAG]``, ``oci-archive:``, ``docker-archive:``, ...)
    layer by layer (``pyostree container import``); *ref* gets the flattened commit."""
    from pyostree.oci.image import import_image

    with _Opened(repo) as r:
        return import_image(r, source, ref)
