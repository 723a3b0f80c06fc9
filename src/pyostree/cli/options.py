"""A GOption-style command-line parser, so that flags behave as in ostree.

Options and positional arguments may be interleaved; ``--opt=VALUE``,
``--opt VALUE``, ``-o VALUE`` and combined short flags (``-UH``) work; ``--``
ends option parsing.  Unknown options are an error (``Unknown option --x``).
"""

from __future__ import annotations

import sys

from pyostree.errors import OstreeError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

FLAG = "flag"
STRING = "string"
STRINGS = "strings"  # may repeat
INT = "int"
CALLBACK = "callback"


class Opt:
    """One option's spec (a plain class: dataclasses cost start-up time)."""

    __slots__ = ("dest", "help", "hidden", "kind", "long", "metavar", "optional_value", "short",
                 "show_metavar")

    def __init__(self, long: str, short: str | None = None, kind: str = FLAG, help: str = "",
                 metavar: str = "", dest: str | None = None, optional_value: bool = False,
                 show_metavar: bool = True, hidden: bool = False) -> None:
        self.long = long
        self.short = short
        self.kind = kind
        self.help = help
        self.metavar = metavar
        self.dest = dest
        self.optional_value = optional_value  # flag that may take =VALUE
        self.show_metavar = show_metavar  # False: help shows just --opt (no arg_description)
        self.hidden = hidden  # G_OPTION_FLAG_HIDDEN: not in --help (keeps the help ostree 2022.7's)

    @property
    def key(self) -> str:
        return self.dest or self.long.replace("-", "_")


class Options:
    """Parsed option values; missing ones read as the option's empty value."""

    def __init__(self, specs: list[Opt]) -> None:
        for o in specs:
            if o.kind == FLAG:
                setattr(self, o.key, False)
            elif o.kind == STRINGS:
                setattr(self, o.key, [])
            else:
                setattr(self, o.key, None)

    def __getattr__(self, name: str) -> Any:  # only for names not set
        raise AttributeError(name)


G_MININT = -(1 << 31)
G_MAXINT = (1 << 31) - 1


def strtol(text: str) -> tuple[int, int]:
    """C ``strtol(text, &end, 0)``: (value, characters consumed); 0 consumed when nothing parses."""
    i = 0
    n = len(text)
    while i < n and text[i] in " \t\n\v\f\r":
        i += 1
    neg = False
    if i < n and text[i] in "+-":
        neg = text[i] == "-"
        i += 1
    base = 10
    if text[i:i + 2] in ("0x", "0X") and i + 2 < n and text[i + 2] in "0123456789abcdefABCDEF":
        base = 16
        i += 2
    elif text[i:i + 1] == "0":
        base = 8
    start = i
    digits = "0123456789abcdef"[:base]
    while i < n and text[i].lower() in digits:
        i += 1
    if i == start:
        return 0, 0
    v = int(text[start:i], base)
    return (-v if neg else v), i


def parse_gint(value: str, name: str) -> int:
    """An integer option as GOption parses it (``strtol`` base 0, 32-bit range), with its messages."""
    v, used = strtol(value)
    if not value or used != len(value):
        raise OstreeError(f"Cannot parse integer value “{value}” for {name}")
    if not G_MININT <= v <= G_MAXINT:
        raise OstreeError(f"Integer value “{value}” for {name} out of range")
    return v


def parse(argv: list[str], specs: list[Opt], usage: str = "", summary: str = "") -> tuple[Options, list[str]]:
    # every ostree command also takes -v/--verbose (unless it has its own -v)
    by_long = {"verbose": Opt("verbose", "v", FLAG, dest="_verbose")}
    by_long.update({o.long: o for o in specs})
    by_short = {"v": by_long["verbose"]} if not any(o.short == "v" for o in specs) else {}
    by_short.update({o.short: o for o in specs if o.short})
    opts = Options(specs)
    args: list[str] = []

    def store(o: Opt, value: str | None, name: str) -> None:
        if o.kind == FLAG:
            setattr(opts, o.key, True if value is None else value)
        elif o.kind == STRING:
            setattr(opts, o.key, value)
        elif o.kind == STRINGS:
            getattr(opts, o.key).append(value)
        elif o.kind == INT:
            setattr(opts, o.key, parse_gint(value or "", name))

    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args.extend(argv[i:])
            break
        if a in ("-h", "--help", "-?"):
            _print_help(usage, summary, specs)
            raise SystemExit(0)
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            o = by_long.get(name)
            if o is None:
                raise OstreeError(f"Unknown option --{name}")
            if o.kind == FLAG:
                # GOption (G_OPTION_ARG_NONE) takes --flag=ANYTHING and sets the flag, ignoring
                # the value; only flags with an optional value look at it
                store(o, value if eq and o.optional_value else None, a)
                continue
            if not eq:
                if i >= len(argv):
                    raise OstreeError(f"Missing argument for --{name}")
                value = argv[i]
                i += 1
            store(o, value, "--" + name)
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                o = by_short.get(ch)
                if o is None:
                    raise OstreeError(f"Unknown option -{ch}")
                if o.kind == FLAG:
                    store(o, None, "-" + ch)
                    j += 1
                    continue
                value = a[j + 1:]
                if not value:
                    if i >= len(argv):
                        raise OstreeError(f"Missing argument for -{ch}")
                    value = argv[i]
                    i += 1
                store(o, value, "-" + ch)
                break
            continue
        args.append(a)
    return opts, args


def help_text(usage: str, summary: str, specs: list[Opt]) -> str:
    """The ``--help`` text, laid out like GOption's."""
    out = [f"Usage:\n  pyostree {usage}", ""]
    if summary:
        out += [summary, ""]
    rows: list[tuple[str, str]] = []
    if not usage.startswith(("checksum", "admin", "remote add", "remote delete")) \
            and not any(o.long == "repo" for o in specs):
        rows.append(("--repo=PATH", "Path to OSTree repository (defaults to current directory or "
                                    "/sysroot/ostree/repo)"))
    for o in specs:
        if o.hidden:
            continue
        flag = (f"-{o.short}, " if o.short else "") + f"--{o.long}"
        if o.kind != FLAG and o.show_metavar:
            flag += "=" + (o.metavar or o.long.upper())
        rows.append((flag, o.help))
    verbose = "--verbose" if any(o.short == "v" for o in specs) else "-v, --verbose"
    rows.append((verbose, "Print debug information during command processing"))
    rows.append(("--version", "Print version information and exit"))
    width = max([len("-h, --help")] + [len(f) for f, _ in rows]) + 5
    out.append("Help Options:")
    out.append(f"  {'-h, --help':<{width}}Show help options")
    out.append("")
    out.append("Application Options:")
    for flag, h in rows:
        out.append(f"  {flag:<{width}}{h}")
    return "\n".join(out) + "\n\n"


def _print_help(usage: str, summary: str, specs: list[Opt]) -> None:
    sys.stdout.write(help_text(usage, summary, specs))


def usage_error(message: str) -> OstreeError:
    return OstreeError(message)


def usage_fail(message: str, usage: str, summary: str, specs: list[Opt]) -> OstreeError:
    """As ostree's usage errors: the help goes to stderr, then ``error: MESSAGE``."""
    sys.stdout.flush()
    sys.stderr.write(help_text(usage, summary, specs) + "\n")
    return OstreeError(message)


def split_subcommand(argv: list[str]) -> tuple[str | None, list[str]]:
    """``admin``/``remote`` style: the first non-option word is the subcommand.

    Returns (subcommand or None, every other argument in order; ``--`` and what
    follows are kept as they are).
    """
    sub: str | None = None
    rest: list[str] = []
    for i, a in enumerate(argv):
        if a == "--":
            rest.extend(argv[i:])
            break
        if sub is None and not a.startswith("-"):
            sub = a
            continue
        rest.append(a)
    return sub, rest
