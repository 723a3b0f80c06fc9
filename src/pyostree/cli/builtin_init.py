"""``ostree init``: initialize a new empty repository."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import STRING, Opt, parse
from pyostree.store.repo import Repo, RepoMode

OPTIONS = [
    Opt("mode", None, STRING, "Initialize repository in given mode (bare, bare-user, bare-user-only, archive)"),
    Opt("collection-id", None, STRING, "Globally unique ID for this repository as a collection of refs", "COLLECTION-ID"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, _args = parse(argv, OPTIONS, "init [OPTION…]", "Initialize a new empty repository")
    mode = RepoMode.parse(o.mode) if o.mode is not None else RepoMode.BARE  # "--mode=" is invalid, as ostree
    if o.collection_id is not None:
        from pyostree.store.refs import validate_collection_id

        validate_collection_id(o.collection_id)
    repo = Repo.create(ctx.find_repo_path(), mode, o.collection_id)
    repo.close()
    return 0
