"""``ostree checksum``: the ostree checksum of a local file or directory."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, Opt, parse
from pyostree.errors import OstreeError
from pyostree.tree.diff import checksum_local

OPTIONS = [Opt("ignore-xattrs", None, FLAG, "Don't include xattrs in checksum")]


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "checksum [OPTION…] PATH", "Checksum a file or directory")
    if not args:
        raise OstreeError("A filename must be given")
    print(checksum_local(args[0], ignore_xattrs=bool(o.ignore_xattrs)))
    return 0
