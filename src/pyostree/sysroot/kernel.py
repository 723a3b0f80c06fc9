"""Finding the kernel, initramfs, devicetree and HMAC file inside a deployment.

Layouts, in libostree's order of preference: ``usr/lib/modules/$kver/vmlinuz``
(boot checksum computed over the files), then the legacy
``usr/lib/ostree-boot`` or ``boot`` with ``vmlinuz-$kver-$bootcsum`` names.
"""

from __future__ import annotations

import os
import re
import stat

from pyostree.errors import OstreeError
from pyostree.store.objects import Record, sha256
from pyostree.sysroot.fsutil import err, exists_at

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    import hashlib

_CSUM = re.compile(r"^[0-9a-f]{64}$")


class KernelLayout(Record):
    def __init__(self, boot_dir: str, kernel_srcpath: str, kernel_namever: str, bootcsum: str,
                 initramfs_srcpath: str | None = None, initramfs_namever: str | None = None,
                 devicetree_srcpath: str | None = None, devicetree_namever: str | None = None,
                 hmac_srcpath: str | None = None, hmac_namever: str | None = None) -> None:
        self.boot_dir = boot_dir
        """Directory (relative to the deployment root) holding the files."""
        self.kernel_srcpath = kernel_srcpath
        self.kernel_namever = kernel_namever
        self.bootcsum = bootcsum
        self.initramfs_srcpath = initramfs_srcpath
        self.initramfs_namever = initramfs_namever
        self.devicetree_srcpath = devicetree_srcpath
        self.devicetree_namever = devicetree_namever
        """None with a srcpath: a whole ``dtb`` directory."""
        self.hmac_srcpath = hmac_srcpath
        self.hmac_namever = hmac_namever



def _hash_file(h: hashlib._Hash, dfd: int, path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        raise err(e, f"openat({path})") from None
    with open(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def _hash_dir(h: hashlib._Hash, dfd: int, path: str) -> None:
    for name in sorted(os.listdir(f"/proc/self/fd/{dfd}/{path}")):
        sub = f"{path}/{name}"
        st = os.lstat(f"/proc/self/fd/{dfd}/{sub}")
        if stat.S_ISDIR(st.st_mode):
            _hash_dir(h, dfd, sub)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            try:
                _hash_file(h, dfd, sub)
            except OstreeError:
                pass


def _usrlib_modules(dfd: int, no_dtb: bool) -> KernelLayout | None:
    base = "usr/lib/modules"
    st = exists_at(dfd, base, follow=True)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return None
    for ent in os.scandir(f"/proc/self/fd/{dfd}/{base}"):
        if not ent.is_dir(follow_symlinks=False):
            continue
        kst = exists_at(dfd, f"{base}/{ent.name}/vmlinuz", follow=True)
        if kst is None or not stat.S_ISREG(kst.st_mode):
            continue
        kver = ent.name
        bdir = f"{base}/{kver}"
        h = sha256()
        _hash_file(h, dfd, f"{bdir}/vmlinuz")
        lay = KernelLayout(bdir, "vmlinuz", f"vmlinuz-{kver}", "")
        for cand in ("initramfs.img", "initramfs"):
            if exists_at(dfd, f"{bdir}/{cand}", follow=True) is not None:
                lay.initramfs_srcpath = cand
                lay.initramfs_namever = f"initramfs-{kver}.img"
                _hash_file(h, dfd, f"{bdir}/{cand}")
                break
        if not no_dtb:
            if exists_at(dfd, f"{bdir}/devicetree", follow=True) is not None:
                lay.devicetree_srcpath = "devicetree"
                lay.devicetree_namever = f"devicetree-{kver}"
                _hash_file(h, dfd, f"{bdir}/devicetree")
            else:
                dst = exists_at(dfd, f"{bdir}/dtb", follow=True)
                if dst is not None and stat.S_ISDIR(dst.st_mode):
                    lay.devicetree_srcpath = "dtb"
                    _hash_dir(h, dfd, f"{bdir}/dtb")
        if exists_at(dfd, f"{bdir}/.vmlinuz.hmac", follow=True) is not None:
            lay.hmac_srcpath = ".vmlinuz.hmac"
            lay.hmac_namever = f".{lay.kernel_namever}.hmac"
        lay.bootcsum = h.hexdigest()
        return lay
    return None


def _legacy(dfd: int) -> KernelLayout | None:
    bdir = None
    for cand in ("usr/lib/ostree-boot", "boot"):
        st = exists_at(dfd, cand, follow=True)
        if st is not None and stat.S_ISDIR(st.st_mode):
            bdir = cand
            break
    if bdir is None:
        return None
    found: dict[str, tuple[str, str, str]] = {}
    for name in os.listdir(f"/proc/self/fd/{dfd}/{bdir}"):
        for kind in ("vmlinuz-", "initramfs-", "devicetree-"):
            if kind in found or not name.startswith(kind):
                continue
            namever, _, csum = name.rpartition("-")
            if _CSUM.match(csum):
                found[kind] = (name, namever, csum)
        if len(found) == 3:
            break
    if "vmlinuz-" not in found:
        return None
    kname, kver, kcsum = found["vmlinuz-"]
    lay = KernelLayout(bdir, kname, kver, kcsum)
    if "initramfs-" in found:
        iname, iver, icsum = found["initramfs-"]
        if icsum != kcsum:
            raise OstreeError("Mismatched kernel checksum vs initrd")
        lay.initramfs_srcpath, lay.initramfs_namever = iname, iver
    if "devicetree-" in found:
        dname, dver, dcsum = found["devicetree-"]
        if dcsum != kcsum:
            raise OstreeError("Mismatched kernel checksum vs device tree in tree")
        lay.devicetree_srcpath, lay.devicetree_namever = dname, dver
    return lay


def find_kernel(deployment_dfd: int, no_dtb: bool = False) -> KernelLayout:
    mods = _usrlib_modules(deployment_dfd, no_dtb)
    legacy = _legacy(deployment_dfd)
    if legacy is None:
        if mods is None:
            raise OstreeError("Failed to find kernel in /usr/lib/modules, /usr/lib/ostree-boot or /boot")
        return mods
    if mods is not None and mods.initramfs_srcpath is None and legacy.initramfs_srcpath is not None:
        return legacy
    return mods if mods is not None else legacy
