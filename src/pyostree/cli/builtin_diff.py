"""``ostree diff``: compare two commits, or a commit and a directory."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, INT, Opt, help_text, parse
from pyostree.errors import OstreeError
from pyostree.store.dump import format_size
from pyostree.tree.diff import (
    DiffOptions,
    diff_dirs,
    object_storage_size,
    open_side,
    reachable_objects,
)

OPTIONS = [
    Opt("stats", None, FLAG, "Print various statistics"),
    Opt("fs-diff", None, FLAG, "Print filesystem diff"),
    Opt("no-xattrs", None, FLAG, "Skip output of extended attributes"),
    Opt("owner-uid", None, INT, "Use file ownership user id for local files", "UID"),
    Opt("owner-gid", None, INT, "Use file ownership group id for local files", "GID"),
]
USAGE = "diff [OPTION…] REV_OR_DIR REV_OR_DIR"
SUMMARY = "Compare directory TARGETDIR against revision REV"


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if not args:
        sys.stderr.write(help_text(USAGE, SUMMARY, OPTIONS) + "\n")
        raise OstreeError("REV must be specified")
    if len(args) == 1:
        src, target = args[0] + "^", args[0]
    else:
        src, target = args[0], args[1]
    fs_diff = bool(o.fs_diff) or not o.stats
    if fs_diff:
        a = open_side(repo, src)
        b = open_side(repo, target)
        opts = DiffOptions(ignore_xattrs=bool(o.no_xattrs),
                           owner_uid=o.owner_uid if o.owner_uid is not None else -1,
                           owner_gid=o.owner_gid if o.owner_gid is not None else -1)
        sys.stdout.write(diff_dirs(repo, a, b, opts).format())
    if o.stats:
        rev_a = repo.resolve_rev(src)
        rev_b = repo.resolve_rev(target)
        assert rev_a is not None and rev_b is not None
        ra = reachable_objects(repo, rev_a)
        rb = reachable_objects(repo, rev_b)
        common = ra & rb
        total = sum(object_storage_size(repo, c, t) for c, t in common)
        print(f"[A] Object Count: {len(ra)}")
        print(f"[B] Object Count: {len(rb)}")
        print(f"Common Object Count: {len(common)}")
        print(f"Common Object Size: {format_size(total)}")
    return 0
