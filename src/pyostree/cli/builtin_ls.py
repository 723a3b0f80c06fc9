"""``ostree ls``: list file paths of a commit."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, Opt, Options, parse, usage_fail
from pyostree.errors import OstreeError
from pyostree.store import gvariant
from pyostree.tree.treewalk import Node, commit_root, resolve

OPTIONS = [
    Opt("dironly", "d", FLAG, "Do not recurse into directory arguments"),
    Opt("recursive", "R", FLAG, "Print directories recursively"),
    Opt("checksum", "C", FLAG, "Print checksum"),
    Opt("xattrs", "X", FLAG, "Print extended attributes"),
    Opt("nul-filenames-only", None, FLAG, "Print only filenames, NUL separated"),
]
USAGE = "ls [OPTION…] COMMIT [PATH...]"
SUMMARY = "List file paths"


def format_entry(node: Node, *, checksum: bool = False, xattrs: bool = False) -> str:
    """One line of ``ostree ls`` output (without the newline)."""
    info = node.info
    if node.is_dir:
        type_c = "d"
    elif info.is_symlink:
        type_c = "l"
    elif info.is_regular:
        type_c = "-"
    else:
        raise OstreeError("Invalid file type")
    parts = [f"{type_c}0{info.mode & 0o7777:04o} {info.uid} {info.gid} {info.size:6d} "]
    if checksum:
        if node.is_dir:
            parts.append(f"{node.contents} ")
        parts.append(f"{node.checksum} ")
    if xattrs:
        parts.append("{ " + gvariant.print_value("a(ayay)", info.xattrs, True) + " } ")
    parts.append(node.path)
    if info.is_symlink and not node.is_dir:
        parts.append(f" -> {info.symlink_target}")
    return "".join(parts)


def _emit(out: list[bytes], node: Node, o: Options) -> None:
    if o.nul_filenames_only:
        out.append(node.path.encode("utf-8", "surrogateescape") + b"\0")
    else:
        out.append(format_entry(node, checksum=bool(o.checksum), xattrs=bool(o.xattrs))
                   .encode("utf-8", "surrogateescape") + b"\n")


def _recurse(out: list[bytes], node: Node, depth: int, o: Options) -> None:
    if depth > 0:
        depth -= 1
    elif depth == 0:
        return
    for child in node.children():
        _emit(out, child, o)
        if child.is_dir:
            _recurse(out, child, depth, o)
        if len(out) > 512:
            _flush(out)


def _flush(out: list[bytes]) -> None:
    sys.stdout.buffer.write(b"".join(out))
    out.clear()


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("An COMMIT argument is required", USAGE, SUMMARY, OPTIONS)
    root = commit_root(repo, args[0])
    sys.stdout.flush()
    out: list[bytes] = []
    for p in args[1:] or ["/"]:
        try:
            node = resolve(root, root, p)
            _emit(out, node, o)
            if node.is_dir:
                if o.recursive:
                    _recurse(out, node, -1, o)
                elif not o.dironly:
                    _recurse(out, node, 1, o)
        except OstreeError as e:
            _flush(out)
            sys.stdout.flush()
            raise OstreeError(f"Inspecting path '{p}': {e}") from None
    _flush(out)
    return 0
