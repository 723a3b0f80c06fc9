"""``ostree config``: get, set and unset repository configuration keys."""

from __future__ import annotations

from pyostree.cli.main import Context
from pyostree.cli.options import STRING, Opt, parse, usage_fail
from pyostree.errors import OstreeError
from pyostree.remote.remotes import validate_group_name, validate_key_name

OPTIONS = [
    Opt("group", None, STRING, "Group name", show_metavar=False),
]
USAGE = "config [OPTION…] (get KEY|set KEY VALUE|unset KEY)"
SUMMARY = "Change repo configuration settings"


def _split_key(k: str) -> tuple[str, str]:
    section, dot, key = k.partition(".")
    if not dot:
        raise OstreeError('Key must be of the form "sectionname.keyname"')
    return section, key


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, USAGE, SUMMARY)
    repo = ctx.open_repo()
    if not args:
        raise usage_fail("OPERATION must be specified", USAGE, SUMMARY, OPTIONS)
    op = args[0]
    if len(args) > (3 if op == "set" else 2):
        raise usage_fail("Too many arguments given", USAGE, SUMMARY, OPTIONS)
    cfg = repo.config
    if op == "set":
        if len(args) < 3:
            raise OstreeError("GROUP name, KEY and VALUE must be specified" if o.group
                              else "KEY and VALUE must be specified")
        section, key = (o.group, args[1]) if o.group else _split_key(args[1])
        validate_group_name(section)
        validate_key_name(key)
        cfg.set(section, key, args[2])
        repo.write_config()
    elif op == "get":
        if len(args) < 2:
            raise OstreeError("Group name and key must be specified" if o.group else "KEY must be specified")
        section, key = (o.group, args[1]) if o.group else _split_key(args[1])
        if not cfg.has_group(section):
            raise OstreeError(f"Key file does not have group “{section}”")
        value = cfg.get(section, key)
        if value is None:
            raise OstreeError(f"Key file does not have key “{key}” in group “{section}”")
        print(value)
    elif op == "unset":
        if len(args) < 2:
            raise OstreeError("Group name and key must be specified" if o.group else "KEY must be specified")
        section, key = (o.group, args[1]) if o.group else _split_key(args[1])
        if cfg.remove_key(section, key):
            repo.write_config()
    else:
        raise OstreeError(f"Unknown operation {op}")
    return 0
