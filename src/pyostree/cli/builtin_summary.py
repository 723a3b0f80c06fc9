"""``ostree summary``: regenerate (``-u``) or view (``--view``/``--raw``) the summary file."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, STRINGS, Opt, parse
from pyostree.errors import OstreeError
from pyostree.remote.summary import (
    Metadata,
    format_summary,
    read_summary,
    regenerate_summary,
    write_metadata_commit,
)
from pyostree.store import gvariant

OPTIONS = [
    Opt("update", "u", FLAG, "Update the summary"),
    Opt("view", "v", FLAG, "View the local summary file"),
    Opt("raw", None, FLAG, "View the raw bytes of the summary file"),
    Opt("gpg-sign", None, STRINGS, "GPG Key ID to sign the summary with", "KEY-ID"),
    Opt("gpg-homedir", None, STRING, "GPG Homedir to use when looking for keyrings", "HOMEDIR"),
    Opt("sign", None, STRINGS, "Key ID to sign the summary with", "KEY-ID"),
    Opt("sign-type", None, STRING, "Signature type to use (defaults to 'ed25519')", "NAME"),
    Opt("add-metadata", "m", STRINGS, "Additional metadata field to add to the summary", "KEY=VALUE"),
]


def _additional_metadata(args: list[str]) -> Metadata:
    out: Metadata = []
    for a in args:
        key, eq, text = a.partition("=")
        if not eq:
            raise OstreeError(f"Missing '=' in KEY=VALUE metadata '{a}'")
        try:
            value = gvariant.parse_text(text)
        except gvariant.GVariantError as e:
            raise OstreeError(f"Error parsing variant ‘{text}’: {e}") from None  # noqa: RUF001
        out.append((key, value))
    return out


def run(ctx: Context, argv: list[str]) -> int:
    o, _ = parse(argv, OPTIONS, "summary [OPTION…]", "Manage summary metadata")
    repo = ctx.open_repo()
    if o.update:
        if o.sign:
            raise OstreeError("Signing the summary with --sign is not supported by pyostree")
        md = _additional_metadata(o.add_metadata) if o.add_metadata else None
        if repo.collection_id is not None:
            write_metadata_commit(repo, md)
        regenerate_summary(repo, md)
        if o.gpg_sign:
            from pyostree.remote import gpg

            gpg.sign_summary(repo, list(o.gpg_sign), o.gpg_homedir)
    elif o.view or o.raw:
        sys.stdout.write(format_summary(read_summary(repo), raw=bool(o.raw)))
    else:
        raise OstreeError("No option specified; use -u to update summary")
    return 0
