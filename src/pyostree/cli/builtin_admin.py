"""``ostree admin``: manage a sysroot (deployments, boot configuration).

The library is pyostree.sysroot; this module only parses flags.  Global admin
options (``--sysroot=PATH``, ``--print-current-dir``) may come before or after
the subcommand, as in ostree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pyostree.cli import options as o
from pyostree.cli.main import Context
from pyostree.errors import OstreeError
from pyostree.store.keyfile import KeyFile
from pyostree.sysroot import KernelArgs, Sysroot
from pyostree.sysroot.deployment import Deployment

GLOBAL = [o.Opt("print-current-dir", kind=o.FLAG, help=""),
          o.Opt("sysroot", kind=o.STRING, metavar="PATH", help="Create a new OSTree sysroot at PATH")]

SUBCOMMANDS: dict[str, str] = {
    "cleanup": "Delete untagged deployments and repository objects",
    "config-diff": "Diff current /etc configuration versus default",
    "deploy": "Checkout revision REFSPEC as the new default deployment",
    "init-fs": "Initialize a root filesystem",
    "os-init": "Initialize empty state for given operating system",
    "pin": 'Change the "pinning" state of a deployment',
    "set-origin": "Set Origin and create a new origin file",
    "status": "List deployments",
    "switch": "Construct new tree from REFSPEC and deploy it",
    "undeploy": "Delete deployment INDEX",
    "unlock": "Make the current deployment mutable (as a hotfix or development)",
    "upgrade": "Construct new tree from current origin and deploy it, if it changed",
    "kargs": "Change kernel arguments",
}


def _summary() -> str:
    return ("Commands for managing a host system booted with ostree\n\n"
            'Builtin "admin" Commands:') + "".join(f"\n  {k:<19}{v}" for k, v in SUBCOMMANDS.items())


class Admin:
    """One parsed admin invocation."""

    def __init__(self, name: str, argv: list[str], specs: list[o.Opt], usage: str,
                 summary: str = "") -> None:
        self.name = name
        self.usage = f"admin {name} [OPTION…] {usage}".rstrip()
        self.summary = summary or SUBCOMMANDS.get(name, "")
        self.specs = [*GLOBAL, *specs]
        # --print-current-dir is hidden from --help, as in ostree
        self.visible = [x for x in self.specs if x.long not in ("print-current-dir", "lock-finalization")]
        for arg in argv:
            if arg == "--":
                break
            if arg in ("-h", "--help", "-?"):
                sys.stdout.write(o.help_text(self.usage, self.summary, self.visible))
                raise SystemExit(0)
        self.opts, self.args = o.parse(argv, self.specs, self.usage, self.summary)

    def fail(self, message: str) -> OstreeError:
        return o.usage_fail(message, self.usage, self.summary, self.visible)

    def sysroot(self, *, load: bool = True, lock: bool = False) -> Sysroot:
        sr = Sysroot(self.opts.sysroot)
        sr.initialize()
        sr.journal = _journal
        if self.opts.print_current_dir or load:
            if lock:
                sr.lock()
            sr.load()
        if self.opts.print_current_dir:
            print_current_dir(sr)
        return sr


def _journal(msg: str) -> None:
    print(msg, flush=True)


def print_current_dir(sr: Sysroot) -> None:
    if not sr.deployments:
        raise OstreeError("Unable to find a deployment in sysroot")
    print(sr.deployment_path(sr.deployments[0]), flush=True)
    raise SystemExit(0)


def run(ctx: Context, argv: list[str]) -> int:
    sub, rest = o.split_subcommand(argv)
    fn = _COMMANDS.get(sub or "")
    if fn is None:
        specs = list(GLOBAL)
        usage = "admin [OPTION…] --print-current-dir|COMMAND"
        opts, _ = o.parse(rest, specs, usage, _summary())
        if opts.print_current_dir:
            sr = Sysroot(opts.sysroot)
            sr.load()
            print_current_dir(sr)
        sys.stderr.write(o.help_text(usage, _summary(), [GLOBAL[1]]))
        if sub is None:
            raise OstreeError('No "admin" subcommand specified')
        raise OstreeError(f"Unknown \"admin\" subcommand '{sub}'")
    return fn(rest)


# ---------------------------------------------------------------------------


def cmd_init_fs(argv: list[str]) -> int:
    a = Admin("init-fs", argv, [o.Opt("modern", kind=o.FLAG, help="Only create /boot and /ostree")],
              "PATH", "Initialize a root filesystem")
    if not a.args:
        raise a.fail("PATH must be specified")
    from pyostree.sysroot.fsutil import mkdir_p_at

    path = a.args[0]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise OstreeError(f"opendir({path}): {e.strerror}", errno=e.errno) from None
    try:
        mkdir_p_at(fd, "boot", 0o755)
        if not a.opts.modern:
            for d in ("boot", "dev", "home", "proc", "run", "sys"):
                mkdir_p_at(fd, d, 0o755)
            mkdir_p_at(fd, "root", 0o700)
            mkdir_p_at(fd, "tmp", 0o1777)
            os.chmod("tmp", 0o1777, dir_fd=fd)
    finally:
        os.close(fd)
    sr = Sysroot(path)
    try:
        sr.ensure_initialized()
    finally:
        sr.close()
    return 0


def cmd_os_init(argv: list[str]) -> int:
    a = Admin("os-init", argv, [], "OSNAME", "Initialize empty state for given operating system")
    sr = a.sysroot(load=False)
    sr.ensure_initialized()
    if a.opts.print_current_dir:
        sr.load()
        print_current_dir(sr)
    if not a.args:
        raise a.fail("OSNAME must be specified")
    osname = a.args[0]
    sr.init_osname(osname)
    print(f"ostree/deploy/{osname} initialized as OSTree root")
    return 0


DEPLOY_OPTS = [
    o.Opt("os", kind=o.STRING, metavar="OSNAME", help="Use a different operating system root than the current one"),
    o.Opt("origin-file", kind=o.STRING, metavar="FILENAME", help="Specify origin file"),
    o.Opt("no-prune", help="Don't prune the repo when done"),
    o.Opt("no-merge", help="Do not apply configuration (/etc and kernel arguments) from booted deployment"),
    o.Opt("retain", help="Do not delete previous deployments"),
    o.Opt("stage", help="Complete deployment at OS shutdown"),
    o.Opt("lock-finalization", help=""),
    o.Opt("retain-pending", help="Do not delete pending deployments"),
    o.Opt("retain-rollback", help="Do not delete rollback deployments"),
    o.Opt("not-as-default", help="Append rather than prepend new deployment"),
    o.Opt("karg-proc-cmdline", help="Import current /proc/cmdline"),
    o.Opt("karg", kind=o.STRINGS, metavar="NAME=VALUE",
          help="Set kernel argument, like root=/dev/sda1; this overrides any earlier argument with the same name"),
    o.Opt("karg-append", kind=o.STRINGS, metavar="NAME=VALUE",
          help="Append kernel argument; useful with e.g. console= that can be used multiple times"),
    o.Opt("karg-none", help="Do not import kernel arguments"),
    o.Opt("karg-delete", kind=o.STRING, metavar="NAME=VALUE", help="Delete kernel argument if exists"),
    o.Opt("overlay-initrd", kind=o.STRINGS, metavar="FILE", help="Overlay iniramfs file"),
]


def _require_osname(sr: Sysroot, osname: str | None) -> None:
    if sr.booted_deployment is None and osname is None:
        raise OstreeError("Looking for booted deployment: Not currently booted into an OSTree system "
                          "and no --os= argument given")


def _proc_cmdline() -> list[str]:
    with open("/proc/cmdline") as f:
        text = f.read().rstrip()
    return [x for x in text.split(" ") if not x.startswith(("BOOT_IMAGE=", "initrd="))]


def cmd_deploy(argv: list[str]) -> int:
    a = Admin("deploy", argv, DEPLOY_OPTS, "REFSPEC", "")
    op = a.opts
    sr = a.sysroot(lock=True)
    if not a.args:
        raise a.fail("REF/REV must be specified")
    if op.karg_proc_cmdline and op.karg_none:
        raise a.fail("Can't specify both --karg-proc-cmdline and --karg-none")
    if op.karg_none and op.karg_delete:
        raise a.fail("Can't specify both --karg-none and --karg-delete")
    if op.no_merge and op.karg_delete:
        raise a.fail("Can't specify both --no-merge and --karg-delete")
    if op.overlay_initrd:
        raise OstreeError("--overlay-initrd is not supported by pyostree")
    if op.stage and sr.booted_deployment is None:
        raise OstreeError("Cannot stage deployment: Not currently booted into an OSTree system")
    if op.stage:
        raise OstreeError("--stage is not supported by pyostree")
    refspec = a.args[0]
    _require_osname(sr, op.os)
    if op.origin_file:
        origin = KeyFile.load(op.origin_file)
    else:
        origin = Sysroot.origin_new_from_refspec(refspec)
    revision = sr.repo.resolve_rev(refspec)
    assert revision is not None
    merge = None if op.no_merge else sr.get_merge_deployment(op.os)
    sr.prepare_cleanup()
    kargs: KernelArgs | None = None
    if op.karg_none:
        kargs = KernelArgs()
    elif op.karg_proc_cmdline:
        kargs = KernelArgs.from_argv(_proc_cmdline())
    elif merge is not None and (op.karg or op.karg_append or op.karg_delete):
        prev = merge.bootconfig.get("options") if merge.bootconfig else None
        kargs = KernelArgs.from_argv((prev or "").split(" ") if prev is not None else [])
    if op.karg:
        kargs = kargs or KernelArgs()
        kargs.replace_argv(op.karg)
    if op.karg_append:
        kargs = kargs or KernelArgs()
        kargs.append_argv(op.karg_append)
    if op.karg_delete:
        if kargs is None:
            raise OstreeError(f"No key '{op.karg_delete.partition('=')[0]}' found")
        kargs.delete(op.karg_delete)
    new = sr.deploy_tree(op.os, revision, origin, merge, kargs.to_strv() if kargs is not None else None)
    sr.simple_write_deployment(op.os, new, merge, retain=op.retain,
                               retain_pending=op.retain_pending and not op.retain,
                               retain_rollback=op.retain_rollback and not op.retain,
                               not_default=op.not_as_default, no_clean=True)
    sr.cleanup(prune=not op.no_prune)
    return 0


def cmd_status(argv: list[str]) -> int:
    a = Admin("status", argv, [o.Opt("verify", "V", help="Print the commit verification status")], "")
    sr = a.sysroot()
    booted = sr.booted_deployment
    pending = rollback = None
    if booted is not None:
        pending, rollback = sr.query_deployments_for(None)
    if not sr.deployments:
        print("No deployments.")
        return 0
    from pyostree.store import objects as obj

    out: list[str] = []
    for d in sr.deployments:
        version = source_title = None
        try:
            c = sr.repo.load_commit(d.csum)
            version = obj.metadata_lookup(c.metadata, "version")
            source_title = obj.metadata_lookup(c.metadata, "ostree.source-title")
        except OstreeError:
            pass
        status = (" (staged)" if d.staged else " (pending)" if d is pending
                  else " (rollback)" if d is rollback else "")
        out.append(f"{'*' if d is booted else ' '} {d.osname} {d.csum}.{d.deployserial}{status}")
        if isinstance(version, str):
            out.append(f"    Version: {version}")
        if d.unlocked != "none":
            out.append(f"    Unlocked: {d.unlocked}")
        if d.is_pinned:
            out.append("    Pinned: yes")
        if d.origin is None:
            out.append("    origin: none")
        else:
            refspec = d.origin.get("origin", "refspec")
            out.append(f"    origin refspec: {refspec}" if refspec is not None
                       else "    origin: <unknown origin type>")
            if isinstance(source_title, str):
                out.append(f"    `- {source_title}")
            if not a.opts.verify:
                out += _gpg_status_lines(sr, d, refspec)
        if a.opts.verify:
            out.append(_verify_text(sr, d))
    print("\n".join(out))
    return 0


def _gpg_status_lines(sr: Sysroot, d: Deployment, refspec: str | None) -> list[str]:
    """``GPG: ...`` lines of ``admin status`` when the origin's remote verifies GPG signatures: the
    commit's signatures checked against the keyring of the remote named as the OS, as ostree does
    (``ostree_repo_verify_commit_for_remote(repo, csum, osname)``); an unsigned commit prints none."""
    if refspec is None:
        return []
    from pyostree.remote.gpg import commit_signatures, remote_gpg_verify, verify_commit
    from pyostree.store.refs import parse_refspec

    try:
        remote, _ref = parse_refspec(refspec)
    except OstreeError:
        return []
    if remote is None:
        return []
    try:
        gpg_verify = remote_gpg_verify(sr.repo, remote)
    except OstreeError:
        return []  # no such remote: ostree ignores the lookup's error and prints nothing
    if not gpg_verify:
        return []
    if not commit_signatures(sr.repo, d.csum):
        return []
    result = verify_commit(sr.repo, d.csum, d.osname)
    return "".join(s.describe("    GPG: ") for s in result.signatures).splitlines()


def _verify_text(sr: Sysroot, d: Deployment) -> str:
    """``admin status --verify``: ``ostree_repo_signature_verify_commit_data`` for the origin's
    remote: every enabled verifier (GPG, sign-verify) must find a good signature; their text follows
    (GPG lines unindented, then the signature engine's message), and a blank line after it."""
    from pyostree.remote.gpg import commit_signatures, remote_gpg_verify, verify_commit
    from pyostree.remote.sign import remote_verifiers, verify_for_remote
    from pyostree.store.objects import ObjectType
    from pyostree.store.refs import parse_refspec

    try:
        data = sr.repo.load_metadata(ObjectType.COMMIT, d.csum)
    except OstreeError:
        raise OstreeError("Cannot verify, failed to load commit") from None
    if d.origin is None:
        raise OstreeError("Cannot verify deployment with no origin")
    refspec = d.origin.get("origin", "refspec")
    if refspec is None:
        raise OstreeError("No origin/refspec, cannot verify")
    remote, _ref = parse_refspec(refspec)
    if remote is None:
        raise OstreeError("Cannot verify deployment without remote")
    detached = sr.repo.load_detached_metadata(d.csum)
    if detached is None:
        raise OstreeError("Can't verify commit without detached metadata")
    gpg = remote_gpg_verify(sr.repo, remote)
    verifiers = remote_verifiers(sr.repo, remote)
    if not gpg and not verifiers:
        raise OstreeError(f"Cannot verify commit for remote {remote}; GPG verification disabled, "
                          "and no signapi verifiers configured")
    text = ""
    if gpg:
        if not commit_signatures(sr.repo, d.csum):
            raise OstreeError("GPG verification enabled, but no signatures found "
                              "(use gpg-verify=false in remote config to disable)")
        result = verify_commit(sr.repo, d.csum, remote)
        result.require_valid()
        text = "".join(s.describe("GPG: ") for s in result.signatures)
    if verifiers:
        try:
            message = verify_for_remote(verifiers, data, detached)
        except OstreeError as e:
            raise OstreeError(f"Can't verify commit: {e}") from None
        text = (text + "\n" if text else "") + message
    return text  # ends in a newline; the line break after it makes the blank line ostree prints


def _indexed(sr: Sysroot, text: str) -> Deployment:
    try:
        idx = int(text)
    except ValueError:
        raise OstreeError(f"Invalid index: {text}") from None
    if idx < 0:
        raise OstreeError(f"Invalid index {idx}")
    if idx >= len(sr.deployments):
        raise OstreeError(f"Out of range deployment index {idx}, expected < {len(sr.deployments)}")
    return sr.deployments[idx]


def cmd_undeploy(argv: list[str]) -> int:
    a = Admin("undeploy", argv, [], "INDEX", "Delete deployment INDEX")
    sr = a.sysroot(lock=True)
    if not a.args:
        raise a.fail("INDEX must be specified")
    target = _indexed(sr, a.args[0])
    if target is sr.booted_deployment:
        raise OstreeError(f"Cannot undeploy currently booted deployment {a.args[0]}")
    deps = [d for d in sr.deployments if d is not target]
    sr.write_deployments(deps, do_postclean=True)
    print(f"Deleted deployment {target.csum}.{target.deployserial}")
    return 0


def cmd_cleanup(argv: list[str]) -> int:
    a = Admin("cleanup", argv, [], "", "Delete untagged deployments and repository objects")
    sr = a.sysroot(lock=True)
    sr.cleanup(prune=True)
    return 0


def cmd_set_origin(argv: list[str]) -> int:
    a = Admin("set-origin", argv, [
        o.Opt("set", "s", o.STRINGS, metavar="KEY=VALUE", help="Set config option KEY=VALUE for remote"),
        o.Opt("index", kind=o.INT, metavar="INDEX", help="Operate on the deployment INDEX, starting from zero"),
    ], "REMOTENAME URL [BRANCH]", "")
    sr = a.sysroot(lock=True)
    if len(a.args) < 2:
        raise a.fail("REMOTENAME and URL must be specified")
    remotename, url = a.args[0], a.args[1]
    if a.opts.index is not None:
        target = _indexed(sr, str(a.opts.index))
    elif sr.booted_deployment is not None:
        target = sr.booted_deployment
    else:
        raise OstreeError("Not currently booted into an OSTree system")
    from pyostree.remote.remotes import add_remote

    options: dict[str, str | bool | list[str]] = {}
    for kv in a.opts.set:
        k, eq, v = kv.partition("=")
        if not eq:
            raise OstreeError(f"Invalid option {kv}")
        options[k] = v
    add_remote(sr.repo, remotename, url, options, if_not_exists=True)
    origin = target.origin
    old_refspec = origin.get("origin", "refspec") if origin is not None else None
    if old_refspec is None:
        raise OstreeError("No origin/refspec in current deployment origin; cannot change via ostree")
    from pyostree.store.refs import parse_refspec

    _, origin_ref = parse_refspec(old_refspec)
    branch = a.args[2] if len(a.args) > 2 else origin_ref
    new_refspec = f"{remotename}:{branch}"
    if new_refspec == old_refspec:
        return 0
    new_origin = KeyFile.parse(origin.to_data()) if origin is not None else KeyFile()
    new_origin.set("origin", "refspec", new_refspec)
    sr.write_origin_file(target, new_origin)
    return 0


def cmd_kargs(argv: list[str]) -> int:
    sub = next((x for x in argv if not x.startswith("-")), None)
    if sub != "edit-in-place":
        a = Admin("kargs", argv, [], "COMMAND", 'Builtin "admin kargs" Commands:\n  edit-in-place')
        sys.stderr.write(o.help_text(a.usage, a.summary, a.visible))
        if sub is None:
            raise OstreeError('No "admin kargs" subcommand specified')
        raise OstreeError(f"Unknown \"admin kargs\" subcommand '{sub}'")
    rest = [x for x in argv if x != sub]
    a = Admin("kargs edit-in-place", rest, [
        o.Opt("append-if-missing", kind=o.STRINGS, metavar="NAME=VALUE",
              help="Append kernel arguments if they do not exist"),
    ], "", "")
    sr = a.sysroot(lock=True)
    if not sr.deployments:
        raise OstreeError("Unable to find a deployment in sysroot")
    for d in sr.deployments:
        assert d.bootconfig is not None
        k = KernelArgs.from_string(d.bootconfig.get("options"))
        for arg in a.opts.append_if_missing:
            k.append_if_missing(arg)
        sr.set_kargs_in_place(d, k.to_string())
    return 0


def cmd_upgrade(argv: list[str]) -> int:
    from pyostree.sysroot.upgrader import Upgrader, remove_transient_state

    a = Admin("upgrade", argv, [
        o.Opt("os", kind=o.STRING, metavar="OSNAME",
              help="Use a different operating system root than the current one"),
        o.Opt("reboot", "r", help="Reboot after a successful upgrade"),
        o.Opt("allow-downgrade", help="Permit deployment of chronologically older trees"),
        o.Opt("override-commit", kind=o.STRING, metavar="CHECKSUM",
              help="Deploy CHECKSUM instead of the latest tree"),
        o.Opt("pull-only", help="Do not create a deployment, just download"),
        o.Opt("deploy-only", help="Do not pull, only deploy"),
        o.Opt("stage", help="Enable staging (finalization at reboot time)"),
    ], "")
    op = a.opts
    sr = a.sysroot(lock=True)
    if op.pull_only and op.deploy_only:
        raise OstreeError("Cannot simultaneously specify --pull-only and --deploy-only")
    if op.pull_only and op.reboot:
        raise OstreeError("Cannot simultaneously specify --pull-only and --reboot")
    up = Upgrader(sr, op.os)
    origin = KeyFile.parse(up.origin.to_data())
    remove_transient_state(origin)
    if op.override_commit is not None:
        origin.set("origin", "override-commit", op.override_commit)
    up.set_origin(origin)
    try:
        changed = up.pull(allow_older=op.allow_downgrade, synthetic=op.deploy_only)
    except OstreeError:
        if op.pull_only:
            try:
                sr.cleanup(prune=True)
            except OstreeError:
                pass
        raise
    if not changed:
        print("No update available.")
        return 0
    if not op.pull_only:
        up.deploy(stage=op.stage or bool(os.environ.get("OSTREE_EX_STAGE_DEPLOYMENTS")))
    return 0


def cmd_switch(argv: list[str]) -> int:
    from pyostree.store.refs import parse_refspec, set_ref
    from pyostree.sysroot.upgrader import Upgrader

    a = Admin("switch", argv, [
        o.Opt("reboot", "r", help="Reboot after switching trees"),
        o.Opt("os", kind=o.STRING, metavar="OSNAME",
              help="Use a different operating system root than the current one"),
    ], "REFSPEC", "")
    sr = a.sysroot(lock=True)
    if not a.args:
        raise a.fail("REFSPEC must be specified")
    provided = a.args[0]
    up = Upgrader(sr, a.opts.os, ignore_unconfigured=True)
    origin_refspec = up.origin.get("origin", "refspec") or ""
    origin_remote, origin_ref = parse_refspec(origin_refspec)
    if provided.endswith(":"):
        new_remote: str | None = provided[:-1]
        new_ref = origin_ref
    else:
        new_remote, new_ref = parse_refspec(provided)
    remote = new_remote or origin_remote
    new_refspec = f"{remote}:{new_ref}" if remote else new_ref
    if origin_refspec == new_refspec:
        raise OstreeError(f"Old and new refs are equal: {new_refspec}")
    up.set_origin(Sysroot.origin_new_from_refspec(new_refspec))
    up.pull(allow_older=True)
    up.deploy()
    print(f"Deleting ref '{origin_remote if origin_remote is not None else '(null)'}:{origin_ref}'")
    set_ref(sr.repo, origin_remote, origin_ref, None)
    return 0


def cmd_pin(argv: list[str]) -> int:
    a = Admin("pin", argv, [o.Opt("unpin", "u", help="Unset pin")], "INDEX",
              'Change the "pinning" state of a deployment')
    sr = a.sysroot(lock=True)
    if not a.args:
        raise a.fail("INDEX must be specified")
    for text in a.args:
        if not text.isdigit():
            raise OstreeError(f"Invalid index: {text}")
        d = _indexed(sr, text)
        want = not a.opts.unpin
        if d.is_pinned == want:
            print(f"Deployment {text} is already {'pinned' if want else 'unpinned'}")
        else:
            sr.set_pinned(d, want)
            print(f"Deployment {text} is now {'pinned' if want else 'unpinned'}")
    return 0


def cmd_instutil(argv: list[str]) -> int:
    sub = next((x for x in argv if not x.startswith("-")), None)
    if sub != "set-kargs":
        a = Admin("instutil", [x for x in argv if x != sub], [], "COMMAND",
                  'Builtin "admin instutil" Commands:\n  set-kargs')
        sys.stderr.write(o.help_text(a.usage, a.summary, a.visible))
        if sub is None:
            raise OstreeError('No "admin instutil" subcommand specified')
        raise OstreeError(f"Unknown \"admin instutil\" subcommand '{sub}'")
    rest = list(argv)
    rest.remove(sub)
    a = Admin("instutil set-kargs", rest, [
        o.Opt("import-proc-cmdline", help="Import current /proc/cmdline"),
        o.Opt("merge", help="Merge with previous command line"),
        o.Opt("replace", kind=o.STRINGS, metavar="NAME=VALUE",
              help="Set kernel argument, like root=/dev/sda1; this overrides any earlier argument "
                   "with the same name"),
        o.Opt("append", kind=o.STRINGS, metavar="NAME=VALUE",
              help="Append kernel argument; useful with e.g. console= that can be used multiple times"),
    ], "ARGS", "")
    sr = a.sysroot()
    if not sr.deployments:
        raise OstreeError("Unable to find a deployment in sysroot")
    first = sr.deployments[0]
    kargs = KernelArgs()
    if a.opts.import_proc_cmdline:
        kargs.append_argv(_proc_cmdline())
    elif a.opts.merge:
        prev = first.bootconfig.get("options") if first.bootconfig else None
        kargs.append_argv(prev.split(" ") if prev is not None else [])
    kargs.replace_argv(a.opts.replace)
    kargs.append_argv(a.opts.append)
    kargs.append_argv(a.args)
    sr.set_kargs(first, kargs.to_strv())
    return 0


def cmd_config_diff(argv: list[str]) -> int:
    from pyostree.tree.diff import DiffOptions, diff_dirs, open_side

    a = Admin("config-diff", argv, [
        o.Opt("os", kind=o.STRING, metavar="OSNAME",
              help="Use a different operating system root than the current one"),
    ], "", "")
    sr = a.sysroot()
    _require_osname(sr, a.opts.os)
    if a.opts.os is not None:
        d = sr.get_merge_deployment(a.opts.os)
        if d is None:
            raise OstreeError(f"No deployment for OS '{a.opts.os}'")
    else:
        assert sr.booted_deployment is not None
        d = sr.booted_deployment
    root = sr.deployment_path(d)
    res = diff_dirs(sr.repo, open_side(sr.repo, f"{root}/usr/etc"), open_side(sr.repo, f"{root}/etc"),
                    DiffOptions(ignore_xattrs=True))
    sys.stdout.write(res.format())
    return 0


def cmd_unlock(argv: list[str]) -> int:
    Admin("unlock", argv, [o.Opt("hotfix", help="Retain changes across reboots"),
                           o.Opt("transient", help="Mount overlayfs read-only by default")], "",
          "Make the current deployment mutable (as a hotfix or development)")
    raise OstreeError("admin unlock is not implemented by pyostree (it needs a booted deployment)")


def cmd_composefs_mount(argv: list[str]) -> int:
    """pyostree only (not in --help): mount deployment INDEX through its .ostree.cfs, as at boot."""
    a = Admin("composefs-mount", argv, [], "INDEX MOUNTPOINT",
              "Mount deployment INDEX read-only through its composefs image (pyostree)")
    sr = a.sysroot()
    if len(a.args) != 2:
        raise a.fail("INDEX and MOUNTPOINT must be specified")
    d = _indexed(sr, a.args[0])
    from pyostree.composefs.deploy import mount_deployment

    mount_deployment(sr.abspath("ostree/repo"), sr.abspath(d.dirpath), a.args[1])
    return 0


_COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "composefs-mount": cmd_composefs_mount,
    "init-fs": cmd_init_fs,
    "os-init": cmd_os_init,
    "deploy": cmd_deploy,
    "status": cmd_status,
    "undeploy": cmd_undeploy,
    "cleanup": cmd_cleanup,
    "set-origin": cmd_set_origin,
    "kargs": cmd_kargs,
    "upgrade": cmd_upgrade,
    "switch": cmd_switch,
    "pin": cmd_pin,
    "instutil": cmd_instutil,
    "config-diff": cmd_config_diff,
    "unlock": cmd_unlock,
}
