"""``ostree refs``: list, create, alias and delete refs."""

from __future__ import annotations

from .. import refs as refsmod
from ..errors import OstreeError
from ..reflist import list_collection_refs, list_refs_ext, write_collection_ref
from ..repo import Repo
from .main import Context
from .options import FLAG, STRING, Opt, Options, parse

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
    try:
        return repo.resolve_rev(refspec, allow_noent=True)
    except IsADirectoryError:
        return None


def _do_collections(repo: Repo, o: Options, prefix: str | None) -> None:
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
    if checksum is not None and remote is None:
        # --force over an alias replaces the symlink with a real ref
        if refsmod.is_alias(repo, ref) is not None:
            import os

            os.unlink(f"refs/heads/{ref}", dir_fd=repo.dfd)
    try:
        refsmod.write_ref(repo, remote, ref, checksum)
    except OstreeError as e:
        if "prefix of another ref" in str(e) or "is a directory" in str(e):
            raise OstreeError(f"Ref {ref} conflicts with an existing ref or directory") from None
        raise


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "refs [OPTION…] [PREFIX]", "List refs")
    repo = ctx.open_repo()
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
