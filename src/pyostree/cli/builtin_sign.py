"""``ostree sign COMMIT KEY-ID...``: sign a commit, or ``--verify`` its signatures (ed25519, dummy)."""

from __future__ import annotations

import os

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse, usage_fail
from pyostree.errors import OstreeError
from pyostree.remote import sign
from pyostree.store.refs import resolve_rev

OPTIONS = [
    Opt("delete", "d", FLAG, "Delete signatures having any of the KEY-IDs"),
    Opt("verify", None, FLAG, "Verify signatures"),
    Opt("sign-type", "s", STRING, "Signature type to use (defaults to 'ed25519')", "NAME"),
    Opt("keys-file", None, STRING, "Read key(s) from file", "NAME"),
    Opt("keys-dir", None, STRING, "Redefine system-wide directories with public and revoked keys for verification",
        "NAME"),
]
USAGE = "sign [OPTION…] COMMIT KEY-ID..."
SUMMARY = "Sign a commit"


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("Need a COMMIT to sign or verify", USAGE, SUMMARY, OPTIONS)
    if not o.verify and not o.keys_file and len(args) < 2:
        raise usage_fail("Need at least one KEY-ID to sign with", USAGE, SUMMARY, OPTIONS)
    keys = args[1:]
    resolved = resolve_rev(repo, args[0], False)
    assert resolved is not None
    engine = sign.get_engine(o.sign_type or sign.DEFAULT_TYPE)
    if o.verify:
        for key in keys:
            try:
                engine.set_pk(key)
                print(sign.commit_verify(engine, repo, resolved))
                return 0
            except OstreeError:
                continue
        if not keys or o.keys_file:
            engine.load_pk(filename=o.keys_file, basedir=o.keys_dir)
            print(sign.commit_verify(engine, repo, resolved))
            return 0
        raise OstreeError("No valid signatures found")
    for key in keys:
        engine.set_sk(key)
        sign.commit_sign(engine, repo, resolved)
    if o.keys_file:
        if not os.path.isfile(o.keys_file):
            raise OstreeError(f"File object '{o.keys_file}' is not a regular file")
        with open(o.keys_file, encoding="utf-8", errors="replace") as f:
            for line in f.read().splitlines():
                engine.set_sk(line)
                sign.commit_sign(engine, repo, resolved)
    return 0
