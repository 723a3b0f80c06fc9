"""``ostree reset``: point REF at another COMMIT (any commit, not only an ancestor)."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import parse, usage_fail
from pyostree.errors import OstreeError
from pyostree.store import refs
from pyostree.store.reflist import list_refs_ext

USAGE = "reset [OPTION…] REF COMMIT"
SUMMARY = "Reset a REF to a previous COMMIT"


def run(ctx: Context, argv: list[str]) -> int:
    _, args = parse(argv, [], USAGE, SUMMARY)
    repo = ctx.open_repo()
    if len(args) < 2:
        raise usage_fail("A REF and COMMIT argument is required", USAGE, SUMMARY, [])
    ref, target = args[0], args[1]
    if ref not in list_refs_ext(repo, None):
        raise OstreeError(f"Invalid ref '{ref}'")
    checksum = repo.resolve_rev(target)
    assert checksum is not None
    with repo.transaction():
        refs.set_ref(repo, None, ref, checksum)
    return 0
