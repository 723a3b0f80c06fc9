"""``ostree show``: output a metadata object."""

from __future__ import annotations

import os
import stat
import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, STRING, Opt, parse, usage_fail
from pyostree.errors import NotFoundError, OstreeError
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.dump import dump_variant, format_object, format_size
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo

OPTIONS = [
    Opt("print-related", None, FLAG, 'Show the "related" commits'),
    Opt("print-variant-type", None, STRING, "Memory map OBJECT (in this case a filename) to the GVariant type string",
        "TYPE"),
    Opt("print-metadata-key", None, STRING, "Print string value of metadata key", "KEY"),
    Opt("print-hex", None, FLAG, "For byte array valued keys, output an unquoted hexadecimal string", hidden=True),
    Opt("print-detached-metadata-key", None, STRING, "Print string value of detached metadata key", "KEY"),
    Opt("print-sizes", None, FLAG, "Show the commit size metadata"),
    Opt("raw", None, FLAG, "Show raw variant data"),
    Opt("no-byteswap", "B", FLAG, "Do not automatically convert variant data from big endian"),
    Opt("gpg-homedir", None, STRING, "GPG Homedir to use when looking for keyrings", "HOMEDIR"),
    Opt("gpg-verify-remote", None, STRING, "Use REMOTE name for GPG configuration", "REMOTE"),
]
USAGE = "show [OPTION…] OBJECT"
SUMMARY = "Output a metadata object"


def _print_metadata_key(repo: Repo, checksum: str, detached: bool, key: str, no_byteswap: bool,
                        print_hex: bool = False) -> None:
    if detached:
        md = repo.load_detached_metadata(checksum)
        if md is None:
            raise NotFoundError(f"No detached metadata for commit {checksum}")
    else:
        md = repo.load_commit(checksum).metadata
    for k, v in md:
        if k == key:
            if print_hex and v.type == "ay":
                print(bytes(v.value).hex())
            elif no_byteswap:
                print(gvariant.print_value(v.type, v.value, True))
            else:
                print(dump_variant(v.type, v.value))
            return
    raise NotFoundError(f"No such metadata key '{key}'")


def _print_sizes(repo: Repo, checksum: str) -> None:
    from pyostree.tree.sizes import parse_sizes

    commit = repo.load_commit(checksum)
    v = commit.get_metadata("ostree.sizes")
    if v is None:
        raise OstreeError("No metadata key ostree.sizes in commit")
    if v.type != "aay":
        raise OstreeError("Unexpected ostree.sizes metadata type")
    entries = parse_sizes([bytes(e) for e in v.value])
    archived = unpacked = new_archived = new_unpacked = new_objects = 0
    for csum, a, u, t in entries:
        archived += a
        unpacked += u
        if not repo.has_object(t, csum):
            new_archived += a
            new_unpacked += u
            new_objects += 1
    print(f"Compressed size (needed/total): {format_size(new_archived)}/{format_size(archived)}\n"
          f"Unpacked size (needed/total): {format_size(new_unpacked)}/{format_size(unpacked)}\n"
          f"Number of objects (needed/total): {new_objects}/{len(entries)}")


def _print_object(repo: Repo, objtype: ObjectType, checksum: str, raw: bool, no_byteswap: bool) -> None:
    data = repo.load_metadata(objtype, checksum)
    try:
        text = format_object(objtype.value, checksum, obj.OBJECT_VARIANT_TYPES[objtype], data,
                             raw=raw, no_byteswap=no_byteswap)
    except gvariant.GVariantError as e:
        raise OstreeError(f"Corrupted {objtype.value} object {checksum}: {e}") from None
    sys.stdout.write(text)


def _print_file(repo: Repo, checksum: str) -> None:
    co = repo.load_file(checksum)
    info = co.info
    out = [f"Object: {checksum}", "Type: file", "File Type: " + ("symlink" if info.is_symlink else "regular")]
    if info.is_symlink:
        out.append(f"Target: {info.symlink_target}")
    else:
        out.append(f"Size: {info.size}")
    out.append(f"Mode: 0{info.mode:04o}")
    out.append(f"Uid: {info.uid}")
    out.append(f"Gid: {info.gid}")
    xattrs = gvariant.print_value("a(ayay)", info.xattrs, True)
    out.append(f"Extended Attributes: {{ {xattrs} }}")
    print("\n".join(out))


def _resolve(repo: Repo, rev: str) -> str:
    csum = repo.resolve_rev(rev)
    assert csum is not None
    return csum


def _print_signatures(repo: Repo, csum: str, remote: str | None, homedir: str | None) -> None:
    """GPG signatures of a commit, as ostree (with gpgme) prints them after the commit."""
    from pyostree.remote.gpg import describe_commit_signatures

    text = describe_commit_signatures(repo, csum, remote, homedir)
    if text is not None:
        sys.stdout.flush()
        sys.stdout.write(text)


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("An object argument is required", USAGE, SUMMARY, OPTIONS)
    rev = args[0]
    if o.print_metadata_key or o.print_detached_metadata_key:
        detached = o.print_detached_metadata_key is not None
        key = o.print_detached_metadata_key if detached else o.print_metadata_key
        csum = _resolve(repo, rev)
        _print_metadata_key(repo, csum, detached, key, bool(o.no_byteswap), bool(o.print_hex))
    elif o.print_related:
        csum = _resolve(repo, rev)
        for name, c in repo.load_commit(csum).related:
            print(f"{name} {bytes(c).hex()}")
    elif o.print_variant_type:
        if not gvariant.is_valid_type(o.print_variant_type):
            raise OstreeError(f"Invalid type string '{o.print_variant_type}'")
        try:
            fd = os.open(rev, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise OstreeError(f"opendir({rev}): {e.strerror}" if e.errno is None else
                              f"{rev}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OstreeError(f"{rev}: not a regular file")
            data = f.read()
        try:
            value = gvariant.deserialize(o.print_variant_type, data)
        except gvariant.GVariantError as e:
            raise OstreeError(f"{rev}: {e}") from None
        print(dump_variant(o.print_variant_type, value))
    elif o.print_sizes:
        _print_sizes(repo, _resolve(repo, rev))
    elif not obj.is_valid_checksum(rev):
        csum = _resolve(repo, rev)
        _print_object(repo, ObjectType.COMMIT, csum, bool(o.raw), bool(o.no_byteswap))
        _print_signatures(repo, csum, o.gpg_verify_remote, o.gpg_homedir)
    else:
        for t in (ObjectType.COMMIT, ObjectType.DIR_META, ObjectType.DIR_TREE):
            if repo.has_object(t, rev):
                _print_object(repo, t, rev, bool(o.raw), bool(o.no_byteswap))
                if t is ObjectType.COMMIT:
                    _print_signatures(repo, rev, o.gpg_verify_remote, o.gpg_homedir)
                break
        else:
            _print_file(repo, rev)
    return 0
