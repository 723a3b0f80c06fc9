"""``ostree rev-parse``: output the target of a rev."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, Opt, parse, usage_fail
from pyostree.errors import OstreeError
from pyostree.store.objects import ObjectType

OPTIONS = [
    Opt("single", "S", FLAG, "If the repository has exactly one commit, then print it; any other case will result in an error"),
]
USAGE = "rev-parse [OPTION…] REV"
SUMMARY = "Output the target of a rev"


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if o.single:
        if args:
            raise usage_fail("Cannot specify arguments with --single", USAGE, SUMMARY, OPTIONS)
        found: str | None = None
        for c, t in repo.iter_objects():
            if t is ObjectType.COMMIT:
                if found is not None:
                    raise OstreeError("Multiple commit objects found")
                found = c
        if found is None:
            raise OstreeError("No commit objects found")
        print(found)
        return 0
    if not args:
        raise usage_fail("REV must be specified", USAGE, SUMMARY, OPTIONS)
    for rev in args:
        print(repo.resolve_rev(rev))
    return 0
