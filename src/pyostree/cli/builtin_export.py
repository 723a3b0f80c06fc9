"""``ostree export COMMIT``: stream a commit's tree in tar format."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse
from pyostree.errors import OstreeError
from pyostree.store.repo import Repo
from pyostree.tree.export import export_to_path

OPTIONS = [
    Opt("no-xattrs", None, FLAG, "Skip output of extended attributes"),
    Opt("subpath", None, STRING, "Checkout sub-directory PATH", "PATH"),
    Opt("prefix", None, STRING, "Add PATH as prefix to archive pathnames", "PATH"),
    Opt("output", "o", STRING, "Output to PATH ", "PATH"),
    # listed for --help as ostree does; cli/main.py takes --repo wherever it stands
    Opt("repo", None, STRING, "Path to OSTree repository", "PATH"),
]


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "export [OPTION…] COMMIT", "Stream COMMIT to stdout in tar format")
    repo: Repo = ctx.open_repo()
    if not args:
        raise OstreeError("A COMMIT argument is required")
    export_to_path(repo, args[0], o.output, subpath=o.subpath, prefix=o.prefix)
    return 0
