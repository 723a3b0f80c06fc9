"""``ostree checksum``: the ostree checksum of a local file or directory."""

from __future__ import annotations

from ..diff import checksum_local
from ..errors import OstreeError
from .main import Context
from .options import FLAG, Opt, parse

OPTIONS = [Opt("ignore-xattrs", None, FLAG, "Don't include xattrs in checksum")]


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "checksum [OPTION…] PATH", "Checksum a file or directory")
    if not args:
        raise OstreeError("A filename must be given")
    print(checksum_local(args[0], ignore_xattrs=bool(o.ignore_xattrs)))
    return 0
