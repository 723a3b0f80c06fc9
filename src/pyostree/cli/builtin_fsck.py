"""``ostree fsck``: check the repository for consistency."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse
from pyostree.store.fsck import FsckOptions, fsck_repo
from pyostree.store.repo import Repo

OPTIONS = [
    Opt("add-tombstones", None, FLAG, "Add tombstones for missing commits"),
    Opt("quiet", "q", FLAG, "Only print error messages"),
    Opt("all", "a", FLAG, "Don't stop on first error"),
    Opt("delete", None, FLAG, "Remove corrupted objects"),
    Opt("verify-bindings", None, FLAG, "Verify ref bindings"),
    Opt("verify-back-refs", None, FLAG, "Verify back-references (implies --verify-bindings)"),
    # listed for --help as ostree does; cli/main.py takes --repo wherever it stands
    Opt("repo", None, STRING, "Path to OSTree repository", "PATH"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, _args = parse(argv, OPTIONS, "fsck [OPTION…]", "Check the repository for consistency")
    repo: Repo = ctx.open_repo()
    opts = FsckOptions(quiet=o.quiet, delete=o.delete, all=o.all, add_tombstones=o.add_tombstones,
                       verify_bindings=o.verify_bindings, verify_back_refs=o.verify_back_refs)
    fsck_repo(repo, opts)
    return 0
