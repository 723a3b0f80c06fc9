"""``ostree gpg-sign COMMIT KEY-ID...``: add (or ``--delete``) GPG signatures of a commit."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse, usage_fail
from pyostree.remote import gpg
from pyostree.store.refs import resolve_rev

OPTIONS = [
    Opt("delete", "d", FLAG, "Delete signatures having any of the GPG KEY-IDs"),
    Opt("gpg-homedir", None, STRING, "GPG Homedir to use when looking for keyrings", "HOMEDIR"),
]
USAGE = "gpg-sign [OPTION…] COMMIT KEY-ID..."
SUMMARY = "Sign a commit"


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if len(args) < 1:
        raise usage_fail("Need a COMMIT to sign", USAGE, SUMMARY, OPTIONS)
    if len(args) < 2:
        raise usage_fail("Need at least one GPG KEY-ID to sign with", USAGE, SUMMARY, OPTIONS)
    resolved = resolve_rev(repo, args[0], False)
    assert resolved is not None
    if o.delete:
        n = gpg.delete_signatures(repo, resolved, args[1:])
        print(f"Signatures deleted: {n}")
        return 0
    for key in args[1:]:
        gpg.sign_commit(repo, resolved, key, o.gpg_homedir)
    return 0
