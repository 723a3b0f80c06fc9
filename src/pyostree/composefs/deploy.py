"""composefs for deployments: ``.ostree.cfs`` at deploy time, and mounting a deployment with it.

ostree 2026.4 (ostree-sysroot-deploy.c, built with composefs) writes the deployment's image,
``DEPLOYMENT/.ostree.cfs``, right after the hardlink checkout, with verity digests only where the
objects already have fs-verity ("maybe") unless ``prepare-root.conf`` asks for ``composefs.enabled
= verity`` or ``signed`` ("yes": every digest, and the commit's ``ostree.composefs.digest.v0`` must
match).  pyostree writes it when composefs is asked for: the repository's
``[ex-integrity] composefs`` (a tristate, true/yes/1), or ``[composefs] enabled`` in the
deployment's ``usr/lib/ostree/prepare-root.conf`` (overridden by ``etc/ostree/prepare-root.conf``)
set to yes/true/1, maybe, verity or signed; without either, a deployment stays as ostree 2022.7
makes it.  A commit whose digest was made with ``--process-passthrough-whiteouts`` gets that image.

``mount_deployment`` does what ostree-prepare-root does with the image at boot: EROFS loop
mount plus a read-only overlay with the repository's objects as data-only lower layer.
"""

from __future__ import annotations

import os

from pyostree.composefs.checkout import checkout_composefs
from pyostree.composefs.image import Verity, commit_digest_metadata
from pyostree.composefs.mount import mount_composefs
from pyostree.errors import OstreeError
from pyostree.store.keyfile import KeyFile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyostree.store.repo import Repo

COMPOSEFS_NAME = ".ostree.cfs"
PREPARE_ROOT_CONFIG = "ostree/prepare-root.conf"
_YES = {"1", "yes", "true"}
_NO = {"0", "no", "false"}


def _tristate(value: str | None, where: str) -> str:
    if value is None:
        return "no"
    v = value.strip().lower()
    if v in _YES:
        return "yes"
    if v in _NO:
        return "no"
    if v == "maybe":
        return "maybe"
    raise OstreeError(f"{where}: invalid tristate value '{value}'")


def _prepare_root_config(deploy_dfd: int) -> KeyFile | None:
    found: KeyFile | None = None
    for root in ("usr/lib", "etc"):
        path = f"{root}/{PREPARE_ROOT_CONFIG}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=deploy_dfd)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OstreeError(f"Parsing prepare-root config: {path}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(1 << 20)
        try:
            found = KeyFile.parse(data.decode("utf-8"), path)
        except UnicodeDecodeError:
            raise OstreeError(f"Parsing prepare-root config: {path}: invalid UTF-8") from None
    return found


def deployment_verity(repo: Repo, deploy_dfd: int) -> Verity | None:
    """How to build the deployment's image (None: no image), from the repo and prepare-root.conf."""
    wanted = _tristate(repo.config.get("ex-integrity", "composefs"), "ex-integrity.composefs")
    config = _prepare_root_config(deploy_dfd)
    enabled = config.get("composefs", "enabled") if config is not None else None
    if enabled is not None and enabled.strip() in ("verity", "signed"):
        return Verity.YES
    state = _tristate(enabled, "prepare-root.conf composefs.enabled")
    if wanted == "no" and state == "no":
        return None
    return Verity.MAYBE


def write_deployment_image(repo: Repo, commit: str, deploy_dfd: int) -> bytes | None:
    """Write ``.ostree.cfs`` into a deployment when composefs is wanted; its fs-verity digest."""
    verity = deployment_verity(repo, deploy_dfd)
    if verity is None:
        return None
    passthrough = commit_digest_metadata(repo, commit)[1]
    try:
        return checkout_composefs(repo, commit, COMPOSEFS_NAME, verity=verity,
                                  passthrough_whiteouts=passthrough, dir_fd=deploy_dfd, enable_verity=True)
    except OstreeError as e:
        raise OstreeError(f"composefs: {e}", errno=e.errno) from None


def mount_deployment(repo_path: str, deployment: str, mountpoint: str) -> None:
    """Mount the deployment directory's ``.ostree.cfs`` read-only on *mountpoint*, as at boot."""
    image = os.path.join(deployment, COMPOSEFS_NAME)
    if not os.path.exists(image):
        raise OstreeError(f"No composefs image in deployment {deployment} (deploy with ex-integrity.composefs)")
    mount_composefs(image, os.path.join(repo_path, "objects"), mountpoint)
