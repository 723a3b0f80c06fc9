"""Refs: named pointers to commits under ``refs/heads``, ``refs/remotes``, ``refs/mirrors``.

A ref file holds a 64-character checksum and a newline.  A local ref may also
be a symlink to another ref in ``refs/heads`` (an alias).
"""

from __future__ import annotations

import errno
import os
import re

from pyostree.errors import NotFoundError, OstreeError, os_error
from pyostree.store import objects as obj

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo

_REF_COMPONENT = r"[\w\d][-._\w\d]*"
_REF_RE = re.compile(rf"^{_REF_COMPONENT}(/{_REF_COMPONENT})*$")
REF_FRAGMENT_RE = re.compile(r"^[\w\d][-._\w\d]*$")
"""One path component of a ref (libostree's _ostree_validate_ref_fragment); also a remote name."""
_REMOTE_RE = REF_FRAGMENT_RE


def validate_rev(ref: str) -> None:
    if not _REF_RE.match(ref):
        raise OstreeError(f"Invalid ref name {ref}")


def validate_remote_name(remote: str) -> None:
    if not _REMOTE_RE.match(remote):
        raise OstreeError(f"Invalid remote name {remote}")


def parse_refspec(refspec: str) -> tuple[str | None, str]:
    """``remote:ref`` or ``ref`` -> (remote, ref)."""
    remote: str | None
    if ":" in refspec:
        remote, _, ref = refspec.partition(":")
        validate_remote_name(remote)
    else:
        remote, ref = None, refspec
    if not _REF_RE.match(ref):
        raise OstreeError(f"Invalid refspec {refspec}")
    return remote, ref


def _ref_relpath(remote: str | None, ref: str) -> str:
    if remote is None:
        return f"refs/heads/{ref}"
    return f"refs/remotes/{remote}/{ref}"


def _read_ref_file(repo: Repo, rel: str) -> str | None:
    try:
        fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
    except FileNotFoundError:
        return None
    except (NotADirectoryError, IsADirectoryError):
        return None
    except OSError as e:
        raise os_error(e, f"Opening ref {rel}") from None
    try:
        try:
            raw = os.read(fd, 256)
        except IsADirectoryError:
            return None
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "replace").strip()
    if not obj.is_valid_checksum(text):
        raise OstreeError(f"Corrupted ref {rel}: invalid checksum '{text[:80]}'")
    return text


def read_ref(repo: Repo, remote: str | None, ref: str) -> str | None:
    """The checksum a ref points to, or None if it does not exist."""
    key = (remote, ref)
    if key in repo.txn_refs:
        return repo.txn_refs[key]
    if remote is None:
        for rel in (f"refs/heads/{ref}",):
            c = _read_ref_file(repo, rel)
            if c:
                return c
        # a ref may also be found under remotes as remote/ref, or mirrors
        c = _read_ref_file(repo, f"refs/remotes/{ref}")
        if c:
            return c
        # ...or as REF of any remote (libostree's find_ref_in_remotes)
        try:
            remotes = sorted(os.listdir(f"/proc/self/fd/{repo.dfd}/refs/remotes"))
        except (FileNotFoundError, NotADirectoryError):
            remotes = []
        for r in remotes:
            c = _read_ref_file(repo, f"refs/remotes/{r}/{ref}")
            if c:
                return c
        return None
    return _read_ref_file(repo, _ref_relpath(remote, ref))


def _resolve_partial(repo: Repo, prefix: str) -> str | None:
    if not (4 <= len(prefix) < 64) or any(c not in "0123456789abcdef" for c in prefix):
        return None
    matches: set[str] = set()
    r: Repo | None = repo
    while r is not None:
        try:
            names = os.listdir(f"/proc/self/fd/{r._objects_dfd}/{prefix[:2]}")
        except FileNotFoundError:
            names = []
        for n in names:
            if n.endswith(".commit") and (prefix[:2] + n[:-7]).startswith(prefix):
                matches.add(prefix[:2] + n[:-7])
        r = r.parent
    if len(matches) > 1:
        raise OstreeError(f"Refspec {prefix} is ambiguous")
    return matches.pop() if matches else None


def resolve_rev(repo: Repo, rev: str, allow_noent: bool = False) -> str | None:
    """Resolve a checksum, partial checksum, ``ref``, ``remote:ref`` or ``REV^``."""
    if obj.is_valid_checksum(rev):
        return rev
    partial = _resolve_partial(repo, rev)
    if partial:
        return partial
    if rev.endswith("^"):
        parent_of = resolve_rev(repo, rev[:-1], allow_noent)
        if parent_of is None:
            return None
        commit = repo.load_commit(parent_of)
        if not commit.parent:
            raise OstreeError(f"Commit {parent_of} has no parent")
        return commit.parent
    remote, ref = parse_refspec(rev)
    c = read_ref(repo, remote, ref)
    if c is None and remote is None:
        # mirrors and collection refs
        c = _find_in_mirrors(repo, ref)
    if c is None and repo.parent is not None:
        return resolve_rev(repo.parent, rev, allow_noent)
    if c is None and not allow_noent:
        raise NotFoundError(f"Refspec '{rev}' not found")
    return c


def _find_in_mirrors(repo: Repo, ref: str) -> str | None:
    base = "refs/mirrors"
    try:
        colls = os.listdir(f"/proc/self/fd/{repo.dfd}/{base}")
    except FileNotFoundError:
        return None
    for coll in sorted(colls):
        c = _read_ref_file(repo, f"{base}/{coll}/{ref}")
        if c:
            return c
    return None


def _walk_refs(repo: Repo, base: str, prefix: str = "") -> list[tuple[str, str]]:
    """(ref name, checksum) for every ref file below *base* (relative to the repo)."""
    out: list[tuple[str, str]] = []
    root = f"/proc/self/fd/{repo.dfd}/{base}"
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return out
    except OSError as e:
        raise os_error(e, f"Listing refs: opendir({base})") from None
    for ent in sorted(entries, key=lambda x: x.name):
        if not REF_FRAGMENT_RE.match(ent.name):
            # not a ref: a writer's temporary file (".main.XXXX" left by a kill), rsync's
            # .rsync_info, ... libostree skips these too (ostree issue 1285)
            continue
        name = prefix + ent.name
        if ent.is_dir(follow_symlinks=False):
            out.extend(_walk_refs(repo, f"{base}/{ent.name}", name + "/"))
        elif ent.is_file(follow_symlinks=True) or ent.is_symlink():
            c = _read_ref_file(repo, f"{base}/{ent.name}")
            if c:
                out.append((name, c))
    return out


def list_refs(repo: Repo, prefix: str | None = None, *, remotes: bool = True,
              mirrors: bool = False) -> dict[str, str]:
    """All refs: ``ref`` for local ones, ``remote:ref`` for remote ones."""
    if not os.path.isdir(f"/proc/self/fd/{repo.dfd}/refs/remotes"):
        raise OstreeError("Listing refs: opendir(refs/remotes): No such file or directory",
                          errno=errno.ENOENT)
    result: dict[str, str] = {}
    for name, c in _walk_refs(repo, "refs/heads"):
        result[name] = c
    if remotes:
        root = f"/proc/self/fd/{repo.dfd}/refs/remotes"
        for remote in sorted(os.listdir(root)):
            for name, c in _walk_refs(repo, f"refs/remotes/{remote}"):
                result[f"{remote}:{name}"] = c
    if mirrors:
        root = f"/proc/self/fd/{repo.dfd}/refs/mirrors"
        try:
            colls = sorted(os.listdir(root))
        except FileNotFoundError:
            colls = []
        for coll in colls:
            for name, c in _walk_refs(repo, f"refs/mirrors/{coll}"):
                result[f"({coll}, {name})"] = c
    if prefix:
        p = prefix.rstrip("/")
        result = {k: v for k, v in result.items() if k == p or k.startswith(p + "/")}
    return result


def is_alias(repo: Repo, ref: str) -> str | None:
    """If refs/heads/REF is a symlink alias, the ref it points to."""
    rel = f"refs/heads/{ref}"
    try:
        target = os.readlink(rel, dir_fd=repo.dfd)
    except OSError:
        return None
    base = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if base.startswith("refs/heads/"):
        return base[len("refs/heads/"):]
    return None


def write_ref(repo: Repo, remote: str | None, ref: str, checksum: str | None, *,
              collection_id: str | None = None) -> None:
    """Create, update or (checksum None) delete a ref atomically."""
    from pyostree.store.files import write_file_atomic

    validate_rev(ref)
    if collection_id is not None:
        rel = f"refs/mirrors/{collection_id}/{ref}"
    else:
        if remote is not None:
            validate_remote_name(remote)
        rel = _ref_relpath(remote, ref)
    if checksum is None:
        try:
            os.unlink(rel, dir_fd=repo.dfd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise OstreeError(f"Ref {ref} is a directory") from None
        # prune empty parent dirs below refs/heads etc.
        d = os.path.dirname(rel)
        while d.count("/") >= 2:
            try:
                os.rmdir(d, dir_fd=repo.dfd)
            except OSError:
                break
            d = os.path.dirname(d)
        return
    obj.validate_checksum(checksum)
    parent = os.path.dirname(rel)
    try:
        os.makedirs(f"/proc/self/fd/{repo.dfd}/{parent}", exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OstreeError(f"Creating ref {ref}: a ref is a prefix of another ref") from None
    alias_of = is_alias(repo, ref) if remote is None and collection_id is None else None
    if alias_of is not None:
        raise OstreeError(f"Cannot update ref '{ref}': it is an alias of '{alias_of}'")
    write_file_atomic(repo.path, rel, (checksum + "\n").encode(), fsync=not repo.disable_fsync,
                      dir_fd=repo.dfd)


def set_ref(repo: Repo, remote: str | None, ref: str, checksum: str | None) -> None:
    """Set a ref now, or at commit of the open transaction."""
    if remote is None and ":" in ref:
        # a refspec, as ostree_repo_transaction_set_ref accepts
        remote, ref = parse_refspec(ref)
    if repo.in_transaction:
        repo.txn_refs[(remote, ref)] = checksum
    else:
        write_ref(repo, remote, ref, checksum)


def create_alias(repo: Repo, alias: str, target: str) -> None:
    validate_rev(alias)
    validate_rev(target)
    rel = f"refs/heads/{alias}"
    d = os.path.dirname(rel)
    os.makedirs(f"/proc/self/fd/{repo.dfd}/{d}", exist_ok=True)
    depth = alias.count("/")
    link = "../" * depth + target if depth else target
    tmp = rel + ".tmp-alias"
    try:
        os.unlink(tmp, dir_fd=repo.dfd)
    except FileNotFoundError:
        pass
    os.symlink(link, tmp, dir_fd=repo.dfd)
    os.rename(tmp, rel, src_dir_fd=repo.dfd, dst_dir_fd=repo.dfd)


_COLLECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$")


def validate_collection_id(cid: str) -> None:
    if len(cid) > 255 or not _COLLECTION_RE.match(cid):
        raise OstreeError(f"Invalid collection ID {cid}")
