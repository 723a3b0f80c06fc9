"""Listing refs as ``ostree refs`` does: prefixes, remotes, aliases and collections.

This follows libostree's ``ostree_repo_list_refs_ext`` and
``ostree_repo_list_collection_refs``: names that are not valid ref fragments
(``.rsync_info`` files and the like) are skipped, a prefix may be a directory
(list what is below it) or a single ref, ``REMOTE:`` and ``REMOTE:.`` list one
remote's refs, and symlinks in ``refs/heads`` are aliases.
"""

from __future__ import annotations

import os
import stat

from pyostree.errors import OstreeError, os_error
from pyostree.store.refs import REF_FRAGMENT_RE, parse_refspec, validate_remote_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo



def _read_checksum(repo: Repo, rel: str) -> str:
    try:
        with open(f"/proc/self/fd/{repo.dfd}/{rel}", "rb") as f:
            raw = f.read(4096)
    except OSError as e:
        raise os_error(e, f"Listing refs: {rel}") from None
    try:
        return raw.decode("utf-8").rstrip()
    except UnicodeDecodeError:
        raise OstreeError(f"Listing refs: {rel}: invalid UTF-8") from None


def enumerate_refs(repo: Repo, base: str, sub: str, name_prefix: str, aliases_only: bool,
               out: dict[str, str], key_prefix: str = "") -> None:
    """Recurse below ``base/sub``; ref names are ``name_prefix`` + path below ``base/sub``."""
    d = f"{base}/{sub}" if sub else base
    try:
        entries = sorted(os.scandir(f"/proc/self/fd/{repo.dfd}/{d}"), key=lambda e: e.name)
    except FileNotFoundError:
        return
    except OSError as e:
        raise os_error(e, f"Listing refs: opendir({d})") from None
    for ent in entries:
        if not REF_FRAGMENT_RE.match(ent.name):
            continue
        name = name_prefix + ent.name
        st = ent.stat(follow_symlinks=False)
        rel = f"{d}/{ent.name}"
        if stat.S_ISDIR(st.st_mode):
            enumerate_refs(repo, base, f"{sub}/{ent.name}" if sub else ent.name, name + "/",
                       aliases_only, out, key_prefix)
        elif aliases_only and stat.S_ISLNK(st.st_mode):
            target = os.readlink(f"/proc/self/fd/{repo.dfd}/{rel}")
            while target.startswith("../"):
                target = target[3:]
            out[key_prefix + name] = target
        elif (not aliases_only and stat.S_ISREG(st.st_mode)) or stat.S_ISLNK(st.st_mode):
            out[key_prefix + name] = _read_checksum(repo, rel)


def list_refs_ext(repo: Repo, prefix: str | None = None, *, cut_prefix: bool = True,
                  aliases_only: bool = False, exclude_remotes: bool = False) -> dict[str, str]:
    """Refs as ``{name: checksum}`` (``{alias: target}`` with *aliases_only*).

    Remote refs are named ``remote:ref``.  With a *prefix* naming a directory,
    *cut_prefix* strips it from the names (``ostree refs PREFIX``), otherwise
    names are complete (``ostree refs --list PREFIX``).
    """
    out: dict[str, str] = {}
    if prefix is None:
        enumerate_refs(repo, "refs/heads", "", "", aliases_only, out)
        if not exclude_remotes:
            root = f"/proc/self/fd/{repo.dfd}/refs/remotes"
            try:
                remotes = sorted(os.listdir(root))
            except OSError as e:
                raise os_error(e, "Listing refs: opendir(refs/remotes)") from None
            for r in remotes:
                if os.path.isdir(f"{root}/{r}") and not os.path.islink(f"{root}/{r}"):
                    enumerate_refs(repo, f"refs/remotes/{r}", "", "", aliases_only, out, r + ":")
        return out
    remote: str | None = None
    ref_prefix: str | None = None
    if prefix.endswith(":") or prefix.endswith(":."):
        r = prefix[:prefix.rindex(":")]
        try:
            validate_remote_name(r)
            remote, ref_prefix = r, "."
        except OstreeError:
            pass
    if ref_prefix is None:
        remote, ref_prefix = parse_refspec(prefix)
    if remote is not None and not exclude_remotes:
        base = f"refs/remotes/{remote}"
        key_prefix = remote + ":"
    else:
        base = "refs/heads"
        key_prefix = ""
    path = os.path.normpath(f"{base}/{ref_prefix}")
    try:
        st = os.stat(f"/proc/self/fd/{repo.dfd}/{path}")
    except (FileNotFoundError, NotADirectoryError):
        return out
    except OSError as e:
        raise os_error(e, f"Listing refs: stat({path})") from None
    if stat.S_ISDIR(st.st_mode):
        if cut_prefix:
            enumerate_refs(repo, path, "", "", aliases_only, out, key_prefix)
        else:
            name_prefix = "" if ref_prefix == "." else ref_prefix.rstrip("/") + "/"
            enumerate_refs(repo, path, "", name_prefix, aliases_only, out, key_prefix)
    else:
        out[key_prefix + ref_prefix] = _read_checksum(repo, path)
    return out


def write_collection_ref(repo: Repo, collection_id: str, ref: str, checksum: str | None) -> None:
    """Set or delete a ref with a collection ID: the repo's own goes to refs/heads."""
    from pyostree.store.refs import write_ref

    if collection_id == repo.collection_id:
        write_ref(repo, None, ref, checksum)
    else:
        write_ref(repo, None, ref, checksum, collection_id=collection_id)


def resolve_rev_local(repo: Repo, refspec: str) -> str | None:
    """``ostree_repo_resolve_rev_ext``: like resolve_rev, but ``REF`` never falls back to remotes.

    Returns None if nothing is found (or a directory is in the way).
    """
    from pyostree.store import objects as obj

    if obj.is_valid_checksum(refspec):
        return refspec
    if refspec.endswith("^"):
        return repo.resolve_rev(refspec, allow_noent=True)
    remote, ref = parse_refspec(refspec)
    key = (remote, ref)
    if key in repo.txn_refs:
        return repo.txn_refs[key]
    rel = f"refs/remotes/{remote}/{ref}" if remote is not None else f"refs/heads/{ref}"
    path = f"/proc/self/fd/{repo.dfd}/{rel}"
    if os.path.isfile(path):
        csum = _read_checksum(repo, rel)
        if not obj.is_valid_checksum(csum):
            raise OstreeError(f"Invalid checksum '{csum}' in ref {rel}")
        return csum
    if repo.parent is not None:
        return resolve_rev_local(repo.parent, refspec)
    return None
