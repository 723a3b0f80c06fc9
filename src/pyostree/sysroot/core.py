"""The sysroot: deployments, boot loader entries, bootlinks and cleanup.

This is libostree's ``OstreeSysroot`` half (the repository half is repo.py and
checkout.py).  Layout of a sysroot ``S``:

* ``S/ostree/repo`` — a bare repository holding every deployed commit;
* ``S/ostree/deploy/OS/{var,deploy}`` — a stateroot; each deployment is a
  hardlink checkout ``deploy/CSUM.SERIAL`` plus ``CSUM.SERIAL.origin``;
* ``S/boot/loader -> loader.N`` with BLS entries ``loader.N/entries/*.conf``,
  kernels in ``boot/ostree/OS-BOOTCSUM/``;
* ``S/ostree/boot.N -> boot.N.M``, whose ``OS/BOOTCSUM/SERIAL`` symlinks
  point at the deployments (the ``ostree=`` kernel argument names one).

The boot loader entries are the source of truth for the list of
deployments.  Changing that list writes entries for the *other* boot
version and swaps ``boot/loader`` atomically; if only the deployments but
not their boot configuration change, only the ``boot.N`` bootlinks swap.
Deployments are checked out with overlayfs passthrough whiteouts on
(``.ostree-wh.NAME`` -> char device 0:0), as libostree's deploy path does.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import sys
from collections.abc import Callable

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.keyfile import KeyFile
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo, RepoMode
from pyostree.sysroot.bootconfig import BootConfig
from pyostree.sysroot.deployment import (
    UNLOCKED_DEVELOPMENT,
    UNLOCKED_HOTFIX,
    UNLOCKED_TRANSIENT,
    Deployment,
)
from pyostree.sysroot.etcmerge import merge_etc
from pyostree.sysroot.fsutil import (
    err,
    exists_at,
    mkdir_p_at,
    opendirat,
    read_text_at,
    replace_contents_at,
    rm_rf_at,
    set_immutable,
    symlink_at_replace,
)
from pyostree.sysroot.kargs import KernelArgs
from pyostree.sysroot.kernel import find_kernel
from pyostree.tree.checkout import CheckoutOptions, checkout_tree

RUNSTATE_DIR = "/run/ostree/deployment-state/"
OSTREE_BOOTED = "/run/ostree-booted"
_DEPLOY_NAME = re.compile(r"^([0-9a-f]+)\.([0-9]+)$")
_BOOTLINK = re.compile(r"^/ostree/boot.([01])/([^/]+)/([^/]+)/([0-9]+)$")

JournalFn = Callable[[str], None]


def _debug_flags() -> set[str]:
    raw = os.environ.get("OSTREE_SYSROOT_DEBUG", "")
    return {f.strip() for f in re.split(r"[:;, \t]", raw) if f.strip()}


def validate_osname(osname: str) -> None:
    """A stateroot name must be one path component (it names ``ostree/deploy/OSNAME``)."""
    if not osname or "/" in osname or osname in (".", "..") or "\0" in osname:
        raise OstreeError(f"Invalid osname '{osname}'")


def strverscmp(a: str, b: str) -> int:
    """Version-aware string comparison (numbers compare by value)."""
    pa = re.findall(r"\d+|\D+", a)
    pb = re.findall(r"\d+|\D+", b)
    for x, y in zip(pa, pb, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else (1 if int(x) > int(y) else (-1 if x < y else 1))
        return -1 if x < y else 1
    return (len(pa) > len(pb)) - (len(pa) < len(pb))


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        u = shell_unquote(v)
        if u is not None:
            out[k] = u
    return out


def shell_unquote(s: str) -> str | None:
    """``g_shell_unquote``: concatenate quoted/unquoted pieces; None when malformed."""
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            out.append(s[i + 1:j])
            i = j + 1
        elif c == '"':
            i += 1
            while True:
                if i >= len(s):
                    return None
                c = s[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < len(s) and s[i + 1] in '"\\`$\n':
                    if s[i + 1] != "\n":
                        out.append(s[i + 1])
                    i += 2
                    continue
                out.append(c)
                i += 1
        elif c == "\\" and i + 1 < len(s):
            if s[i + 1] != "\n":
                out.append(s[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _syncfs(fd: int) -> None:
    if os.environ.get("OSTREE_SUPPRESS_SYNCFS"):
        return
    from pyostree.store.files import syncfs  # ctypes, loaded on first use

    syncfs(fd)


class Sysroot:
    """An ostree sysroot at *path* (default ``$OSTREE_SYSROOT`` or ``/``)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = os.path.abspath(path or os.environ.get("OSTREE_SYSROOT") or "/")
        self.debug = _debug_flags()
        self._fd = -1
        self._repo: Repo | None = None
        self._lock_fd = -1
        self.loaded = False
        self.bootversion = 0
        self.subbootversion = 0
        self.deployments: list[Deployment] = []
        self.booted_deployment: Deployment | None = None
        self.staged_deployment: Deployment | None = None
        self.root_is_ostree_booted = False
        self.is_physical = False
        """True for a sysroot seen from outside (not a deployment with /sysroot)."""
        self.journal: JournalFn | None = None

    # -- basics ---------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise err(e, f"opendir({self.path})") from None
        return self._fd

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    def __enter__(self) -> Sysroot:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

    def abspath(self, rel: str) -> str:
        return os.path.join(self.path, rel)

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            self._repo = Repo.open(self.abspath("ostree/repo"))
        return self._repo

    def deployment_path(self, d: Deployment) -> str:
        return self.abspath(d.dirpath)

    def _emit(self, msg: str) -> None:
        if self.journal is not None:
            self.journal(msg)

    def initialize(self) -> None:
        _ = self.fd
        try:
            os.stat(OSTREE_BOOTED)
            booted = True
        except OSError:
            booted = False
        root = os.stat("/")
        me = os.stat(self.path)
        self._root_dev_ino = (root.st_dev, root.st_ino)
        self.root_is_ostree_booted = booted and (root.st_dev, root.st_ino) == (me.st_dev, me.st_ino)

    def ensure_initialized(self) -> None:
        """Create ``ostree/repo`` (bare) and ``ostree/deploy`` if missing."""
        mkdir_p_at(self.fd, "ostree/repo", 0o755)
        mkdir_p_at(self.fd, "ostree/deploy", 0o755)
        if exists_at(self.fd, "ostree/repo/objects") is None:
            Repo.create(self.abspath("ostree/repo"), RepoMode.BARE).close()

    def lock(self) -> None:
        """Take the exclusive sysroot lock (``ostree/lock``), waiting if needed."""
        if self._lock_fd >= 0:
            return
        try:
            fd = os.open("ostree/lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        except OSError as e:
            raise err(e, "Opening sysroot lock") from None
        import fcntl

        f_ofd_setlk, f_ofd_setlkw = 37, 38
        lk = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0)
        try:
            try:
                fcntl.fcntl(fd, f_ofd_setlk, lk)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                print("Waiting for sysroot lock...", flush=True)
                fcntl.fcntl(fd, f_ofd_setlkw, lk)
        except OSError as e:
            os.close(fd)
            raise err(e, "Locking sysroot") from None
        self._lock_fd = fd

    def bump_mtime(self) -> None:
        try:
            os.utime("ostree/deploy", dir_fd=self.fd)
        except OSError as e:
            raise err(e, "futimens") from None

    # -- loading --------------------------------------------------------------
    def load(self) -> None:
        try:
            self._load()
        except OstreeError as e:
            raise OstreeError(f"loading sysroot: {e}", errno=e.errno) from None

    def _load(self) -> None:
        self.initialize()
        _ = self.repo
        if exists_at(self.fd, "ostree/deploy", follow=True) is None:
            raise OstreeError("fstatat(ostree/deploy): No such file or directory", errno=errno.ENOENT)
        self.bootversion = self._read_bootversion()
        self.subbootversion = self.read_subbootversion(self.bootversion)
        self.booted_deployment = None
        configs = self.read_boot_loader_configs(self.bootversion)
        deployments = [self._deployment_from_config(c) for c in configs]
        if self.root_is_ostree_booted and self.booted_deployment is None:
            if exists_at(self.fd, "boot/loader") is None:
                raise OstreeError(f"Unexpected state: {OSTREE_BOOTED} found, but no /boot/loader directory")
            raise OstreeError(f"Unexpected state: {OSTREE_BOOTED} found and in / sysroot, "
                              "but bootloader entry not found")
        for i, d in enumerate(deployments):
            d.index = i
        self.deployments = deployments
        if self.booted_deployment is not None:
            self.is_physical = False
        else:
            self.is_physical = exists_at(self.fd, "sysroot", follow=True) is None
        self.loaded = True

    def _read_bootversion(self) -> int:
        st = exists_at(self.fd, "boot/loader")
        if st is None:
            return 0
        if not stat.S_ISLNK(st.st_mode):
            raise OstreeError("Not a symbolic link: boot/loader")
        target = os.readlink("boot/loader", dir_fd=self.fd)
        if target == "loader.0":
            return 0
        if target == "loader.1":
            return 1
        raise OstreeError(f"Invalid target '{target}' in boot/loader")

    def read_subbootversion(self, bootversion: int) -> int:
        name = f"ostree/boot.{bootversion}"
        if exists_at(self.fd, name) is None:
            return 0
        try:
            target = os.readlink(name, dir_fd=self.fd)
        except OSError as e:
            raise err(e, f"readlinkat({name})") from None
        if target.endswith(".0"):
            return 0
        if target.endswith(".1"):
            return 1
        raise OstreeError(f"Invalid target '{target}' in {name}")

    def read_boot_loader_configs(self, bootversion: int) -> list[BootConfig]:
        """The ``ostree-*.conf`` entries of ``boot/loader.N``, newest version first."""
        path = f"boot/loader.{bootversion}/entries"
        st = exists_at(self.fd, path, follow=True)
        if st is None:
            return []
        dfd = opendirat(self.fd, path)
        try:
            configs: list[BootConfig] = []
            for name in os.listdir(dfd):
                if not (name.startswith("ostree-") and name.endswith(".conf")):
                    continue
                try:
                    est = os.stat(name, dir_fd=dfd)
                except OSError as e:
                    raise err(e, f"fstatat({name})") from None
                if stat.S_ISREG(est.st_mode):
                    configs.append(BootConfig.parse_at(dfd, name))
        finally:
            os.close(dfd)
        return _sort_configs(configs)

    def _deployment_from_config(self, config: BootConfig) -> Deployment:
        bootlink = None
        for opt in (config.get("options") or "").split(" "):
            if opt.startswith("ostree="):
                bootlink = opt[len("ostree="):]
                break
        if bootlink is None:
            raise OstreeError("No ostree= kernel argument found")
        d = self._parse_deployment(bootlink)
        d.bootconfig = config
        return d

    def _parse_deployment(self, bootlink: str) -> Deployment:
        m = _BOOTLINK.match(bootlink)
        if m is None:
            raise OstreeError(f"Invalid ostree= argument '{bootlink}', expected "
                              "ostree=/ostree/boot.BOOTVERSION/OSNAME/BOOTCSUM/TREESERIAL")
        osname, bootcsum, bootserial = m.group(2), m.group(3), int(m.group(4))
        prefix = f"Parsing deployment {bootlink} in stateroot '{osname}'"
        rel = bootlink.lstrip("/")
        try:
            target = os.readlink(rel, dir_fd=self.fd)
        except OSError as e:
            raise OstreeError(f"{prefix}: readlinkat: {e.strerror}", errno=e.errno) from None
        dm = _DEPLOY_NAME.match(os.path.basename(target))
        if dm is None:
            raise OstreeError(f"{prefix}: Invalid deploy name '{os.path.basename(target)}', "
                              "expected CHECKSUM.TREESERIAL")
        try:
            dst = os.stat(rel, dir_fd=self.fd)
        except OSError as e:
            raise OstreeError(f"{prefix}: opendir({rel}): {e.strerror}", errno=e.errno) from None
        d = Deployment(-1, osname, dm.group(1), int(dm.group(2)), bootcsum, bootserial)
        if self.root_is_ostree_booted and self.booted_deployment is None \
                and (dst.st_dev, dst.st_ino) == self._root_dev_ino:
            self.booted_deployment = d
        try:
            self._load_origin(d)
        except OstreeError as e:
            raise OstreeError(f"{prefix}: {e}", errno=e.errno) from None
        if os.path.lexists(self._runstate(d, "development")):
            d.unlocked = UNLOCKED_DEVELOPMENT
        elif os.path.lexists(self._runstate(d, "transient")):
            d.unlocked = UNLOCKED_TRANSIENT
        elif d.origin is not None and d.origin.get("origin", "unlocked") == "hotfix":
            d.unlocked = UNLOCKED_HOTFIX
        return d

    @staticmethod
    def _runstate(d: Deployment, key: str) -> str:
        return f"{RUNSTATE_DIR}{d.csum}.{d.deployserial}/{key}"

    def _load_origin(self, d: Deployment) -> None:
        try:
            text = read_text_at(self.fd, d.origin_relpath)
        except OstreeError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        d.origin = KeyFile.parse(text, d.origin_relpath)

    # -- queries ----------------------------------------------------------------
    def require_loaded(self) -> None:
        if not self.loaded:
            self.load()

    def query_deployments_for(self, osname: str | None) -> tuple[Deployment | None, Deployment | None]:
        """(pending, rollback) deployments of *osname* (default: the booted one's)."""
        if osname is None:
            assert self.booted_deployment is not None
            osname = self.booted_deployment.osname
        pending = rollback = None
        found_booted = False
        for d in self.deployments:
            if d.osname != osname:
                continue
            if self.booted_deployment is not None and d.equal(self.booted_deployment):
                found_booted = True
                continue
            if not found_booted and pending is None:
                pending = d
            elif found_booted and rollback is None:
                rollback = d
        return pending, rollback

    def get_merge_deployment(self, osname: str | None) -> Deployment | None:
        if osname is None:
            if self.booted_deployment is None:
                return None
            osname = self.booted_deployment.osname
        if self.booted_deployment is not None and self.booted_deployment.osname == osname:
            return self.booted_deployment
        return self.query_deployments_for(osname)[0]

    @staticmethod
    def origin_new_from_refspec(refspec: str) -> KeyFile:
        kf = KeyFile()
        kf.set("origin", "refspec", refspec)
        return kf

    # -- stateroots ----------------------------------------------------------------
    def init_osname(self, osname: str) -> None:
        """Create ``ostree/deploy/OSNAME`` with its shared ``var``."""
        validate_osname(osname)
        base = f"ostree/deploy/{osname}"
        try:
            os.mkdir(base, 0o777, dir_fd=self.fd)
        except OSError as e:
            raise err(e, f"Creating {base}") from None
        dfd = opendirat(self.fd, base)
        try:
            for sub, mode in (("var", 0o777), ("var/tmp", 0o777)):
                try:
                    os.mkdir(sub, mode, dir_fd=dfd)
                except OSError as e:
                    raise err(e, f"Creating {sub}") from None
            os.chmod("var/tmp", 0o1777, dir_fd=dfd)
            for sub, mode in (("var/lib", 0o777), ("var/log", 0o755)):
                try:
                    os.mkdir(sub, mode, dir_fd=dfd)
                except OSError as e:
                    raise err(e, f"Creating {sub}") from None
            for target, name in (("../run", "var/run"), ("../run/lock", "var/lock")):
                try:
                    os.symlink(target, name, dir_fd=dfd)
                except OSError as e:
                    raise err(e, f"Symlinking {name}") from None
        finally:
            os.close(dfd)
        self.bump_mtime()

    # -- creating deployments ---------------------------------------------------------
    def list_deployment_dirs(self, osname: str) -> list[Deployment]:
        path = f"ostree/deploy/{osname}/deploy"
        if exists_at(self.fd, path, follow=True) is None:
            return []
        out = []
        for ent in os.scandir(f"/proc/self/fd/{self.fd}/{path}"):
            if not ent.is_dir(follow_symlinks=False):
                continue
            m = _DEPLOY_NAME.match(ent.name)
            if m is None:
                raise OstreeError(f"Invalid deploy name '{ent.name}', expected CHECKSUM.TREESERIAL")
            out.append(Deployment(-1, osname, m.group(1), int(m.group(2))))
        return out

    def deploy_tree(self, osname: str | None, revision: str, origin: KeyFile | None,
                    merge_deployment: Deployment | None,
                    override_kernel_argv: list[str] | None = None) -> Deployment:
        """Check out *revision* as a new (not yet bootable) deployment and merge /etc.

        Call :meth:`simple_write_deployment` or :meth:`write_deployments` to
        make it part of the boot configuration.
        """
        self.require_loaded()
        if osname is None:
            if self.booted_deployment is None:
                raise OstreeError("No osname given and not booted into an OSTree system")
            osname = self.booted_deployment.osname
        validate_osname(osname)
        obj.validate_checksum(revision)
        d = self._initialize_deployment(osname, revision, origin, override_kernel_argv)
        self._finalize_deployment(d, merge_deployment)
        return d

    def _initialize_deployment(self, osname: str, revision: str, origin: KeyFile | None,
                               kargs: list[str] | None) -> Deployment:
        serial = 0
        for other in self.list_deployment_dirs(osname):
            if other.csum == revision:
                serial = max(serial, other.deployserial + 1)
        d = Deployment(0, osname, revision, serial, origin=origin)
        dfd = self._checkout_deployment_tree(d)
        try:
            layout = find_kernel(dfd, no_dtb="no-dtb" in self.debug)
            d.bootcsum = layout.bootcsum
            d.bootconfig = BootConfig()
            if kargs is not None:
                d.bootconfig.set("options", KernelArgs.from_argv(kargs).to_string())
            self._prepare_etc(d, dfd)
            self._lint(d, dfd)
        finally:
            os.close(dfd)
        return d

    def _checkout_deployment_tree(self, d: Deployment) -> int:
        osdeploy = f"ostree/deploy/{d.osname}/deploy"
        try:
            mkdir_p_at(self.fd, osdeploy, 0o775)
            name = f"{d.csum}.{d.deployserial}"
            rm_rf_at(self.fd, f"{osdeploy}/{name}")
            opts = CheckoutOptions(process_passthrough_whiteouts=True)
            checkout_tree(self.repo, d.csum, self.abspath(f"{osdeploy}/{name}"), opts)
            dfd = opendirat(self.fd, f"{osdeploy}/{name}")
        except OstreeError as e:
            raise OstreeError(f"Checking out deployment tree: {e}", errno=e.errno) from None
        try:  # .ostree.cfs when composefs is wanted (ostree 2026.4)
            from pyostree.composefs.deploy import write_deployment_image

            write_deployment_image(self.repo, d.csum, dfd)
        except BaseException:
            os.close(dfd)
            raise
        return dfd

    def _prepare_etc(self, d: Deployment, dfd: int) -> None:
        try:
            etc = exists_at(dfd, "etc") is not None
            usretc = exists_at(dfd, "usr/etc") is not None
            if etc:
                if usretc:
                    raise OstreeError("Tree contains both /etc and /usr/etc")
                try:
                    os.rename("etc", "usr/etc", src_dir_fd=dfd, dst_dir_fd=dfd)
                except OSError as e:
                    raise err(e, "renameat(etc)") from None
                usretc = True
            if usretc:
                opts = CheckoutOptions(force_copy=True, subpath="/usr/etc")
                checkout_tree(self.repo, d.csum, self.abspath(d.dirpath + "/etc"), opts)
        except OstreeError as e:
            raise OstreeError(f"Preparing /etc: {e}", errno=e.errno) from None

    @staticmethod
    def _lint(d: Deployment, dfd: int) -> None:
        st = exists_at(dfd, "var", follow=True)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return
        for name in os.listdir(f"/proc/self/fd/{dfd}/var"):
            sys.stderr.write(f"note: Deploying commit {d.csum} which contains content in /var/{name} "
                             "that will be ignored.\n")

    def _finalize_deployment(self, d: Deployment, merge: Deployment | None) -> None:
        assert d.bootconfig is not None
        if merge is not None and d.bootconfig.get("options") is None and merge.bootconfig is not None:
            opts = merge.bootconfig.get("options")
            if opts is not None:
                d.bootconfig.set("options", opts)
        if merge is not None:
            st = merge_etc(self.repo, self.deployment_path(merge), self.deployment_path(d),
                           no_xattrs="no-xattrs" in self.debug)
            self._emit(f"Copying /etc changes: {st.modified} modified, {st.removed} removed, "
                       f"{st.added} added")
        dfd = opendirat(self.fd, d.dirpath)
        try:
            _unlink_quiet(dfd, "etc/.updated")
            if self.booted_deployment is not None and self.booted_deployment.osname == d.osname:
                var = "/var"
            else:
                var = self.abspath(f"ostree/deploy/{d.osname}/var")
            if not os.path.isdir(var):
                raise OstreeError(f"opendir({var}): No such file or directory", errno=errno.ENOENT)
            _unlink_quiet(-1, os.path.join(var, ".updated"))
            # the /var relabel stamp (pyostree does no SELinux labeling; the stamp is kept
            # so that the layout matches ostree's)
            stamp = f"ostree/deploy/{d.osname}/var/.ostree-selabeled"
            if exists_at(self.fd, stamp) is None:
                self._emit("Relabeling /var (no stamp file 'var/.ostree-selabeled' found)")
                replace_contents_at(self.fd, stamp, b"", fsync=True)
            self._write_origin(d, d.origin)
            if "mutable-deployments" not in self.debug:
                set_immutable(dfd, True)
        finally:
            os.close(dfd)

    def _write_origin(self, d: Deployment, origin: KeyFile | None) -> None:
        if origin is None:
            return
        try:
            replace_contents_at(self.fd, d.origin_relpath, origin.to_data().encode())
        except OstreeError as e:
            raise OstreeError(f"Writing out origin file: {e}", errno=e.errno) from None

    def write_origin_file(self, d: Deployment, origin: KeyFile | None = None) -> None:
        """Replace the ``.origin`` file of *d* now (*origin* default: d.origin)."""
        self._write_origin(d, origin if origin is not None else d.origin)
        self.bump_mtime()

    def set_pinned(self, d: Deployment, pinned: bool) -> None:
        """Pin (keep across upgrades) or unpin *d* via its origin's transient group."""
        if d.is_pinned == pinned:
            return
        if d.staged:
            raise OstreeError("Cannot pin staged deployment")
        origin = KeyFile.parse(d.origin.to_data()) if d.origin is not None else KeyFile()
        if pinned:
            origin.set_bool("libostree-transient", "pinned", True)
        else:
            origin.remove_key("libostree-transient", "pinned")
        self.write_origin_file(d, origin)

    def set_mutable(self, d: Deployment, mutable: bool) -> None:
        dfd = opendirat(self.fd, d.dirpath)
        try:
            set_immutable(dfd, not mutable)
        finally:
            os.close(dfd)

    # -- the deployment list ----------------------------------------------------------
    def simple_write_deployment(self, osname: str | None, new: Deployment,
                                merge: Deployment | None, *, retain: bool = False,
                                retain_pending: bool = False, retain_rollback: bool = False,
                                not_default: bool = False, no_clean: bool = False) -> None:
        """Prepend (or with *not_default* insert after booted/merge) *new* and drop
        the other deployments of *osname* except the booted, merge and pinned ones
        (or the ones the retain flags keep); then write the boot configuration."""
        booted = self.booted_deployment
        if osname is None and booted is not None:
            osname = booted.osname
        new_list: list[Deployment] = []
        added = False
        if not not_default:
            new_list.append(new)
            added = True
        if booted is None and merge is None and (retain_pending or retain_rollback):
            retain = True
        before_booted = before_merge = True
        for d in self.deployments:
            osname_matches = osname is None or d.osname == osname
            is_booted = booted is not None and d.equal(booted)
            is_merge = merge is not None and d.equal(merge)
            if is_booted:
                before_booted = False
            if is_merge:
                before_merge = False
            crossed = (not before_booted) if booted is not None else (not before_merge)
            if (retain or d.is_pinned or not osname_matches or (retain_pending and not crossed)
                    or is_booted or is_merge or (retain_rollback and crossed)):
                new_list.append(d)
            if not added and crossed:
                new_list.append(new)
                added = True
        if not added:
            new_list.append(new)
        self.write_deployments(new_list, do_postclean=not no_clean)

    def write_deployments(self, new_deployments: list[Deployment], do_postclean: bool = True) -> None:
        """Make *new_deployments* (in boot order) the sysroot's deployment list."""
        self.require_loaded()
        new_deployments = [d for d in new_deployments if not d.staged]
        _assign_bootserials(new_deployments)
        requires_new_bootversion = len(new_deployments) != len(self.deployments)
        if not requires_new_bootversion:
            is_noop = True
            for cur, new in zip(self.deployments, new_deployments, strict=True):
                if not self._bootconfigs_equal(cur, new):
                    requires_new_bootversion = True
                    is_noop = False
                    break
                if cur is not new:
                    is_noop = False
            if is_noop:
                return
        found_booted = False
        for i, d in enumerate(new_deployments):
            if d is self.booted_deployment:
                found_booted = True
            if exists_at(self.fd, d.dirpath) is None:
                raise OstreeError(f"Unable to find expected deployment root: {self.deployment_path(d)}")
            d.index = i
        if self.booted_deployment is not None and not found_booted:
            raise OstreeError("Attempting to remove booted deployment")
        if not requires_new_bootversion:
            self._create_new_bootlinks(self.bootversion, new_deployments)
            self._sync()
            subbootdir = self._swap_bootlinks(self.bootversion)
            atomic = True
        else:
            subbootdir, atomic = self._bootswap(new_deployments)
        self._emit(f"{'Transaction complete' if atomic else 'Bootloader updated'}; bootconfig swap: "
                   f"{'yes' if requires_new_bootversion else 'no'}; bootversion: {subbootdir}, "
                   f"deployment count change: {len(new_deployments) - len(self.deployments)}")
        self.bump_mtime()
        try:
            self.loaded = False
            self.load()
        except OstreeError as e:
            raise OstreeError(f"Reloading deployments after commit: {e}", errno=e.errno) from None
        for d in self.deployments:
            _unlink_quiet(self.fd, f"ostree/deploy/{d.osname}/current")
        if do_postclean:
            try:
                self.cleanup(prune=True)
            except OstreeError as e:
                raise OstreeError(f"Performing final cleanup: {e}", errno=e.errno) from None

    def _commit_version(self, csum: str) -> str | None:
        try:
            c = self.repo.load_commit(csum)
        except OstreeError:
            return None
        v = obj.metadata_lookup(c.metadata, "version")
        return v if isinstance(v, str) else None

    def _bootconfigs_equal(self, a: Deployment, b: Deployment) -> bool:
        if a.bootcsum != b.bootcsum:
            return False
        if _overlay_id(a) != _overlay_id(b):
            return False
        if _nonostree_kargs(a) != _nonostree_kargs(b):
            return False
        return self._commit_version(a.csum) == self._commit_version(b.csum)

    def _sync(self) -> None:
        if "test-fifreeze" in self.debug:
            # libostree's test hook: its freeze/thaw watchdog runs, then the sync aborts
            sys.stderr.write("fifreeze watchdog was run\n")
            raise OstreeError("During fsfreeze-thaw: aborting due to test-fifreeze")
        _syncfs(self.fd)
        bfd = opendirat(self.fd, "boot")
        try:
            _syncfs(bfd)
        finally:
            os.close(bfd)

    def _create_new_bootlinks(self, bootversion: int, deployments: list[Deployment]) -> None:
        try:
            old_sub = (self.subbootversion if bootversion == self.bootversion
                       else self.read_subbootversion(bootversion))
            new_sub = 1 if old_sub == 0 else 0
            subdir = f"ostree/boot.{bootversion}.{new_sub}"
            rm_rf_at(self.fd, subdir)
            mkdir_p_at(self.fd, subdir, 0o755)
            sfd = opendirat(self.fd, subdir)
            try:
                for d in deployments:
                    parent = f"{d.osname}/{d.bootcsum}"
                    mkdir_p_at(sfd, parent, 0o755)
                    symlink_at_replace(f"../../../deploy/{d.osname}/deploy/{d.csum}.{d.deployserial}",
                                       sfd, f"{parent}/{d.bootserial}")
            finally:
                os.close(sfd)
        except OstreeError as e:
            raise OstreeError(f"Creating new current bootlinks: {e}", errno=e.errno) from None

    def _swap_bootlinks(self, bootversion: int) -> str:
        old_sub = (self.subbootversion if bootversion == self.bootversion
                   else self.read_subbootversion(bootversion))
        new_sub = 1 if old_sub == 0 else 0
        name = f"boot.{bootversion}.{new_sub}"
        ofd = opendirat(self.fd, "ostree")
        try:
            symlink_at_replace(name, ofd, f"boot.{bootversion}")
        finally:
            os.close(ofd)
        return name

    def _bootswap(self, deployments: list[Deployment]) -> tuple[str, bool]:
        """Write the other boot version and swap to it; (new subbootdir, loader atomic)."""
        from pyostree.sysroot.bootloader import query_bootloader

        new_bv = 0 if self.bootversion else 1
        entries = f"boot/loader.{new_bv}/entries"
        rm_rf_at(self.fd, entries)
        mkdir_p_at(self.fd, entries, 0o755)
        show_osname = any(d.osname != deployments[0].osname for d in deployments[1:])
        for d in deployments:
            self._install_deployment_kernel(new_bv, d, len(deployments), show_osname)
        self._create_new_bootlinks(new_bv, deployments)
        subbootdir = self._swap_bootlinks(new_bv)
        bootloader = query_bootloader(self)
        if bootloader is not None:
            try:
                bootloader.write_config(self, new_bv, deployments)
            except OstreeError as e:
                raise OstreeError(f"Bootloader write config: {e}", errno=e.errno) from None
        # prepare the new boot/loader link, sync, then rename it into place
        try:
            os.symlink(".", "boot/boot", dir_fd=self.fd)
        except FileExistsError:
            pass
        except OSError as e:
            raise err(e, "Preparing final bootloader swap: symlinkat") from None
        symlink_at_replace(f"loader.{new_bv}", self.fd, "boot/loader.tmp")
        self._sync()
        bfd = opendirat(self.fd, "boot")
        try:
            try:
                os.rename("loader.tmp", "loader", src_dir_fd=bfd, dst_dir_fd=bfd)
                os.fsync(bfd)
            except OSError as e:
                raise err(e, "Final bootloader swap") from None
        finally:
            os.close(bfd)
        if bootloader is not None:
            bootloader.post_bls_sync(self, new_bv)
        return subbootdir, bootloader is not None and bootloader.atomic

    def _install_deployment_kernel(self, new_bv: int, d: Deployment, n: int, show_osname: bool) -> None:
        try:
            self._install_kernel_inner(new_bv, d, n, show_osname)
        except OstreeError as e:
            raise OstreeError(f"Installing kernel: {e}", errno=e.errno) from None

    def _install_kernel_inner(self, new_bv: int, d: Deployment, n: int, show_osname: bool) -> None:
        assert d.bootconfig is not None and d.bootcsum is not None
        bc = d.bootconfig
        dfd = opendirat(self.fd, d.dirpath)
        try:
            layout = find_kernel(dfd, no_dtb="no-dtb" in self.debug)
            bootcsumdir = f"ostree/{d.osname}-{d.bootcsum}"
            confdir = f"loader.{new_bv}/entries"
            conf_name = f"ostree-{n - d.index}-{d.osname}.conf"
            bootfd = opendirat(self.fd, "boot")
            try:
                mkdir_p_at(bootfd, bootcsumdir, 0o775)
                mkdir_p_at(bootfd, confdir, 0o775)
                src = opendirat(dfd, layout.boot_dir)
                dst = opendirat(bootfd, bootcsumdir)
                try:
                    for srcname, dstname in ((layout.kernel_srcpath, layout.kernel_namever),
                                             (layout.initramfs_srcpath, layout.initramfs_namever),
                                             (layout.devicetree_srcpath, layout.devicetree_namever),
                                             (layout.hmac_srcpath, layout.hmac_namever)):
                        if srcname is None or dstname is None:
                            continue
                        if exists_at(dst, dstname, follow=True) is None:
                            _install_into_boot(src, srcname, dst, dstname)
                    if layout.devicetree_srcpath is not None and layout.devicetree_namever is None:
                        from pyostree.sysroot.etcmerge import _copy_dir

                        _copy_dir(f"/proc/self/fd/{src}/{layout.devicetree_srcpath}",
                                  f"/proc/self/fd/{dst}/{layout.devicetree_srcpath}",
                                  "no-xattrs" in self.debug)
                finally:
                    os.close(src)
                    os.close(dst)
                if exists_at(dfd, "usr/lib/os-release", follow=True) is None:
                    try:
                        text = read_text_at(dfd, "etc/os-release")
                    except OstreeError as e:
                        raise OstreeError(f"Reading /etc/os-release: {e}", errno=e.errno) from None
                else:
                    try:
                        text = read_text_at(dfd, "usr/lib/os-release")
                    except OstreeError as e:
                        raise OstreeError(f"Reading /usr/lib/os-release: {e}", errno=e.errno) from None
                osr = parse_os_release(text)
                val = osr.get("PRETTY_NAME") or osr.get("ID")
                if val is None:
                    raise OstreeError("No PRETTY_NAME or ID in /etc/os-release")
                version = self._commit_version(d.csum)
                title = val
                if version and version not in val:
                    title += " " + version
                title += " (ostree"
                if show_osname:
                    title += ":" + d.osname
                title += f":{d.index})"
                bc.set("title", title)
                bc.set("version", str(n - d.index))
                bc.set("linux", f"/{bootcsumdir}/{layout.kernel_namever}")
                kargs = KernelArgs.from_string(bc.get("options"))
                if layout.initramfs_namever is not None:
                    bc.set("initrd", f"/{bootcsumdir}/{layout.initramfs_namever}")
                else:
                    kargs.replace(f"init=/ostree/boot.{new_bv}/{d.osname}/{d.bootcsum}/{d.bootserial}"
                                  "/usr/lib/ostree/ostree-prepare-root")
                if layout.devicetree_namever is not None:
                    bc.set("devicetree", f"/{bootcsumdir}/{layout.devicetree_namever}")
                elif layout.devicetree_srcpath is not None:
                    bc.set("fdtdir", f"/{bootcsumdir}/{layout.devicetree_srcpath}")
                kargs.replace(f"ostree=/ostree/boot.{new_bv}/{d.osname}/{d.bootcsum}/{d.bootserial}")
                bc.set("options", kargs.to_string())
                if d.index != 0:
                    for k, v in self._bls_append().items():
                        bc.set(k, v)
                cfd = opendirat(bootfd, confdir)
                try:
                    bc.write_at(cfd, conf_name)
                finally:
                    os.close(cfd)
            finally:
                os.close(bootfd)
        finally:
            os.close(dfd)

    def _bls_append(self) -> dict[str, str]:
        items = self.repo.config.get_list("sysroot", "bls-append-except-default") or []
        out: dict[str, str] = {}
        for kv in items:
            if "=" not in kv:
                raise OstreeError('bls-append-except-default key must be of the form '
                                  '"key1=value1;key2=value2..."')
            k, _, v = kv.partition("=")
            out[k] = v
        return out

    def set_kargs(self, d: Deployment, new_kargs: list[str]) -> None:
        """Redeploy the boot configuration with *d*'s kernel arguments replaced."""
        nd = d.clone()
        assert nd.bootconfig is not None
        nd.bootconfig.set("options", KernelArgs.from_argv(new_kargs).to_string())
        self.write_deployments([nd if cur is d else cur for cur in self.deployments])

    def set_kargs_in_place(self, d: Deployment, kargs: str) -> None:
        """Rewrite *d*'s current boot entry with new ``options`` (no boot version swap)."""
        if d.staged:
            raise OstreeError("Staged deployments are not supported by pyostree")
        assert d.bootconfig is not None
        d.bootconfig.set("options", kargs)
        name = f"ostree-{len(self.deployments) - d.index}-{d.osname}.conf"
        cfd = opendirat(self.fd, f"boot/loader.{self.bootversion}/entries")
        try:
            d.bootconfig.write_at(cfd, name)
        finally:
            os.close(cfd)

    # -- cleanup ------------------------------------------------------------------------
    def cleanup(self, prune: bool = True) -> int:
        """Delete unreferenced boot versions, deployments and /boot dirs, regenerate the
        ``ostree/B/S/N`` refs, and (with *prune*) prune the repository to refs +
        deployments.  Returns the bytes freed by the prune."""
        self.require_loaded()
        try:
            self._cleanup_other_bootversions()
        except OstreeError as e:
            raise OstreeError(f"Cleaning bootversions: {e}", errno=e.errno) from None
        try:
            self._cleanup_old_deployments()
        except OstreeError as e:
            raise OstreeError(f"Cleaning deployments: {e}", errno=e.errno) from None
        try:
            self._generate_deployment_refs()
        except OstreeError as e:
            raise OstreeError(f"Generating deployment refs: {e}", errno=e.errno) from None
        if not prune:
            return 0
        try:
            freed = self.prune_repo()
        except OstreeError as e:
            raise OstreeError(f"Pruning system repository: {e}", errno=e.errno) from None
        if freed > 0:
            from pyostree.store.dump import format_size

            print(f"Freed objects: {format_size(freed)}", flush=True)
        return freed

    def _cleanup_other_bootversions(self) -> None:
        cbv = 1 - self.bootversion if self.bootversion in (0, 1) else 1
        csub = 1 - self.subbootversion if self.subbootversion in (0, 1) else 1
        for p in (f"boot/loader.{cbv}", f"ostree/boot.{cbv}", f"ostree/boot.{cbv}.0",
                  f"ostree/boot.{cbv}.1", f"ostree/boot.{self.bootversion}.{csub}"):
            rm_rf_at(self.fd, p)

    def _cleanup_old_deployments(self) -> None:
        active = {d.dirpath for d in self.deployments}
        active_boot = {d.bootcsum for d in self.deployments}
        if exists_at(self.fd, "ostree/deploy", follow=True) is not None:
            for ent in os.scandir(f"/proc/self/fd/{self.fd}/ostree/deploy"):
                if not ent.is_dir(follow_symlinks=False):
                    continue
                for d in self.list_deployment_dirs(ent.name):
                    if d.dirpath not in active:
                        self.rmrf_deployment(d)
        bdir = f"/proc/self/fd/{self.fd}/boot/ostree"
        if os.path.isdir(bdir):
            for ent in os.scandir(bdir):
                if not ent.is_dir(follow_symlinks=False):
                    continue
                _, dash, csum = ent.name.rpartition("-")
                if not dash or not obj.is_valid_checksum(csum):
                    continue
                if csum not in active_boot:
                    rm_rf_at(self.fd, f"boot/ostree/{ent.name}")

    def rmrf_deployment(self, d: Deployment) -> None:
        st = exists_at(self.fd, d.dirpath, follow=True)
        if st is None:
            raise OstreeError(f"opendir({d.dirpath}): No such file or directory", errno=errno.ENOENT)
        if self.root_is_ostree_booted and (st.st_dev, st.st_ino) == self._root_dev_ino:
            return
        rm_rf_at(self.fd, d.origin_relpath)
        rm_rf_at(self.fd, d.dirpath)

    def _generate_deployment_refs(self) -> None:
        from pyostree.store.refs import list_refs, set_ref, write_ref

        repo = self.repo
        bv, sub = self.bootversion, self.subbootversion
        for prefix in (f"ostree/{1 - bv}/0", f"ostree/{1 - bv}/1", f"ostree/{bv}/{1 - sub}"):
            for ref in list_refs(repo, prefix, remotes=False):
                write_ref(repo, None, ref, None)
        # set in a repository transaction, as libostree does (so its staging-dir
        # bookkeeping and test hooks apply)
        with repo.transaction():
            for i, d in enumerate(self.deployments):
                set_ref(repo, None, f"ostree/{bv}/{sub}/{i}", d.csum)

    def prune_repo(self) -> int:
        """Prune the repository to its refs and the deployments (depth 0); bytes freed."""
        from pyostree.store.fsck import delete_object, traverse_commit
        from pyostree.store.prune import PruneOptions, compute_reachable

        repo = self.repo
        freed = 0
        with repo.lock(exclusive=True):
            reachable, _ = compute_reachable(repo, PruneOptions(refs_only=True, depth=0))
            for d in self.deployments:
                traverse_commit(repo, d.csum, 0, reachable)
            prunable = (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.COMMIT)
            for csum, t in list(repo.iter_objects()):
                if t not in prunable or (csum, t) in reachable:
                    continue
                try:
                    freed += os.lstat(obj.object_relpath(csum, t, repo.is_archive), dir_fd=repo.dfd).st_size
                except OSError:
                    pass
                if t is ObjectType.COMMIT:
                    repo.mark_commit_partial(csum, False)
                delete_object(repo, t, csum)
        return freed

    def prepare_cleanup(self) -> None:
        self.cleanup(prune=False)


def _sort_configs(configs: list[BootConfig]) -> list[BootConfig]:
    import functools

    def cmp(a: BootConfig, b: BootConfig) -> int:
        av, bv = a.get("version"), b.get("version")
        if av is not None and bv is not None:
            return -strverscmp(av, bv)
        return -1 if av is not None else 1

    return sorted(configs, key=functools.cmp_to_key(cmp))


def _assign_bootserials(deployments: list[Deployment]) -> None:
    counts: dict[str | None, int] = {}
    for d in deployments:
        c = counts.get(d.bootcsum, 0)
        counts[d.bootcsum] = c + 1
        d.bootserial = c


def _nonostree_kargs(d: Deployment) -> str:
    opts = d.bootconfig.get("options") if d.bootconfig is not None else None
    k = KernelArgs.from_string(opts)
    k.replace("ostree")
    return k.to_string()


def _overlay_id(d: Deployment) -> str | None:
    if d.bootconfig is None or not d.bootconfig.overlay_initrds:
        return None
    return " ".join(os.path.basename(p) for p in d.bootconfig.overlay_initrds)


def _unlink_quiet(dfd: int, path: str) -> None:
    try:
        if dfd < 0:
            os.unlink(path)
        else:
            os.unlink(path, dir_fd=dfd)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise err(e, f"unlinkat({path})") from None


def _install_into_boot(src_dfd: int, src: str, dst_dfd: int, dst: str) -> None:
    """Hardlink a kernel/initramfs into /boot, or copy it across filesystems."""
    try:
        os.link(src, dst, src_dir_fd=src_dfd, dst_dir_fd=dst_dfd)
        return
    except OSError as e:
        if e.errno not in (errno.EMLINK, errno.EXDEV):
            raise err(e, f"linkat({dst})") from None
    st = os.stat(src, dir_fd=src_dfd, follow_symlinks=False)
    data_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC, dir_fd=src_dfd)
    try:
        with open(data_fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(data_fd)
    tmp = f".{dst}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.link(tmp, dst, src_dir_fd=dst_dfd, dst_dir_fd=dst_dfd)
    except OSError as e:
        raise err(e, f"Copying {dst}") from None
    finally:
        try:
            os.unlink(tmp, dir_fd=dst_dfd)
        except OSError:
            pass
