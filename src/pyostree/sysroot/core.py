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

The :class:`~pyostree.sysroot.deploy.Sysroot` class is built in layers, one
module each: core.py (this one: opening, loading the deployment list,
queries, stateroots), cleanup.py (cleanup and prune of deployments, boot
dirs and the repository), boot.py (writing the deployment list: kernels
and BLS entries in /boot, bootlinks, the boot version swap, the boot
loader configs) and deploy.py (creating deployments; the public class).
"""


from __future__ import annotations

import errno
import os
import re
import stat
import struct
from collections.abc import Callable

from pyostree.errors import OstreeError
from pyostree.store.keyfile import KeyFile
from pyostree.store.repo import Repo, RepoMode
from pyostree.sysroot.bootconfig import BootConfig
from pyostree.sysroot.deployment import (
    UNLOCKED_DEVELOPMENT,
    UNLOCKED_HOTFIX,
    UNLOCKED_TRANSIENT,
    Deployment,
)
from pyostree.sysroot.fsutil import err, exists_at, mkdir_p_at, opendirat, read_text_at

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Self

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


class SysrootCore:
    """An ostree sysroot at *path* (default ``$OSTREE_SYSROOT`` or ``/``): opening, loading, queries.

    The operations that change it are added by the subclasses (see the module docstring)."""

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

    def __enter__(self) -> Self:
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

    # -- the deployment directories -------------------------------------------------
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


def _sort_configs(configs: list[BootConfig]) -> list[BootConfig]:
    import functools

    def cmp(a: BootConfig, b: BootConfig) -> int:
        av, bv = a.get("version"), b.get("version")
        if av is not None and bv is not None:
            return -strverscmp(av, bv)
        return -1 if av is not None else 1

    return sorted(configs, key=functools.cmp_to_key(cmp))


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
