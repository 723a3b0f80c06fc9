"""Creating deployments (checkout, /etc merge, origin files), and :class:`Sysroot`, the public class
that has every layer (see core.py)."""

from __future__ import annotations

import errno
import os
import stat
import sys

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.keyfile import KeyFile
from pyostree.sysroot.boot import SysrootBoot
from pyostree.sysroot.bootconfig import BootConfig
from pyostree.sysroot.core import _unlink_quiet, validate_osname
from pyostree.sysroot.deployment import Deployment
from pyostree.sysroot.etcmerge import merge_etc
from pyostree.sysroot.fsutil import (
    err,
    exists_at,
    mkdir_p_at,
    opendirat,
    replace_contents_at,
    rm_rf_at,
    set_immutable,
)
from pyostree.sysroot.kargs import KernelArgs
from pyostree.sysroot.kernel import find_kernel
from pyostree.tree.checkout import CheckoutOptions, checkout_tree


class Sysroot(SysrootBoot):
    """An ostree sysroot at *path* (default ``$OSTREE_SYSROOT`` or ``/``)."""

    # -- creating deployments ---------------------------------------------------------
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
