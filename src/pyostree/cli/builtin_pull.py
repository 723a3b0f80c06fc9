"""``ostree pull REMOTE [BRANCH...]``.

Remotes with a ``file://`` URL are pulled through the local transport (with
every object verified, as ostree does for any remote pull).  HTTP(S) pull is
not implemented yet and fails with a clear error.
"""

from __future__ import annotations

import sys
from urllib.parse import unquote, urlparse

from ..errors import OstreeError
from ..pull_local import format_size, pull_local
from ..refs import parse_refspec
from ..remotes import get_remote, get_remote_url
from .main import Context
from .options import FLAG, INT, STRING, STRINGS, Opt, parse

OPTIONS = [
    Opt("commit-metadata-only", None, FLAG, "Fetch only the commit metadata"),
    Opt("cache-dir", None, STRING, "Use custom cache dir"),
    Opt("disable-fsync", None, FLAG, "Do not invoke fsync()"),
    Opt("per-object-fsync", None, FLAG, "Perform writes in such a way that avoids stalling concurrent processes"),
    Opt("disable-static-deltas", None, FLAG, "Do not use static deltas"),
    Opt("require-static-deltas", None, FLAG, "Require static deltas"),
    Opt("mirror", None, FLAG, "Write refs suitable for a mirror and fetches all refs if none provided"),
    Opt("subdir", None, STRING, "Only pull the provided subpath(s)"),
    Opt("subpath", None, STRINGS, "Only pull the provided subpath(s)"),
    Opt("dry-run", None, FLAG, "Only print information on what will be downloaded (requires static deltas)"),
    Opt("depth", None, INT, "Traverse DEPTH parents (-1=infinite) (default: 0)", "DEPTH"),
    Opt("url", None, STRING, "Pull objects from this URL instead of the one from the remote config"),
    Opt("localcache-repo", "L", STRINGS, "Add REPO as local cache source for objects during this pull"),
    Opt("timestamp-check", "T", FLAG, "Require fetched commits to have newer timestamps"),
    Opt("bareuseronly-files", None, FLAG, "Reject regular files with mode outside of 0775 (world writable, suid, etc.)"),
    Opt("untrusted", None, FLAG, "Verify checksums of local sources (always enabled for HTTP pulls)"),
    Opt("network-retries", None, INT, "Specifies how many times each download should be retried upon error"),
    Opt("disable-verify-bindings", None, FLAG, "Do not verify commit bindings"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "pull [OPTION…] REMOTE [BRANCH…]", "Download data from remote repository")
    repo = ctx.open_repo()
    if not args:
        raise OstreeError("REMOTE must be specified")
    first = args[0]
    branches = list(args[1:])
    if ":" in first:
        remote, ref = parse_refspec(first)
        assert remote is not None
        branches.insert(0, ref)
    else:
        remote = first
    url = o.url or get_remote_url(repo, remote)
    if o.disable_fsync:
        repo.disable_fsync = True
    if not branches:
        configured = get_remote(repo, remote).options.get("branches")
        if configured:
            branches = [b.strip() for b in configured.split(";") if b.strip()]
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise OstreeError(f"Pulling from {parsed.scheme or url} remotes is not implemented yet; "
                          "use a file:// remote or pull-local")
    stats = pull_local(repo, unquote(parsed.path), branches or None, remote=None if o.mirror else remote,
                       untrusted=True, commit_only=o.commit_metadata_only, depth=o.depth or 0,
                       bareuseronly_files=o.bareuseronly_files)
    sys.stdout.write(f"{stats.metadata_imported} metadata, {stats.content_imported} content objects fetched; "
                     f"{format_size(stats.content_bytes_written)} transferred\n")
    return 0
