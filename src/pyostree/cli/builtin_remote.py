"""``ostree remote``: add, delete, list and inspect remotes (subcommands)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pyostree.cli.main import Context
from pyostree.cli.options import (
    FLAG,
    STRING,
    STRINGS,
    Opt,
    Options,
    parse,
    split_subcommand,
    usage_fail,
)
from pyostree.errors import OstreeError
from pyostree.remote import remotes
from pyostree.store.repo import Repo

SUBCOMMANDS: dict[str, str] = {
    "add": "Add a remote repository",
    "delete": "Delete a remote repository",
    "show-url": "Show remote repository URL",
    "list": "List remote repository names",
    "gpg-import": "Import GPG keys",
    "gpg-list-keys": "Show remote GPG keys",
    "add-cookie": "Add a cookie to remote",
    "delete-cookie": "Remove one cookie from remote",
    "list-cookies": "Show remote repository cookies",
    "refs": "List remote refs",
    "summary": "Show remote summary",
}

_SYSROOT = Opt("sysroot", None, STRING, "Use sysroot at PATH (overrides --repo)", "PATH")
_REPO = Opt("repo", None, STRING, "Path to OSTree repository (defaults to /sysroot/ostree/repo)", "PATH")


def _usage() -> str:
    lines = ["Usage:", "  pyostree remote [OPTION…] COMMAND", "", "Remote commands that may involve internet access",
             "", 'Builtin "remote" Commands:']
    for name, summary in SUBCOMMANDS.items():
        lines.append(f"  {name:<17} {summary}")
    lines += ["", "Help Options:", "  -h, --help        Show help options", "",
              "Application Options:",
              "  -v, --verbose     Print debug information during command processing",
              "  --version         Print version information and exit", "", ""]
    return "\n".join(lines)


def _open(ctx: Context, o: Options) -> Repo:
    if getattr(o, "sysroot", None):
        import os

        from pyostree.store.repo import Repo as _Repo

        root = o.sysroot.rstrip("/") or "/"
        repo = _Repo.open(os.path.join(root, "ostree/repo"))
        # a deployment (it has a /sysroot inside) is a non-physical sysroot: its /etc gets the
        # remote configs, as ostree_sysroot_is_physical() decides
        if os.path.lexists(os.path.join(root, "sysroot")):
            repo.sysroot_dir = root
        return repo
    return ctx.open_repo()


def _add(ctx: Context, argv: list[str]) -> int:
    specs = [
        Opt("set", None, STRINGS, "Set config option KEY=VALUE for remote", "KEY=VALUE"),
        Opt("no-gpg-verify", None, FLAG, "Disable GPG verification"),
        Opt("no-sign-verify", None, FLAG, "Disable signature verification"),
        Opt("sign-verify", None, STRINGS, "Verify signatures using KEYTYPE=inline:PUBKEY or KEYTYPE=file:/path/to/key",
            "KEYTYPE=[inline|file]:PUBKEY"),
        Opt("if-not-exists", None, FLAG, "Do nothing if the provided remote exists"),
        Opt("force", None, FLAG, "Replace the provided remote if it exists"),
        Opt("gpg-import", None, STRING, "Import GPG key from FILE", "FILE"),
        Opt("custom-backend", None, STRING, "This remote has content not fetched via libostree", "NAME"),
        Opt("contenturl", None, STRING, "Use URL when fetching content", "URL"),
        Opt("collection-id", None, STRING, "Globally unique ID for this repository as an collection of refs for "
            "redistribution to other repositories", "COLLECTION-ID"),
        _REPO, _SYSROOT,
    ]
    usage = "remote add [OPTION…] NAME [metalink=|mirrorlist=]URL [BRANCH...]"
    summary = "Add a remote repository"
    o, args = parse(argv, specs, usage, summary)
    repo = _open(ctx, o)
    if o.custom_backend:
        if len(args) < 1:
            raise usage_fail("NAME must be specified", usage, summary, specs)
        url = args[1] if len(args) >= 2 else None
    else:
        if len(args) < 2:
            raise usage_fail("NAME and URL must be specified", usage, summary, specs)
        url = args[1]
    name = args[0]
    if o.if_not_exists and o.force:
        raise usage_fail("Can only specify one of --if-not-exists and --force", usage, summary, specs)
    options: dict[str, remotes.RemoteValue] = {}
    if len(args) > 2:
        options["branches"] = args[2:]
    if o.contenturl is not None:
        options["contenturl"] = o.contenturl
    if o.custom_backend is not None:
        options["custom-backend"] = o.custom_backend
    for kv in o.set:
        k, eq, v = kv.partition("=")
        if not eq:
            raise OstreeError(f"Missing '=' in KEY=VALUE pair '{kv}'")
        options[k] = v
    if o.no_gpg_verify or o.no_sign_verify:
        options["gpg-verify"] = False
    if o.no_sign_verify:
        if o.sign_verify:
            raise OstreeError("Cannot specify both --sign-verify and --no-sign-verify")
        options["sign-verify"] = False
    signs: list[str] = []
    for spec in o.sign_verify:
        keytype, eq, rest = spec.partition("=")
        if not eq:
            raise OstreeError(f"Failed to parse KEYTYPE=[inline|file]:DATA in {spec}")
        if keytype not in ("ed25519", "dummy"):
            raise OstreeError(f"Requested signature type is not implemented: {keytype}")
        keyref, _, data = rest.partition(":")
        if keyref == "inline":
            options[f"verification-{keytype}-key"] = data
        elif keyref == "file":
            options[f"verification-{keytype}-file"] = data
        else:
            raise OstreeError(f"Invalid key reference {keyref}, expected inline|file")
        signs.append(keytype)
    if signs:
        options["sign-verify"] = ",".join(signs)
    if o.collection_id is not None:
        options["collection-id"] = o.collection_id
    # read the key file before anything is written: a bad --gpg-import leaves no remote behind
    keys = _read_key_files([o.gpg_import]) if o.gpg_import is not None else None
    remotes.add_remote(repo, name, url, options, if_not_exists=bool(o.if_not_exists), replace=bool(o.force))
    if keys is not None:
        _import_keys(repo, name, keys, [])
    return 0


def _read_key_files(paths: list[str]) -> bytes:
    data = b""
    for p in paths:
        try:
            with open(p, "rb") as f:
                data += f.read()
        except OSError as e:
            raise OstreeError(f"Error opening file “{p}”: {e.strerror}") from None
    return data


def _import_keys(repo: Repo, name: str, data: bytes, key_ids: list[str]) -> None:
    from pyostree.remote.gpgkeys import gpg_import

    n = gpg_import(repo, name, data, key_ids)
    print(f'Imported {n} GPG key{"" if n == 1 else "s"} to remote "{name}"')


def _delete(ctx: Context, argv: list[str]) -> int:
    specs = [Opt("if-exists", None, FLAG, "Do nothing if the provided remote does not exist"), _REPO, _SYSROOT]
    usage, summary = "remote delete [OPTION…] NAME", "Delete a remote repository"
    o, args = parse(argv, specs, usage, summary)
    repo = _open(ctx, o)
    if not args:
        raise usage_fail("NAME must be specified", usage, summary, specs)
    remotes.delete_remote(repo, args[0], if_exists=bool(o.if_exists))
    return 0


def _show_url(ctx: Context, argv: list[str]) -> int:
    usage, summary = "remote show-url [OPTION…] NAME", "Show remote repository URL"
    _, args = parse(argv, [], usage, summary)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("NAME must be specified", usage, summary, [])
    print(remotes.get_remote_url(repo, args[0]))
    return 0


def _list(ctx: Context, argv: list[str]) -> int:
    specs = [Opt("show-urls", "u", FLAG, "Show remote URLs in list")]
    o, _ = parse(argv, specs, "remote list [OPTION…]", "List remote repository names")
    repo = ctx.open_repo()
    names = list(remotes.list_remotes(repo))
    if o.show_urls:
        width = max((len(n) for n in names), default=0)
        for n in names:
            print(f"{n:<{width}}  {remotes.get_remote_url(repo, n)}")
    else:
        for n in names:
            print(n)
    return 0


def _gpg_import(ctx: Context, argv: list[str]) -> int:
    specs = [Opt("keyring", "k", STRINGS, "Import keys from a keyring file (repeatable)", "FILE"),
             Opt("stdin", None, FLAG, "Import keys from standard input")]
    usage, summary = "remote gpg-import [OPTION…] NAME [KEY-ID...]", "Import GPG keys"
    o, args = parse(argv, specs, usage, summary)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("NAME must be specified", usage, summary, specs)
    if o.keyring and o.stdin:
        raise usage_fail("--keyring and --stdin are mutually exclusive", usage, summary, specs)
    remotes.get_remote(repo, args[0])
    data = sys.stdin.buffer.read() if o.stdin else _read_key_files(list(o.keyring))
    _import_keys(repo, args[0], data, args[1:])
    return 0


def _add_cookie(ctx: Context, argv: list[str]) -> int:
    usage, summary = "remote add-cookie [OPTION…] NAME DOMAIN PATH COOKIE_NAME VALUE", "Add a cookie to remote"
    _, args = parse(argv, [], usage, summary)
    repo = ctx.open_repo()
    if len(args) < 5:
        raise usage_fail("NAME, DOMAIN, PATH, COOKIE_NAME and VALUE must be specified", usage, summary, [])
    from pyostree.remote.cookies import add_cookie

    add_cookie(repo, *args[:5])
    return 0


def _delete_cookie(ctx: Context, argv: list[str]) -> int:
    usage, summary = "remote delete-cookie [OPTION…] NAME DOMAIN PATH COOKIE_NAME", "Remove one cookie from remote"
    _, args = parse(argv, [], usage, summary)
    repo = ctx.open_repo()
    if len(args) < 4:
        raise usage_fail("NAME, DOMAIN, PATH and COOKIE_NAME must be specified", usage, summary, [])
    from pyostree.remote.cookies import delete_cookie

    delete_cookie(repo, *args[:4])
    return 0


def _list_cookies(ctx: Context, argv: list[str]) -> int:
    usage, summary = "remote list-cookies [OPTION…] NAME", "Show remote repository cookies"
    _, args = parse(argv, [], usage, summary)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("NAME must be specified", usage, summary, [])
    from pyostree.remote.cookies import format_cookies, list_cookies

    sys.stdout.write(format_cookies(list_cookies(repo, args[0])))
    return 0


def _gpg_list_keys(ctx: Context, argv: list[str]) -> int:
    usage, summary = "remote gpg-list-keys [OPTION…] [NAME]", "Show remote GPG keys"
    _, args = parse(argv, [], usage, summary)
    repo = ctx.open_repo()
    if len(args) > 1:
        raise usage_fail("Too many arguments", usage, summary, [])
    from pyostree.remote.gpgkeys import format_keys, list_keys

    sys.stdout.write(format_keys(list_keys(repo, args[0] if args else None)))
    return 0


def _refs(ctx: Context, argv: list[str]) -> int:
    specs = [Opt("cache-dir", None, STRING, "Use custom cache dir", show_metavar=False)]
    usage, summary = "remote refs [OPTION…] NAME", "List remote refs"
    _, args = parse(argv, specs, usage, summary)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("NAME must be specified", usage, summary, specs)
    refs = remotes.remote_list_refs(repo, args[0])
    for ref in sorted(refs, key=lambda r: r.encode()):
        print(f"{args[0]}:{ref}")
    return 0


def _summary(ctx: Context, argv: list[str]) -> int:
    from pyostree.remote.summary import format_summary

    specs = [Opt("cache-dir", None, STRING, "Use custom cache dir", show_metavar=False),
             Opt("raw", None, FLAG, "Show raw variant data")]
    usage, summary = "remote summary [OPTION…] NAME", "Show remote summary"
    o, args = parse(argv, specs, usage, summary)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("NAME must be specified", usage, summary, specs)
    data = remotes.fetch_summary(repo, args[0])
    if data is None:
        raise OstreeError(f'Remote server has no summary file for remote "{args[0]}"')
    sys.stdout.write(format_summary(data, raw=bool(o.raw)))
    return 0


_HANDLERS: dict[str, Callable[[Context, list[str]], int]] = {
    "add": _add,
    "delete": _delete,
    "show-url": _show_url,
    "list": _list,
    "gpg-import": _gpg_import,
    "gpg-list-keys": _gpg_list_keys,
    "add-cookie": _add_cookie,
    "delete-cookie": _delete_cookie,
    "list-cookies": _list_cookies,
    "refs": _refs,
    "summary": _summary,
}


def run(ctx: Context, argv: list[str]) -> int:
    sub, rest = split_subcommand(argv)
    if sub is None or sub not in _HANDLERS:
        if sub is None and any(a in ("-h", "--help") for a in rest):
            sys.stdout.write(_usage())
            return 0
        sys.stderr.write(_usage())
        if sub is None:
            raise OstreeError('No "remote" subcommand specified')
        raise OstreeError(f"Unknown \"remote\" subcommand '{sub}'")
    return _HANDLERS[sub](ctx, rest)
