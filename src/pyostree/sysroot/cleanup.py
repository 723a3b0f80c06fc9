"""Cleanup of a sysroot: the other boot version, deployments and /boot dirs no entry names,
the ``ostree/B/S/N`` refs, and a prune of the system repository to refs + deployments."""

from __future__ import annotations

import errno
import os

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.objects import ObjectType
from pyostree.sysroot.core import SysrootCore
from pyostree.sysroot.deployment import Deployment
from pyostree.sysroot.fsutil import exists_at, rm_rf_at


class SysrootCleanup(SysrootCore):
    """Cleanup and prune of a sysroot (see core.py)."""

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
