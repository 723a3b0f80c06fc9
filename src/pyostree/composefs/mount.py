"""Mount a composefs image the way ostree-prepare-root (libcomposefs's lcfs_mount_image) does.

1. the image is mounted read-only as EROFS through a loop device, on a private temporary
   directory;
2. overlayfs is mounted read-only on the target with
   ``lowerdir=IMAGE_MOUNT::OBJECTS,redirect_dir=on,metacopy=on``: the image is the only visible
   lower layer, the repository's ``objects/`` directory a data-only lower layer (kernel >= 6.5)
   that the image's ``trusted.overlay.redirect`` xattrs point into;
3. the EROFS mount is detached again (the overlay keeps it alive until it is unmounted itself).

Only bare, bare-user and bare-user-only repositories can back a mount: their objects hold the
plain file contents.  ``verity=require`` is not asked for (this kernel's filesystems have no
fs-verity here); the digests are in the image all the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from pyostree.errors import OstreeError

MOUNT_TIMEOUT = 60


def _run(argv: list[str], what: str) -> None:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT)
    except FileNotFoundError:
        raise OstreeError(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise OstreeError(f"{what}: timed out") from None
    if cp.returncode != 0:
        raise OstreeError(f"{what}: {cp.stderr.strip() or f'exit status {cp.returncode}'}")


def overlay_options(image_mount: str, objects: str) -> str:
    for p in (image_mount, objects):
        if any(c in p for c in ",:\\\n"):
            raise OstreeError(f"Cannot use {p!r} in an overlay mount (',', ':' or '\\' in the path)")
    return f"ro,lowerdir={image_mount}::{objects},redirect_dir=on,metacopy=on"


def mount_composefs(image: str, objects: str, mountpoint: str) -> None:
    """Mount *image* with *objects* (a bare repo's objects/ dir) as its data on *mountpoint*."""
    if not os.path.isfile(image):
        raise OstreeError(f"composefs image {image}: not a regular file")
    if not os.path.isdir(objects):
        raise OstreeError(f"objects directory {objects}: not a directory")
    if not os.path.isdir(mountpoint):
        raise OstreeError(f"mount point {mountpoint}: not a directory")
    tmp = tempfile.mkdtemp(prefix="pyostree-composefs-")
    try:
        _run(["mount", "-t", "erofs", "-o", "ro,loop", os.path.abspath(image), tmp],
             f"Mounting composefs image {image}")
        try:
            _run(["mount", "-t", "overlay", "composefs", "-o",
                  overlay_options(tmp, os.path.abspath(objects)), mountpoint],
                 f"Mounting composefs overlay on {mountpoint}")
        finally:
            subprocess.run(["umount", "-l", tmp], capture_output=True, timeout=MOUNT_TIMEOUT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unmount(mountpoint: str) -> None:
    _run(["umount", mountpoint], f"Unmounting {mountpoint}")
