"""The ``pyostree`` command: global options, then one builtin per subcommand.

Each builtin lives in ``pyostree/cli/builtin_<name>.py`` (``-`` becomes ``_``)
and exposes ``run(ctx, argv) -> int``.  Modules are imported lazily so that
start-up stays fast.  Expected failures (:class:`OstreeError`) print
``error: MESSAGE`` and exit 1, as ostree does.
"""

from __future__ import annotations

import importlib
import os
import sys

from pyostree import OSTREE_COMPAT_VERSION
from pyostree.errors import OstreeError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo

# name -> (module, summary); order is the order `--help` lists them
COMMANDS: dict[str, str] = {
    "admin": "Commands for managing a host system booted with ostree",
    "cat": "Concatenate contents of files",
    "checkout": "Check out a commit into a filesystem tree",
    "checksum": "Checksum a file or directory",
    "commit": "Commit a new revision",
    "config": "Change repo configuration settings",
    "container": "Import, check out, list, remove and export container images",
    "diff": "Compare directory TARGETDIR against revision REV",
    "export": "Stream COMMIT to stdout in tar format",
    "find-remotes": "Find remotes to serve the given refs",
    "create-usb": "Copy the refs to a USB stick",
    "fsck": "Check the repository for consistency",
    "gpg-sign": "Sign a commit",
    "init": "Initialize a new empty repository",
    "log": "Show log starting at commit or ref",
    "ls": "List file paths",
    "prune": "Search for unreachable objects",
    "pull-local": "Copy data from SRC_REPO",
    "pull": "Download data from remote repository",
    "refs": "List refs",
    "remote": "Remote commands that may involve internet access",
    "reset": "Reset a REF to a previous COMMIT",
    "rev-parse": "Output the target of a rev",
    "sign": "Sign a commit",
    "show": "Output a metadata object",
    "static-delta": "Static delta related commands",
    "summary": "Manage summary metadata",
}
# Commands that work but are not listed in `--help`
HIDDEN_COMMANDS: dict[str, str] = {}

# Commands that need no repository
NO_REPO = {"admin", "checksum", "init", "container"}


class Context:
    """What every builtin gets: the global options and a way to open the repo.

    A plain class, not a dataclass: importing dataclasses costs start-up time.
    """

    def __init__(self, repo_path: str | None = None, verbose: bool = False, command: str = "",
                 extra: dict[str, object] | None = None) -> None:
        self.repo_path = repo_path
        self.verbose = verbose
        self.command = command
        self.extra: dict[str, object] = extra if extra is not None else {}

    def find_repo_path(self) -> str:
        if self.repo_path:
            return self.repo_path
        env = os.environ.get("OSTREE_REPO")
        if env:
            return env
        # a repository in the current directory
        if os.path.isfile("config") and os.path.isdir("objects"):
            return "."
        # the default sysroot's repo ($OSTREE_SYSROOT, as libostree's get_default_repo_path)
        sysroot_repo = os.path.join(os.environ.get("OSTREE_SYSROOT") or "/", "ostree/repo")
        if os.path.isdir(sysroot_repo):
            return sysroot_repo
        raise OstreeError("Command requires a --repo argument")

    def open_repo(self) -> Repo:
        from pyostree.store.repo import Repo

        return Repo.open(self.find_repo_path())


def _version() -> str:
    from pyostree import __version__

    # Only what pyostree really implements: scripts probe this list (e.g. for
    # gpgme) to decide which checks to run, and a feature claimed but missing
    # turns a skip into a failure.
    features = ["libarchive", "gpgme", "sign-ed25519", "release", "overlayfs-whiteouts", "container", "composefs"]
    lines = ["libostree:", f" Version: '{OSTREE_COMPAT_VERSION}'", f" pyostree: '{__version__}'", " Features:"]
    lines += [f"  - {f}" for f in features]
    return "\n".join(lines)


def _usage(out: object = None) -> str:
    lines = ["Usage:", "  pyostree [OPTION…] COMMAND", "", "Builtin Commands:"]
    for name, summary in COMMANDS.items():
        lines.append(f"  {name:<17} {summary}")
    lines += ["", "Help Options:",
              "  -h, --help        Show help options",
              "", "Application Options:",
              "  -v, --verbose     Print debug information during command processing",
              "  --version         Print version information and exit", ""]
    return "\n".join(lines)


def _find_extension(argv: list[str]) -> str | None:
    """``ostree-VERB`` for the first non-option argument if VERB is no builtin (as ostree)."""
    for a in argv:
        if not a or a.startswith("-"):
            continue
        if a in COMMANDS or a in HIDDEN_COMMANDS:
            return None
        ext = f"ostree-{a}"
        lib = f"/usr/lib/ostree/{ext}"
        if os.path.exists(lib):
            return lib
        import shutil

        return ext if shutil.which(ext) else None
    return None


def _generic_help(command: str) -> str:
    summary = COMMANDS.get(command) or HIDDEN_COMMANDS.get(command, "")
    return (f"Usage:\n  pyostree {command} [OPTION…]\n\n{summary}\n\n"
            "Help Options:\n  -h, --help        Show help options\n\n"
            "Application Options:\n"
            "  -v, --verbose     Print debug information during command processing\n"
            "  --version         Print version information and exit\n")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    ext = _find_extension(argv)
    if ext is not None:
        try:
            os.execvp(ext, [ext, *argv])
        except OSError as e:
            sys.stderr.write(f"error: Executing {ext}: {e.strerror}\n")
            return 1
    ctx = Context()
    rest: list[str] = []
    command: str | None = None
    i = 0
    # Global options may come before the command; --repo may come anywhere.
    while i < len(argv):
        a = argv[i]
        if command is None and a in ("--version",):
            try:
                print(_version(), flush=True)
            except BrokenPipeError:  # `ostree --version | grep -q` closes the pipe early
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            return 0
        if command is None and a in ("-h", "--help"):
            print(_usage())
            return 0
        if a in ("-v", "--verbose") and command is None:
            ctx.verbose = True
        elif a == "--":
            rest.extend(argv[i:])
            break
        elif a.startswith("--repo="):
            ctx.repo_path = a[len("--repo="):]
        elif a == "--repo" and i + 1 < len(argv):
            ctx.repo_path = argv[i + 1]
            i += 1
        elif command is None and not a.startswith("-"):
            command = a
        else:
            rest.append(a)
        i += 1
    if command is None:
        sys.stderr.write(_usage() + "\nerror: No command specified\n")
        return 1
    if command not in COMMANDS and command not in HIDDEN_COMMANDS:
        sys.stderr.write(_usage() + f"\nerror: Unknown command '{command}'\n")
        return 1
    ctx.command = command
    modname = "pyostree.cli.builtin_" + command.replace("-", "_")
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name == modname:
            if any(a in ("-h", "--help") for a in rest):
                sys.stdout.write(_generic_help(command))
                return 0
            sys.stderr.write(f"error: Command '{command}' is not implemented yet\n")
            return 1
        raise
    try:
        rc: int = mod.run(ctx, rest)
        sys.stdout.flush()
        return rc
    except OstreeError as e:
        sys.stdout.flush()
        sys.stderr.write(f"error: {e}\n")
        return 1
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        # an unexpected OS failure still gets a clean one-line error
        where = f" ({e.filename})" if isinstance(getattr(e, "filename", None), str) else ""  # not an fd
        sys.stderr.write(f"error: {e.strerror or e}{where}\n")
        return 1
    except (ValueError, RecursionError, MemoryError, UnicodeError) as e:
        # Input we did not anticipate must still not end in a traceback; the
        # message names the failure, PYOSTREE_DEBUG=1 shows where it happened.
        if os.environ.get("PYOSTREE_DEBUG"):
            raise
        sys.stdout.flush()
        sys.stderr.write(f"error: {type(e).__name__}: {e}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
