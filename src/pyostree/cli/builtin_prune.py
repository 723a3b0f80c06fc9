"""``ostree prune``: search for unreachable objects and delete them."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, INT, STRING, STRINGS, Opt, parse
from pyostree.errors import OstreeError
from pyostree.store.prune import PruneOptions, parse_branch_depth, parse_date, prune, summary_lines
from pyostree.store.repo import Repo

OPTIONS = [
    Opt("no-prune", None, FLAG, "Only display unreachable objects; don't delete"),
    Opt("refs-only", None, FLAG, "Only compute reachability via refs"),
    Opt("depth", None, INT, "Only traverse DEPTH parents for each commit (default: -1=infinite)", "DEPTH"),
    Opt("delete-commit", None, STRING, "Specify a commit to delete", "COMMIT"),
    Opt("keep-younger-than", None, STRING, "Prune all commits older than the specified date", "DATE"),
    Opt("static-deltas-only", None, FLAG,
        "Change the behavior of delete-commit and keep-younger-than to prune only static deltas"),
    Opt("retain-branch-depth", None, STRINGS, "Additionally retain BRANCH=DEPTH commits", "BRANCH=DEPTH"),
    Opt("only-branch", None, STRINGS, "Only prune BRANCH (may be specified multiple times)", "BRANCH"),
    Opt("commit-only", None, FLAG, "Only traverse and delete commit objects."),
    # listed for --help as ostree does; cli/main.py takes --repo wherever it stands
    Opt("repo", None, STRING, "Path to OSTree repository", "PATH"),
    Opt("verbose", "v", FLAG, "Print debug information during command processing"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, _args = parse(argv, OPTIONS, "prune [OPTION…]", "Search for unreachable objects")
    repo: Repo = ctx.open_repo()
    if o.delete_commit is not None and o.no_prune:
        raise OstreeError("Cannot specify both --delete-commit and --no-prune")
    if o.static_deltas_only:
        if o.delete_commit is None:
            raise OstreeError("--static-deltas-only requires --delete-commit; see "
                              "https://github.com/ostreedev/ostree/issues/1479")
        from pyostree.store.prune import prune_static_deltas_for

        prune_static_deltas_for(repo, o.delete_commit)
    opts = PruneOptions(refs_only=o.refs_only, no_prune=o.no_prune, commit_only=o.commit_only,
                        depth=-1 if o.depth is None else o.depth,
                        delete_commit=None if o.static_deltas_only else o.delete_commit)
    if o.keep_younger_than:
        opts.keep_younger_than = parse_date(o.keep_younger_than)
    for spec in o.retain_branch_depth:
        b, d = parse_branch_depth(spec)
        opts.retain_branch_depth[b] = d
    opts.only_branches = list(o.only_branch)
    result = prune(repo, opts)
    sys.stdout.write("\n".join(summary_lines(result, opts)) + "\n")
    return 0
