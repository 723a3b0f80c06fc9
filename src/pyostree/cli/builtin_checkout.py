"""``ostree checkout``: check out a commit into a filesystem tree."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse
from pyostree.errors import OstreeError
from pyostree.store.repo import Repo
from pyostree.tree.checkout import CheckoutMode, CheckoutOptions, OverwriteMode, checkout_tree

OPTIONS = [
    Opt("user-mode", "U", FLAG, "Do not change file ownership or initialize extended attributes"),
    Opt("disable-cache", None, FLAG, "Do not update or use the internal repository uncompressed object cache"),
    Opt("subpath", None, STRING, "Checkout sub-directory PATH", "PATH"),
    Opt("union", None, FLAG, "Keep existing directories, overwrite existing files"),
    Opt("union-add", None, FLAG, "Keep existing files/directories, only add new"),
    Opt("union-identical", None, FLAG, "When layering checkouts, error out if a file would be replaced with a different version, but add new files and directories"),
    Opt("whiteouts", None, FLAG, "Process 'whiteout' (Docker style) entries"),
    Opt("process-passthrough-whiteouts", None, FLAG, "Enable overlayfs whiteout extraction into char 0:0 devices"),
    Opt("unquote-special-files", None, FLAG, "Recreate device nodes/FIFOs quoted as .ostree-dev.NAME (pyostree)"),
    Opt("allow-noent", None, FLAG, "Do nothing if specified path does not exist"),
    Opt("from-stdin", None, FLAG, "Process many checkouts from standard input"),
    Opt("from-file", None, STRING, "Process many checkouts from input file", "FILE"),
    Opt("fsync", None, STRING, "Specify how to invoke fsync()", "POLICY"),
    Opt("require-hardlinks", "H", FLAG, "Do not fall back to full copies if hardlinking fails"),
    Opt("force-copy-zerosized", "z", FLAG, "Do not hardlink zero-sized files"),
    Opt("force-copy", "C", FLAG, "Never hardlink (but may reflink if available)"),
    Opt("bareuseronly-dirs", "M", FLAG, "Suppress mode bits outside of 0775 for directories (suid, world writable, etc.)"),
    Opt("skip-list", None, STRING, "File containing list of files to skip", "FILE"),
    Opt("selinux-policy", None, STRING, "Set SELinux labels based on policy in root filesystem PATH (may be /); implies --force-copy", "PATH"),
    Opt("selinux-prefix", None, STRING, "When setting SELinux labels, prefix all paths by PREFIX", "PREFIX"),
    Opt("composefs", None, FLAG, "Only create a composefs blob", hidden=True),
    Opt("composefs-noverity", None, FLAG, "Only create a composefs blob, and disable fsverity", hidden=True),
]

USAGE = "checkout [OPTION…] COMMIT [DESTINATION]"
SUMMARY = "Check out a commit into a filesystem tree"

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", "none"}


def _parse_bool(value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise OstreeError(f"Invalid boolean argument '{value}'")


def _read_skip_list(path: str) -> frozenset[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OstreeError(f"{path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OstreeError(f"{path}: invalid UTF-8") from None
    return frozenset(line for line in text.split("\n") if line)


def _options_for(o: object, subpath: str | None) -> CheckoutOptions:
    """Mirror ot-builtin-checkout.c: which options select ostree_repo_checkout_at()."""
    g = o.__getattribute__
    at_path = bool(g("disable_cache") or g("whiteouts") or g("require_hardlinks") or g("union_add")
                   or g("force_copy") or g("force_copy_zerosized") or g("bareuseronly_dirs")
                   or g("union_identical") or g("skip_list") is not None or g("selinux_policy")
                   or g("selinux_prefix") or g("process_passthrough_whiteouts"))
    opts = CheckoutOptions()
    opts.mode = CheckoutMode.USER if g("user_mode") else CheckoutMode.NONE
    opts.subpath = "/" if subpath is None else subpath
    opts.unquote_special_files = bool(g("unquote_special_files"))
    if not at_path:
        # ostree_repo_checkout_tree(): uncompressed cache on, --allow-noent honoured
        opts.overwrite = OverwriteMode.UNION_FILES if g("union") else OverwriteMode.NONE
        opts.enable_uncompressed_cache = True
        opts.allow_noent = bool(g("allow_noent"))
        return opts
    if g("selinux_policy"):
        raise OstreeError("--selinux-policy is not supported by pyostree")
    if g("union") and g("union_add"):
        raise OstreeError("Cannot specify both --union and --union-add")
    if g("union") and g("union_identical"):
        raise OstreeError("Cannot specify both --union and --union-identical")
    if g("union_add") and g("union_identical"):
        raise OstreeError("Cannot specify both --union-add and --union-identical")
    if g("require_hardlinks") and g("force_copy"):
        raise OstreeError("Cannot specify both --require-hardlinks and --force-copy")
    if g("selinux_prefix"):
        raise OstreeError("Cannot specify --selinux-prefix without --selinux-policy")
    if g("union"):
        opts.overwrite = OverwriteMode.UNION_FILES
    elif g("union_add"):
        opts.overwrite = OverwriteMode.ADD_FILES
    elif g("union_identical"):
        if not g("require_hardlinks"):
            raise OstreeError("--union-identical requires --require-hardlinks")
        opts.overwrite = OverwriteMode.UNION_IDENTICAL
    opts.process_whiteouts = bool(g("whiteouts"))
    opts.process_passthrough_whiteouts = bool(g("process_passthrough_whiteouts"))
    if g("skip_list") is not None:
        opts.skip_paths = _read_skip_list(g("skip_list"))
    opts.no_copy_fallback = bool(g("require_hardlinks"))
    opts.force_copy = bool(g("force_copy"))
    opts.bareuseronly_dirs = bool(g("bareuseronly_dirs"))
    return opts


def _many(repo: Repo, o: object, destination: str, data: bytes) -> None:
    fields = data.split(b"\0")
    i = 0
    while i < len(fields) and fields[i]:
        rev = fields[i].decode("utf-8", "surrogateescape")
        subpath = fields[i + 1].decode("utf-8", "surrogateescape") if i + 1 < len(fields) else ""
        i += 2
        commit = repo.resolve_rev(rev)
        assert commit is not None
        try:
            checkout_tree(repo, commit, destination, _options_for(o, subpath))
        except OstreeError as e:
            raise OstreeError(f"Processing tree {commit}: {e}", errno=e.errno) from None


def _composefs(repo: Repo, o: object, commit: str, destination: str) -> None:
    """``--composefs``: write the commit's composefs image to *destination* (ostree 2026.4).

    ``--process-passthrough-whiteouts`` is allowed with it (pyostree; ostree refuses it).
    """
    g = o.__getattribute__
    if any(g(k) for k in ("disable_cache", "whiteouts", "require_hardlinks", "union_add", "force_copy",
                          "force_copy_zerosized", "bareuseronly_dirs", "union_identical", "skip_list",
                          "selinux_policy", "selinux_prefix")):
        raise OstreeError("Specified options are incompatible with --composefs")
    from pyostree.composefs.checkout import Verity, checkout_composefs

    checkout_composefs(repo, commit, destination,
                       verity=Verity.NO if g("composefs_noverity") else Verity.YES,
                       passthrough_whiteouts=bool(g("process_passthrough_whiteouts")))


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = Repo.open(ctx.find_repo_path())
    if o.fsync is not None and not _parse_bool(o.fsync):
        repo.disable_fsync = True
    if not args:
        sys.stderr.write(f"Usage:\n  pyostree {USAGE}\n\n{SUMMARY}\n\n")
        raise OstreeError("COMMIT must be specified")
    if o.from_stdin or o.from_file is not None:
        destination = args[0]
        if o.from_stdin:
            data = sys.stdin.buffer.read()
        else:
            try:
                with open(o.from_file, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise OstreeError(f"{o.from_file}: {e.strerror}") from None
        _many(repo, o, destination, data)
        return 0
    rev = args[0]
    destination = args[1] if len(args) > 1 else rev
    commit = repo.resolve_rev(rev)
    assert commit is not None
    if o.composefs or o.composefs_noverity:
        _composefs(repo, o, commit, destination)
        return 0
    if o.subpath == "":
        raise OstreeError("No such file or directory: /")  # ostree's words for --subpath=
    checkout_tree(repo, commit, destination, _options_for(o, o.subpath))
    return 0
