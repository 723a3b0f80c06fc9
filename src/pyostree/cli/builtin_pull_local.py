"""``ostree pull-local SRC_REPO [REFS...]``: copy data from another local repository."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, INT, STRING, Opt, parse
from pyostree.errors import OstreeError
from pyostree.remote.pull_local import pull_local
from pyostree.store.dump import format_size
from pyostree.store.repo import Repo

OPTIONS = [
    Opt("commit-metadata-only", None, FLAG, "Fetch only the commit metadata"),
    Opt("remote", None, STRING, "Add REMOTE to refspec", "REMOTE"),
    Opt("disable-fsync", None, FLAG, "Do not invoke fsync()"),
    Opt("per-object-fsync", None, FLAG, "Perform writes in such a way that avoids stalling concurrent processes"),
    Opt("untrusted", None, FLAG, "Verify checksums of local sources (always enabled for HTTP pulls)"),
    Opt("bareuseronly-files", None, FLAG, "Reject regular files with mode outside of 0775 (world writable, suid, etc.)"),
    Opt("require-static-deltas", None, FLAG, "Require static deltas"),
    Opt("gpg-verify", None, FLAG, "GPG verify commits (must specify --remote)"),
    Opt("gpg-verify-summary", None, FLAG, "GPG verify summary (must specify --remote)"),
    Opt("disable-verify-bindings", None, FLAG, "Do not verify commit bindings"),
    Opt("depth", None, INT, "Traverse DEPTH parents (-1=infinite) (default: 0)", "DEPTH"),
    # listed for --help as ostree does; cli/main.py takes --repo wherever it stands
    Opt("repo", None, STRING, "Path to OSTree repository", "PATH"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "pull-local [OPTION…] SRC_REPO [REFS...]", "Copy data from SRC_REPO")
    repo: Repo = ctx.open_repo()
    if not args:
        raise OstreeError("DESTINATION must be specified")
    if (o.gpg_verify or o.gpg_verify_summary) and not o.remote:
        raise OstreeError("Must specify remote name to enable gpg verification")
    if o.disable_fsync:
        repo.disable_fsync = True
    if o.per_object_fsync:
        repo.per_object_fsync = True
    stats = pull_local(repo, args[0], args[1:] or None, remote=o.remote, untrusted=o.untrusted,
                       commit_only=o.commit_metadata_only, depth=o.depth or 0,
                       bareuseronly_files=o.bareuseronly_files, gpg_verify=o.gpg_verify,
                       gpg_verify_summary=o.gpg_verify_summary, require_static_deltas=o.require_static_deltas,
                       verify_bindings=not o.disable_verify_bindings)
    sys.stdout.write(f"{stats.metadata_imported} metadata, {stats.content_imported} content objects imported; "
                     f"{format_size(stats.content_bytes_written)} content written\n")
    return 0
