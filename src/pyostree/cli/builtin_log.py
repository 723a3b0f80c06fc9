"""``ostree log``: show the history of a commit or ref."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, Opt, parse, usage_fail
from pyostree.errors import NotFoundError, OstreeError
from pyostree.store import gvariant
from pyostree.store.dump import format_object
from pyostree.store.objects import COMMIT_TYPE, ObjectType

OPTIONS = [Opt("raw", None, FLAG, "Show raw variant data")]
USAGE = "log [OPTION…] REV"
SUMMARY = "Show log starting at commit or ref"


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("A rev argument is required", USAGE, SUMMARY, OPTIONS)
    checksum: str | None = repo.resolve_rev(args[0])
    first = True
    seen: set[str] = set()
    while checksum is not None and checksum not in seen:
        seen.add(checksum)
        try:
            data = repo.load_metadata(ObjectType.COMMIT, checksum)
        except NotFoundError:
            if first:
                raise
            sys.stdout.write("<< History beyond this commit not fetched >>\n")
            break
        first = False
        try:
            sys.stdout.write(format_object("commit", checksum, COMMIT_TYPE, data, raw=bool(o.raw)))
        except gvariant.GVariantError as e:
            raise OstreeError(f"Corrupted commit object {checksum}: {e}") from None
        checksum = repo.load_commit(checksum).parent
    return 0
