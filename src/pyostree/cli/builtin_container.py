"""``pyostree container``: import OCI/docker images, check their layers out for overlayfs."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, Opt, parse, usage_error
from pyostree.errors import OstreeError
from pyostree.store.repo import Repo

IMPORT_OPTIONS = [
    Opt("quote-special-files", None, FLAG, "Import device nodes and FIFOs as quoted .ostree-dev. files"),
]
CHECKOUT_OPTIONS = [
    Opt("mount", None, FLAG, "Mount the layers read-only with overlayfs at DEST/merged"),
    Opt("userxattr", None, FLAG, "Write user.overlay.* instead of trusted.overlay.* xattrs (overlayfs userxattr)"),
]
USAGE = """Usage:
  pyostree container SUBCOMMAND [OPTION…]

Subcommands:
  import SOURCE REF        Import an image (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE)
  checkout REF DEST        Check the image's layers out as overlayfs lower dirs (--mount to mount)
"""


def _import(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, IMPORT_OPTIONS, "container import [OPTION…] SOURCE REF",
                    "Import a container image into REF")
    if len(args) != 2:
        raise usage_error("SOURCE and REF must be specified")
    from pyostree.oci import import_image

    repo = Repo.open(ctx.find_repo_path())
    res = import_image(repo, args[0], args[1], special=o.quote_special_files)
    print(f"Imported {len(res.layer_commits)} layers ({res.layers_imported} new, "
          f"{res.layers_reused} already present)")
    print(res.commit)
    return 0


def _checkout(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, CHECKOUT_OPTIONS, "container checkout [OPTION…] REF DEST",
                    "Check out an image's layers for overlayfs")
    if len(args) != 2:
        raise usage_error("REF and DEST must be specified")
    from pyostree.oci import checkout_layers

    repo = Repo.open(ctx.find_repo_path())
    res = checkout_layers(repo, args[0], args[1], mount=o.mount, userxattr=o.userxattr)
    if res.mounted:
        print(f"Mounted {len(res.layers)} layers at {res.merged}")
    else:
        print(res.mount_command)
    return 0


def run(ctx: Context, argv: list[str]) -> int:
    sub = next((a for a in argv if not a.startswith("-")), None)
    if sub is None:
        if "-h" in argv or "--help" in argv:
            print(USAGE)
            return 0
        sys.stderr.write(USAGE)
        raise OstreeError("No subcommand specified")
    rest = list(argv)
    rest.remove(sub)
    if sub == "import":
        return _import(ctx, rest)
    if sub == "checkout":
        return _checkout(ctx, rest)
    sys.stderr.write(USAGE)
    raise OstreeError(f"Unknown subcommand '{sub}'")
