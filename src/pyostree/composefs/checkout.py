"""``checkout --composefs``: write a commit's composefs image file, checked against its digest.

As ostree 2026.4's ``ostree_repo_checkout_composefs``: the image is written to a temporary file
next to the destination, and with verity on (``--composefs``, not ``--composefs-noverity``) its
fs-verity digest must equal the commit's ``ostree.composefs.digest.v0`` when it has one
("Generated composefs image digest (X) doesn't match expected digest (Y)"); then it is made
0644 and renamed over the destination, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os

from pyostree.composefs import fsverity
from pyostree.composefs.erofs import CfsError, write_image
from pyostree.composefs.image import Verity, commit_digest_metadata, commit_tree
from pyostree.errors import OstreeError
from pyostree.store.files import random_name, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyostree.store.repo import Repo

__all__ = ["Verity", "build_image", "checkout_composefs"]


class _Sink:
    """Buffered writes to a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            write_all(self.fd, bytes(self.buf))
            self.buf.clear()


def build_image(repo: Repo, commit: str, fd: int | None, *, verity: Verity = Verity.YES,
                passthrough_whiteouts: bool = False) -> bytes:
    """Write *commit*'s composefs image to *fd* (None: only measure); return its fs-verity digest.

    With verity on, a digest recorded in the commit must match.
    """
    root = commit_tree(repo, commit, verity=verity, passthrough_whiteouts=passthrough_whiteouts)
    sink = _Sink(fd) if fd is not None else None
    try:
        digest = write_image(root, sink.write if sink is not None else None, want_digest=True)
    except CfsError as e:
        raise OstreeError(f"Writing composefs: {e}") from None
    if sink is not None:
        sink.flush()
    assert digest is not None
    if verity is Verity.YES:
        expected, made_with_passthrough = commit_digest_metadata(repo, commit)
        if expected is not None and expected != digest:
            hint = ""
            if made_with_passthrough != passthrough_whiteouts:
                hint = ("; the commit's digest was made " + ("with" if made_with_passthrough else "without")
                        + " --process-passthrough-whiteouts")
            raise OstreeError(f"Generated composefs image digest ({digest.hex()}) doesn't match expected "
                              f"digest ({expected.hex()}){hint}")
    return digest


def checkout_composefs(repo: Repo, commit: str, destination: str, *, verity: Verity = Verity.YES,
                       passthrough_whiteouts: bool = False, dir_fd: int | None = None,
                       enable_verity: bool = False) -> bytes:
    """Write the image of *commit* to *destination* atomically; return its fs-verity digest.

    With *enable_verity*, fs-verity is enabled on the file where the filesystem supports it.
    """
    parent, name = os.path.split(destination)
    try:
        dfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        raise OstreeError(f"opendir({parent or '.'}): {e.strerror}") from None
    tmp = random_name(".cfs-tmp.")
    try:
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except OSError as e:
            raise OstreeError(f"Creating {destination}: {e.strerror}") from None
        try:
            digest = build_image(repo, commit, fd, verity=verity, passthrough_whiteouts=passthrough_whiteouts)
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        if enable_verity:
            rfd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
            try:
                fsverity.enable_verity(rfd)
            finally:
                os.close(rfd)
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as e:
            raise OstreeError(f"Writing {destination}: {e.strerror}") from None
        tmp = ""
        return digest
    except OSError as e:
        raise OstreeError(f"Writing {destination}: {e.strerror}") from None
    finally:
        if tmp:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        os.close(dfd)
