"""``ostree cat``: write the contents of files in a commit to stdout."""

from __future__ import annotations

import shutil
import sys

from pyostree.cli.main import Context
from pyostree.cli.options import parse, usage_fail
from pyostree.tree.treewalk import commit_root, follow, resolve

USAGE = "cat [OPTION…] COMMIT PATH..."
SUMMARY = "Concatenate contents of files"


def run(ctx: Context, argv: list[str]) -> int:
    _, args = parse(argv, [], USAGE, SUMMARY)
    repo = ctx.open_repo()
    if len(args) < 2:
        raise usage_fail("A COMMIT and at least one PATH argument are required", USAGE, SUMMARY, [])
    root = commit_root(repo, args[0])
    sys.stdout.flush()
    for p in args[1:]:
        node = follow(root, resolve(root, root, p))
        with node.open() as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    return 0
