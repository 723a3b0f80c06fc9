"""``pyostree container``: import container images, check their layers out, manage and export them."""

from __future__ import annotations

import sys
import time

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, INT, STRING, STRINGS, Opt, parse, usage_error
from pyostree.errors import OstreeError
from pyostree.store.repo import Repo

PLATFORM_OPT = Opt("platform", None, STRING, "Image of an index to use (default: the host's)",
                   "OS/ARCH[/VARIANT]")
QUIET_OPT = Opt("quiet", "q", FLAG, "No progress output")
IMPORT_OPTIONS = [
    Opt("quote-special-files", None, FLAG, "Import device nodes and FIFOs as quoted .ostree-dev. files"),
    PLATFORM_OPT,
    Opt("check", None, FLAG, "Only say whether the source has a newer manifest than the imported image"),
    QUIET_OPT,
]
CHECKOUT_OPTIONS = [
    Opt("mount", None, FLAG, "Mount the layers read-only with overlayfs at DEST/merged"),
    Opt("userxattr", None, FLAG, "Write user.overlay.* instead of trusted.overlay.* xattrs (overlayfs userxattr)"),
]
LIST_OPTIONS = [Opt("json", None, FLAG, "Print JSON")]
PRUNE_OPTIONS = [Opt("dry-run", None, FLAG, "Only say what would be removed")]
EXPORT_OPTIONS = [
    Opt("max-layers", None, INT, "Split a plain commit into up to N layers by content (default 1)", "N"),
    Opt("cmd", None, STRINGS, "Config Cmd: one argument per --cmd", "ARG"),
    Opt("label", None, STRINGS, "Config label", "KEY=VALUE"),
    Opt("arch", None, STRING, "Config architecture (default: the host's)", "ARCH"),
    Opt("tag", None, STRING, "Tag inside an oci:/oci-archive: destination without one", "TAG"),
    Opt("gzip-level", None, INT, "gzip level of the layers, 1 (fastest) to 9 (default 6)", "N"),
    QUIET_OPT,
]
USAGE = """Usage:
  pyostree container [OPTION…] COMMAND

Import, check out, list, remove and export container images

Builtin "container" Commands:
  import         Import an image from any skopeo source (docker://, containers-storage:, oci:, ...)
  checkout       Check an image's layers out as overlayfs lower dirs (--mount to mount them)
  list           List imported images (ref, source, digest, date, size)
  remove         Remove imported images (their layers stay until prune-layers)
  prune-layers   Remove layers no image uses, and the objects nothing references
  export         Write a commit or an imported image as an OCI image to any skopeo destination

Help Options:
  -h, --help     Show help options
"""


def _open(ctx: Context) -> Repo:
    return Repo.open(ctx.find_repo_path())


def _import(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, IMPORT_OPTIONS, "container import [OPTION…] SOURCE [REF]",
                    "Import a container image into REF (default: ostree/container/image/<escaped SOURCE>).\n"
                    "SOURCE is any skopeo image reference: docker://HOST/NAME:TAG,\n"
                    "containers-storage:[DRIVER@ROOT+RUNROOT]NAME, oci:DIR[:TAG], oci-archive:FILE[:TAG],\n"
                    "docker-archive:FILE[:REF|:@N], dir:DIR, ...  With --check, SOURCE may be an image REF.")
    from pyostree.oci import import_image
    from pyostree.oci.source import Platform

    plat = Platform.parse(o.platform) if o.platform else None
    if o.check:
        if len(args) not in (1, 2):
            raise usage_error("SOURCE or REF must be specified")
        return _check(ctx, args, plat)
    if len(args) not in (1, 2):
        raise usage_error("SOURCE must be specified")
    repo = _open(ctx)
    res = import_image(repo, args[0], args[1] if len(args) == 2 else None, special=o.quote_special_files,
                       platform=plat, quiet=o.quiet)
    if res.up_to_date:
        print(f"Image is up to date ({len(res.layer_commits)} layers)")
    else:
        print(f"Imported {len(res.layer_commits)} layers ({res.layers_imported} new, "
              f"{res.layers_reused} already present)")
    print(res.commit)
    return 0


def _check(ctx: Context, args: list[str], plat: object) -> int:
    from pyostree.oci.image import image_ref
    from pyostree.oci.source import Platform
    from pyostree.oci.store import check_update

    assert plat is None or isinstance(plat, Platform)
    repo = _open(ctx)
    if len(args) == 2:
        ref = args[1]
    elif ":" in args[0]:
        ref = image_ref(args[0])
    else:
        ref = args[0]
    r = check_update(repo, ref, plat)
    if r.newer:
        print(f"{ref}: newer manifest {r.latest} at {r.source} (imported: {r.current})")
    else:
        print(f"{ref}: up to date ({r.current})")
    return 0


def _checkout(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, CHECKOUT_OPTIONS, "container checkout [OPTION…] REF DEST",
                    "Check out an image's layers for overlayfs")
    if len(args) != 2:
        raise usage_error("REF and DEST must be specified")
    from pyostree.oci import checkout_layers

    repo = _open(ctx)
    res = checkout_layers(repo, args[0], args[1], mount=o.mount, userxattr=o.userxattr)
    if res.mounted:
        print(f"Mounted {len(res.layers)} layers at {res.merged}")
    else:
        print(res.mount_command)
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return str(n)


def _list(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, LIST_OPTIONS, "container list [OPTION…]", "List imported container images")
    if args:
        raise usage_error("Too many arguments")
    from pyostree.oci.store import list_images

    images = list_images(_open(ctx))
    if o.json:
        import json

        print(json.dumps([{"ref": i.ref, "commit": i.commit, "source": i.source, "digest": i.digest,
                           "created": i.timestamp, "size": i.size, "layers": len(i.layers)}
                          for i in images], indent=1))
        return 0
    rows = [("IMAGE", "SOURCE", "DIGEST", "CREATED", "SIZE")]
    for i in images:
        rows.append((i.ref, i.source or "-", i.digest.removeprefix("sha256:")[:12] or "-",
                     time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(i.timestamp)), _size(i.size)))
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    for r in rows:
        print("  ".join(r[k].ljust(widths[k]) for k in range(4)) + "  " + r[4])
    return 0


def _remove(ctx: Context, argv: list[str]) -> int:
    _o, args = parse(argv, [], "container remove REF…", "Remove imported container images")
    if not args:
        raise usage_error("At least one REF must be specified")
    from pyostree.oci.store import remove_images

    for r in remove_images(_open(ctx), args):
        print(f"Removed {r}")
    return 0


def _prune_layers(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, PRUNE_OPTIONS, "container prune-layers [OPTION…]",
                    "Remove layers no image uses, and the objects nothing references")
    if args:
        raise usage_error("Too many arguments")
    from pyostree.oci.store import prune_layers

    r = prune_layers(_open(ctx), dry_run=o.dry_run)
    verb = "Would remove" if o.dry_run else "Removed"
    print(f"{verb} {r.layers_removed} layers, {r.objects_pruned} objects, {_size(r.freed_bytes)}")
    return 0


def _export(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, EXPORT_OPTIONS, "container export [OPTION…] REF DEST",
                    "Write a commit or an imported image as an OCI image to DEST: oci:DIR[:TAG],\n"
                    "oci-archive:FILE[:TAG], docker-archive:FILE[:REF], docker://HOST/NAME:TAG,\n"
                    "containers-storage:[DRIVER@ROOT+RUNROOT]NAME or any other skopeo destination")
    if len(args) != 2:
        raise usage_error("REF and DEST must be specified")
    from pyostree.oci.export import ExportOptions, export_image

    labels: dict[str, str] = {}
    for lab in o.label:
        k, sep, v = lab.partition("=")
        if not sep or not k:
            raise usage_error(f"Invalid --label '{lab}' (expected KEY=VALUE)")
        labels[k] = v
    if o.max_layers is not None and o.max_layers < 1:
        raise usage_error("--max-layers must be at least 1")
    if o.gzip_level is not None and not 1 <= o.gzip_level <= 9:
        raise usage_error("--gzip-level must be 1 to 9")
    opts = ExportOptions(max_layers=o.max_layers or 1, cmd=list(o.cmd) or None, labels=labels,
                         arch=o.arch, tag=o.tag, quiet=o.quiet,
                         gzip_level=6 if o.gzip_level is None else o.gzip_level)
    res = export_image(_open(ctx), args[0], args[1], opts)
    print(f"Exported {res.layers} layers to {args[1]}")
    print(res.manifest_digest)
    return 0


SUBCOMMANDS = {"import": _import, "checkout": _checkout, "list": _list, "remove": _remove,
               "prune-layers": _prune_layers, "export": _export}


def run(ctx: Context, argv: list[str]) -> int:
    sub = next((a for a in argv if not a.startswith("-")), None)
    if sub is None:
        if "-h" in argv or "--help" in argv:
            print(USAGE)
            return 0
        sys.stderr.write(USAGE)
        raise OstreeError('No "container" subcommand specified')
    rest = list(argv)
    rest.remove(sub)
    fn = SUBCOMMANDS.get(sub)
    if fn is None:
        sys.stderr.write(USAGE)
        raise OstreeError(f"Unknown \"container\" subcommand '{sub}'")
    return fn(ctx, rest)
