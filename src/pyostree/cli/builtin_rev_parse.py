"""``ostree rev-parse``: output the target of a rev."""

from __future__ import annotations

import os

from ..errors import OstreeError
from ..objects import ObjectType
from .main import Context
from .options import FLAG, Opt, parse

OPTIONS = [
    Opt("single", "S", FLAG, "If the repository has exactly one commit, then print it; any other case will result in an error"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "rev-parse [OPTION…] REV", "Output the target of a rev")
    repo = ctx.open_repo()
    if o.single:
        if args:
            raise OstreeError("Cannot specify arguments with --single")
        found = [c for c, t in repo.iter_objects() if t is ObjectType.COMMIT]
        if not found:
            raise OstreeError(f"No commit objects found in {os.path.abspath(repo.path)}")
        if len(found) > 1:
            raise OstreeError("Multiple commit objects found")
        print(found[0])
        return 0
    if not args:
        raise OstreeError("A REV argument is required")
    for rev in args:
        print(repo.resolve_rev(rev))
    return 0
