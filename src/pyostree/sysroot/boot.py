"""Writing a sysroot's deployment list: kernels and BLS entries in /boot, the ``ostree/boot.N``
bootlinks, the boot loader configs and the atomic swap of the boot version."""

from __future__ import annotations

import errno
import os
import stat
import sys

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.sysroot.cleanup import SysrootCleanup
from pyostree.sysroot.core import _unlink_quiet, parse_os_release
from pyostree.sysroot.deployment import Deployment
from pyostree.sysroot.fsutil import (
    err,
    exists_at,
    mkdir_p_at,
    opendirat,
    read_text_at,
    rm_rf_at,
    symlink_at_replace,
)
from pyostree.sysroot.kargs import KernelArgs
from pyostree.sysroot.kernel import find_kernel


def _syncfs(fd: int) -> None:
    if os.environ.get("OSTREE_SUPPRESS_SYNCFS"):
        return
    from pyostree.store.files import syncfs  # ctypes, loaded on first use

    syncfs(fd)


class SysrootBoot(SysrootCleanup):
    """Writes the deployment list and the boot configuration of a sysroot (see core.py)."""

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
        from pyostree.sysroot.bootloader import BootTarget, query_bootloader

        new_bv = 0 if self.bootversion else 1
        entries = f"boot/loader.{new_bv}/entries"
        rm_rf_at(self.fd, entries)
        mkdir_p_at(self.fd, entries, 0o755)
        show_osname = any(d.osname != deployments[0].osname for d in deployments[1:])
        for d in deployments:
            self._install_deployment_kernel(new_bv, d, len(deployments), show_osname)
        self._create_new_bootlinks(new_bv, deployments)
        subbootdir = self._swap_bootlinks(new_bv)
        target = BootTarget(self.fd, self.path, self.read_boot_loader_configs)
        bootloader = query_bootloader(target, self.repo.config.get("sysroot", "bootloader") or "auto")
        if bootloader is not None:
            try:
                bootloader.write_config(target, new_bv, deployments)
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
            bootloader.post_bls_sync(target, new_bv)
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
