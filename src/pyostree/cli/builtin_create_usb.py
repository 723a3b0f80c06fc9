"""``ostree create-usb MOUNT-PATH COLLECTION-ID REF [COLLECTION-ID REF...]``."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse, usage_fail

OPTIONS = [
    Opt("disable-fsync", None, FLAG, "Do not invoke fsync()"),
    Opt("destination-repo", None, STRING, "Use custom repository directory within the mount", "DEST"),
    Opt("commit", None, STRING, "Pull a specific commit (only works when a single ref is specified)", "COMMIT"),
    Opt("repo", None, STRING, "Path to OSTree repository", "PATH"),
]
USAGE = "create-usb [OPTION…] MOUNT-PATH COLLECTION-ID REF [COLLECTION-ID REF...]"
SUMMARY = "Copy the refs to a USB stick"


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    src = ctx.open_repo()
    if len(args) < 1:
        raise usage_fail("A MOUNT-PATH must be specified", USAGE, SUMMARY, OPTIONS)
    if len(args) < 3:
        raise usage_fail("At least one COLLECTION-ID REF pair must be specified", USAGE, SUMMARY, OPTIONS)
    if len(args) % 2 == 0:
        raise usage_fail("Only complete COLLECTION-ID REF pairs may be specified", USAGE, SUMMARY, OPTIONS)
    if o.commit and len(args) > 3:
        raise usage_fail("The --commit option can only be used when a single COLLECTION-ID REF pair "
                         "is specified", USAGE, SUMMARY, OPTIONS)
    from pyostree.remote.usb import create_usb

    pairs = [(args[i], args[i + 1]) for i in range(1, len(args), 2)]
    commit = src.resolve_rev(o.commit) if o.commit else None
    print(create_usb(src, args[0], pairs, destination_repo=o.destination_repo, commit=commit,
                     disable_fsync=bool(o.disable_fsync)))
    return 0
