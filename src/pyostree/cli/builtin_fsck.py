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
    _check_composefs(repo, bool(o.quiet), bool(o.all))
    return 0


def _check_composefs(repo: Repo, quiet: bool, keep_going: bool) -> None:
    """Rebuild the composefs image of each commit carrying ``ostree.composefs.digest.v0``."""
    import sys

    from pyostree.errors import OstreeError
    from pyostree.store.fsck import commit_state, list_commit_objects

    todo = []
    for csum in list_commit_objects(repo):
        if commit_state(repo, csum)[0]:
            continue
        if any(k == "ostree.composefs.digest.v0" for k, _ in repo.load_commit(csum).metadata):
            todo.append(csum)
    if not todo:
        return
    from pyostree.composefs.checkout import Verity, build_image
    from pyostree.composefs.image import commit_digest_metadata

    if not quiet:
        print(f"Verifying composefs digests of {len(todo)} commits...")
    bad = 0
    for csum in todo:
        try:
            passthrough = commit_digest_metadata(repo, csum)[1]
            build_image(repo, csum, None, verity=Verity.YES, passthrough_whiteouts=passthrough)
        except OstreeError as e:
            sys.stderr.write(f"error: Commit {csum}: composefs: {e}\n")
            bad += 1
            if not keep_going:
                break
    if bad:
        raise OstreeError("Repository corruption encountered")
