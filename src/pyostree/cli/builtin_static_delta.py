"""``ostree static-delta``: list, show, delete, generate, apply-offline, verify, indexes, reindex."""

from __future__ import annotations

import os
import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, STRINGS, Opt, parse
from pyostree.errors import OstreeError
from pyostree.remote import deltas

SUBCOMMANDS: list[tuple[str, str]] = [
    ("list", "List static delta files"),
    ("show", "Dump information on a delta"),
    ("delete", "Remove a delta"),
    ("generate", "Generate static delta files"),
    ("apply-offline", "Apply static delta file"),
    ("verify", "Verify static delta signatures"),
    ("indexes", "List static delta indexes"),
    ("reindex", "Regenerate static delta indexes"),
]

GENERATE_OPTIONS = [
    Opt("from", None, STRING, "Create delta from revision REV", "REV", dest="from_"),
    Opt("empty", None, FLAG, "Create delta from scratch"),
    Opt("inline", None, FLAG, "Inline delta parts into main delta"),
    Opt("to", None, STRING, "Create delta to revision REV", "REV"),
    Opt("disable-bsdiff", None, FLAG, "Disable use of bsdiff"),
    Opt("if-not-exists", "n", FLAG, "Only generate if a delta does not already exist"),
    Opt("set-endianness", None, STRING, "Choose metadata endianness ('l' or 'B')", "ENDIAN"),
    Opt("swap-endianness", None, FLAG, "Swap metadata endianness from host order"),
    Opt("min-fallback-size", None, STRING, "Minimum uncompressed size in megabytes for individual HTTP request"),
    Opt("max-bsdiff-size", None, STRING, "Maximum size in megabytes to consider bsdiff compression for input files"),
    Opt("max-chunk-size", None, STRING, "Maximum size of delta chunks in megabytes"),
    Opt("filename", None, STRING, "Write the delta content to PATH (a directory).  If not specified, "
        "the OSTree repository is used", "PATH"),
    Opt("sign", None, STRINGS, "Sign the delta with", "KEY_ID"),
    Opt("sign-type", None, STRING, "Signature type to use (defaults to 'ed25519')", "NAME"),
    Opt("keys-file", None, STRING, "Read key(s) from file", "NAME"),
]
SIGN_OPTIONS = [
    Opt("sign-type", None, STRING, "Signature type to use (defaults to 'ed25519')", "NAME"),
    Opt("keys-file", None, STRING, "Read key(s) from file", "NAME"),
    Opt("keys-dir", None, STRING, "Redefine system-wide directories with public and revoked keys for verification",
        "NAME"),
]
REINDEX_OPTIONS = [Opt("to", None, STRING, "Only update delta index to revision REV", "REV")]


def _usage() -> str:
    lines = ["Usage:", "  pyostree static-delta [OPTION…] COMMAND", "", 'Builtin "static-delta" Commands:']
    lines += [f"  {name:<17}{desc}" for name, desc in SUBCOMMANDS]
    return "\n".join(lines) + "\n\n"


def _strtoull(s: str) -> int:
    digits = ""
    for ch in s.strip():
        if ch.isdigit():
            digits += ch
        else:
            break
    return int(digits) if digits else 0


def run(ctx: Context, argv: list[str]) -> int:
    cmd: str | None = None
    want_help = False
    for a in argv:
        if not a.startswith("-"):
            cmd = a
            break
        if a in ("--help", "-h"):
            want_help = True
            break
    if cmd is None and not want_help:
        sys.stderr.write(_usage())
        raise OstreeError("No command specified")
    names = [n for n, _ in SUBCOMMANDS]
    if cmd is None or cmd not in names:
        if want_help:
            sys.stdout.write(_usage())
            return 0
        sys.stderr.write(_usage())
        raise OstreeError(f'Unknown "static-delta" subcommand \'{cmd}\'')
    rest = list(argv)
    rest.remove(cmd)
    fn = globals()["_cmd_" + cmd.replace("-", "_")]
    rc: int = fn(ctx, rest)
    return rc


def _cmd_list(ctx: Context, argv: list[str]) -> int:
    parse(argv, [], "static-delta list [OPTION…]")
    repo = ctx.open_repo()
    names = deltas.list_deltas(repo)
    print("\n".join(names) if names else "(No static deltas)")
    return 0


def _cmd_indexes(ctx: Context, argv: list[str]) -> int:
    parse(argv, [], "static-delta indexes [OPTION…]")
    repo = ctx.open_repo()
    names = deltas.list_delta_indexes(repo)
    print("\n".join(names) if names else "(No static deltas indexes)")
    return 0


def _cmd_reindex(ctx: Context, argv: list[str]) -> int:
    o, _ = parse(argv, REINDEX_OPTIONS, "static-delta reindex [OPTION…]")
    repo = ctx.open_repo()
    with repo.lock(exclusive=False):
        deltas.reindex(repo, o.to)
    return 0


def _cmd_show(ctx: Context, argv: list[str]) -> int:
    _, args = parse(argv, [], "static-delta show [OPTION…]")
    repo = ctx.open_repo()
    if not args:
        raise OstreeError("DELTA must be specified")
    print("\n".join(deltas.show(repo, args[0])))
    return 0


def _cmd_delete(ctx: Context, argv: list[str]) -> int:
    _, args = parse(argv, [], "static-delta delete [OPTION…]")
    repo = ctx.open_repo()
    if not args:
        raise OstreeError("DELTA must be specified")
    with repo.lock(exclusive=True):
        deltas.delete(repo, args[0])
    return 0


def _cmd_generate(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, GENERATE_OPTIONS, "static-delta generate [OPTION…] [TO]")
    repo = ctx.open_repo()
    to_rev = o.to or (args[0] if args else None)
    if to_rev is None:
        raise OstreeError("TO revision must be specified")
    if o.empty:
        if o.from_:
            raise OstreeError("Cannot specify both --empty and --from=REV")
        from_source = None
    else:
        from_source = o.from_ if o.from_ is not None else to_rev + "^"
    from_resolved = repo.resolve_rev(from_source) if from_source is not None else None
    to_resolved = repo.resolve_rev(to_rev)
    assert to_resolved is not None
    if o.if_not_exists:
        delta_id = deltas.delta_name(from_resolved, to_resolved)
        if deltas.exists(repo, delta_id):
            print(f"Delta {delta_id} already exists.")
            return 0
    endianness: str | None = None
    if o.set_endianness is not None:
        if o.set_endianness not in ("l", "B"):
            raise OstreeError(f"Invalid endianness '{o.set_endianness}'")
        endianness = o.set_endianness
    if o.swap_endianness:
        host = endianness or ("l" if sys.byteorder == "little" else "B")
        endianness = "B" if host == "l" else "l"
    sign_keys: list[str] = list(o.sign or [])
    if o.keys_file:
        # one secret key a line, as ostree reads them
        import os

        if not os.path.isfile(o.keys_file):
            raise OstreeError(f"File object '{o.keys_file}' is not a regular file")
        try:
            with open(o.keys_file, encoding="utf-8", errors="replace") as f:
                sign_keys += f.read().splitlines()
        except OSError as e:
            raise OstreeError(f"{o.keys_file}: {e.strerror}") from None
    opts = deltas.GenerateOptions(endianness=endianness, inline=bool(o.inline), filename=o.filename,
                                  sign_type=o.sign_type or "ed25519", sign_keys=sign_keys)
    if sign_keys:
        from pyostree.remote.sign import get_engine

        get_engine(opts.sign_type)  # an unknown type fails before any work
    if o.min_fallback_size is not None:
        opts.min_fallback_size = _strtoull(o.min_fallback_size)
    if o.max_bsdiff_size is not None:
        opts.max_bsdiff_size = _strtoull(o.max_bsdiff_size)
    opts.bsdiff = not o.disable_bsdiff
    if o.max_chunk_size is not None:
        opts.max_chunk_size = _strtoull(o.max_chunk_size)
    if o.filename is not None and o.filename == "":
        raise OstreeError("Invalid 'filename' parameter")
    print("Generating static delta:")
    print(f"  From: {from_resolved or 'empty'}")
    print(f"  To:   {to_resolved}", flush=True)
    with repo.lock(exclusive=False):
        stats = deltas.generate(repo, from_resolved, to_resolved, opts)
    # ostree's generate always runs verbose; these go to stderr as there
    sys.stderr.write(f"uncompressed={stats.uncompressed} compressed={stats.compressed} loose={stats.loose}\n"
                     f"rollsum={stats.n_rollsum} objects, {stats.rollsum_size} bytes\n"
                     f"bsdiff={stats.n_bsdiff} objects\n")
    return 0


def _cmd_apply_offline(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, SIGN_OPTIONS, "static-delta apply-offline [OPTION…]")
    repo = ctx.open_repo()
    if not args:
        raise OstreeError("PATH must be specified")
    from pyostree.remote.deltas import signing

    # as an ostree built with ed25519 support: the type defaults to ed25519, and
    # without key arguments the system keys are used if there are any
    engine = signing.load_engine(o.sign_type or "ed25519", args[1:], o.keys_file, o.keys_dir, optional=True)
    checked = False
    sbpath = args[0] if not os.path.isdir(args[0]) else os.path.join(args[0], "superblock")
    try:
        with open(sbpath, "rb") as f:
            sbdata = f.read()
    except OSError:
        sbdata = b""  # apply_offline reports it
    if signing.is_signed(sbdata):
        if engine is None:
            if repo.config.get_bool("core", "sign-verify-deltas", False):
                raise OstreeError("Key is mandatory to check delta signature")
        else:
            signing.verify(sbdata, engine)
            checked = True
    deltas.apply_offline(repo, args[0], signature_checked=checked)
    return 0


def _cmd_verify(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, SIGN_OPTIONS, "static-delta verify [OPTION…] STATIC-DELTA-FILE [KEY-ID...]")
    repo = ctx.open_repo()
    if not args:
        raise OstreeError("DELTA must be specified")
    from pyostree.remote.deltas import signing
    from pyostree.remote.sign import get_engine

    try:
        get_engine(o.sign_type or "ed25519")
    except OstreeError:
        print("Sign-type not supported")
        raise
    engine = signing.load_engine(o.sign_type or "ed25519", args[1:], o.keys_file, o.keys_dir, optional=False)
    assert engine is not None
    delta_id = args[0]
    try:
        if "/" in delta_id:
            try:
                with open(delta_id, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise OstreeError(f"openat({delta_id}): {e.strerror}") from None
        else:
            from_, to = deltas.parse_delta_name(delta_id)
            rel = deltas.delta_relpath(from_, to, "superblock")
            try:
                fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
            except OSError as e:
                raise OstreeError(f"openat({rel}): {e.strerror}") from None
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        signing.verify(data, engine)
    except OstreeError:
        print("Verification fails", flush=True)
        raise
    print("Verification OK")
    return 0
