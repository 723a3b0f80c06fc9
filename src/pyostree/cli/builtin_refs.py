"""``ostree refs``: list, create, alias and delete refs."""

from __future__ import annotations

import os

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, Options, parse
from pyostree.errors import OstreeError
from pyostree.store import refs as refsmod
from pyostree.store.reflist import (
    list_refs_ext,
    resolve_rev_local,
    write_collection_ref,
)
from pyostree.store.repo import Repo

OPTIONS = [
    Opt("delete", None, FLAG, "Delete refs which match PREFIX, rather than listing them"),
    Opt("list", None, FLAG, "Do not remove the prefix from the refs"),
    Opt("alias", "A", FLAG, "If used with --create, create an alias, otherwise just list aliases"),
    Opt("create", None, STRING, "Create a new ref for an existing commit", "NEWREF"),
    Opt("collections", "c", FLAG, "Enable listing collection IDs for refs"),
    Opt("force", None, FLAG, "Overwrite existing refs when creating"),
]


def _existing(repo: Repo, refspec: str) -> str | None:
    """What ``--create=REF`` would overwrite (None if nothing, or a directory is in the way)."""
    return resolve_rev_local(repo, refspec)


def _do_collections(repo: Repo, o: Options, prefix: str | None) -> None:
    from pyostree.remote.remotes import list_collection_refs  # reads remote config: only here

    found = list_collection_refs(repo, None if o.create else prefix)
    if not o.delete and not o.create:
        for cid, name in sorted(found):
            print(f"({cid}, {name})")
        return
    if o.create:
        if not o.force and _existing(repo, o.create) is not None:
            raise OstreeError(f"--create specified but ref {o.create} already exists")
        assert prefix is not None
        checksum = repo.resolve_rev(prefix)
        assert checksum is not None
        cid, _, name = o.create.partition(":")
        refsmod.validate_collection_id(cid)
        refsmod.validate_rev(name)
        write_collection_ref(repo, cid, name, checksum)
        return
    for cid, name in sorted(found):
        write_collection_ref(repo, cid, name, None)


def _do_ref(repo: Repo, o: Options, prefix: str | None) -> None:
    if o.collections:
        _do_collections(repo, o, prefix)
        return
    aliases: dict[str, str] = {}
    if o.alias or o.delete:
        aliases = list_refs_ext(repo, None, aliases_only=True)
    is_list = not (o.delete or o.create)
    if o.delete or o.list or (not o.create and o.alias):
        found = list_refs_ext(repo, prefix, cut_prefix=False, aliases_only=bool(o.alias))
    elif o.create:
        found = list_refs_ext(repo, None)
    else:
        found = list_refs_ext(repo, prefix)
    if is_list:
        for name in sorted(found):
            print(f"{name} -> {found[name]}" if o.alias else name)
        return
    if o.create:
        assert prefix is not None
        replacing_alias = bool(o.alias) and o.create in aliases
        if not replacing_alias and not o.force and _existing(repo, o.create) is not None:
            raise OstreeError(f"--create specified but ref {o.create} already exists")
        remote, ref = refsmod.parse_refspec(o.create)
        if o.alias:
            if remote:
                raise OstreeError(f"Cannot create alias to remote ref: {remote}")
            if prefix not in found:
                raise OstreeError(f"Cannot create alias to non-existent ref: {prefix}")
            refsmod.create_alias(repo, ref, prefix)
        else:
            checksum = repo.resolve_rev(prefix)
            assert checksum is not None
            _write(repo, remote, ref, checksum)
        return
    # delete
    for refspec in sorted(found):
        remote, ref = refsmod.parse_refspec(refspec)
        for alias, target in aliases.items():
            if target == ref:
                raise OstreeError(f"Ref '{ref}' has an active alias: '{alias}'")
        _write(repo, remote, ref, None)


def _write(repo: Repo, remote: str | None, ref: str, checksum: str | None) -> None:
    rel = f"refs/remotes/{remote}/{ref}" if remote is not None else f"refs/heads/{ref}"
    if checksum is not None:
        # as _ostree_repo_write_ref: a file in the way of a parent, or a directory in the
        # way of the ref itself, is a conflict
        parts = rel.split("/")
        for i in range(3 if remote is not None else 2, len(parts)):
            p = "/".join(parts[:i])
            if os.path.lexists(f"/proc/self/fd/{repo.dfd}/{p}") and \
                    not os.path.isdir(f"/proc/self/fd/{repo.dfd}/{p}"):
                raise OstreeError(f"openat({rel}): Not a directory")
        full = f"/proc/self/fd/{repo.dfd}/{rel}"
        if os.path.isdir(full) and not os.path.islink(full):
            entries = sorted(os.listdir(full))
            if entries:
                raise OstreeError(f"Conflict: {entries[0]} exists under {ref} when attempting write")
            os.rmdir(full)
        if remote is None and refsmod.is_alias(repo, ref) is not None:
            # --force over an alias replaces the symlink with a real ref
            os.unlink(rel, dir_fd=repo.dfd)
    refsmod.write_ref(repo, remote, ref, checksum)


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "refs [OPTION…] [PREFIX]", "List refs")
    repo = ctx.open_repo()
    if o.create == "":
        refsmod.parse_refspec(o.create)  # an error: "--create=" names no ref
    if args:
        if o.create and len(args) > 1:
            raise OstreeError("You must specify only 1 existing ref when creating a new ref")
        for a in args:
            _do_ref(repo, o, a)
    else:
        if o.delete:
            raise OstreeError("At least one PREFIX is required when deleting refs")
        if o.create:
            raise OstreeError("You must specify a revision when creating a new ref")
        _do_ref(repo, o, None)
    return 0
