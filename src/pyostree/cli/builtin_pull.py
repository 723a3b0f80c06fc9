"""``ostree pull REMOTE [BRANCH...]``: thin CLI over :func:`pyostree.pull.pull`."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, INT, STRING, STRINGS, Opt, parse
from pyostree.errors import OstreeError
from pyostree.remote.pull import PullOptions, pull
from pyostree.store.refs import parse_refspec

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
    Opt("http-header", None, STRINGS, "Add NAME=VALUE as HTTP header to all requests", "NAME=VALUE"),
    Opt("update-frequency", None, INT, "Sets the update frequency, in milliseconds (0=1000ms) (default: 0)", "FREQUENCY"),
    Opt("localcache-repo", "L", STRINGS, "Add REPO as local cache source for objects during this pull"),
    Opt("timestamp-check", "T", FLAG, "Require fetched commits to have newer timestamps"),
    Opt("timestamp-check-from-rev", None, STRING, "Verify that all fetched commits have timestamps newer than this commit", "COMMIT"),
    Opt("bareuseronly-files", None, FLAG, "Reject regular files with mode outside of 0775 (world writable, suid, etc.)"),
    Opt("untrusted", None, FLAG, "Verify checksums of local sources (always enabled for HTTP pulls)"),
    Opt("http-trusted", None, FLAG, "Do not verify checksums of HTTP sources (mostly useful when mirroring)"),
    Opt("network-retries", None, INT, "Specifies how many times each download should be retried upon error (default: 5)", "N"),
    Opt("low-speed-limit-bytes", None, INT, "The average transfer speed per second of a transfer during the time set via 'low-speed-time-seconds' for libcurl to abort(default: 1000)", "N"),
    Opt("low-speed-time-seconds", None, INT, "The time in number seconds that the transfer speed should be below the 'low-speed-limit-bytes' setting for libcurl to abort (default: 30)", "N"),
    Opt("disable-retry-on-network-errors", None, FLAG, "Do not retry when network issues happen, instead fail automatically. (Currently only affects libcurl)"),
    Opt("disable-verify-bindings", None, FLAG, "Do not verify commit bindings"),
    Opt("set-metadata", None, STRINGS, "Set metadata key", "KEY=VALUE"),
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
    if o.disable_fsync:
        repo.disable_fsync = True
    if o.per_object_fsync:
        repo.per_object_fsync = True
    subpaths = list(o.subpath or [])
    if o.subdir:
        subpaths.append(o.subdir)
    headers: dict[str, str] = {}
    for h in o.http_header or []:
        name, eq, value = h.partition("=")
        if not eq or not name:
            raise OstreeError("Missing '=' in --http-header")
        headers[name] = value
    opts = PullOptions(http_headers=headers,
        url=o.url, commit_only=o.commit_metadata_only, depth=o.depth or 0, mirror=o.mirror,
        subpaths=subpaths or None, localcache_repos=list(o.localcache_repo or []),
        timestamp_check=o.timestamp_check, timestamp_check_from_rev=o.timestamp_check_from_rev,
        bareuseronly_files=o.bareuseronly_files, dry_run=o.dry_run,
        network_retries=5 if o.network_retries is None or o.network_retries < 0 else o.network_retries,
        http_trusted=o.http_trusted, require_static_deltas=o.require_static_deltas,
        disable_static_deltas=o.disable_static_deltas, verify_bindings=not o.disable_verify_bindings,
        low_speed_limit=_u32(o.low_speed_limit_bytes, "low-speed-limit-bytes", 1000),
        low_speed_time=_u32(o.low_speed_time_seconds, "low-speed-time-seconds", 30),
        retry_all=not o.disable_retry_on_network_errors)
    stats = pull(repo, remote, branches or None, opts)
    sys.stdout.write(stats.status_line() + "\n")
    return 0


def _u32(v: int | None, name: str, default: int) -> int:
    """ostree passes these as GVariant ``u``: unset or negative means the default, as in ot-builtin-pull.c."""
    if v is None or v < 0:
        return default
    if v > 0xFFFFFFFF:
        raise OstreeError(f"Invalid --{name}: {v} is out of range")
    return v
