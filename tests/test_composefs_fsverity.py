"""fs-verity digests in Python against the real `fsverity digest` (Debian package fsverity)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyostree.composefs.fsverity import BLOCK_SIZE, FsVerityHasher, digest_bytes, digest_fd

pytestmark = pytest.mark.skipif(shutil.which("fsverity") is None,
                                reason="needs the fsverity tool (scripts/install-deps.sh)")

LEVEL = 128 * BLOCK_SIZE  # one hash block covers 128 data blocks
SIZES = [0, 1, 100, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE, 5 * BLOCK_SIZE + 7,
         LEVEL - BLOCK_SIZE, LEVEL - 1, LEVEL, LEVEL + 1, LEVEL + BLOCK_SIZE, 2 * LEVEL,
         128 * LEVEL - 1, 128 * LEVEL, 128 * LEVEL + 1]


def _oracle(path: Path) -> str:
    out = subprocess.run(["fsverity", "digest", "--compact", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return out.strip()


@pytest.mark.parametrize("size", SIZES)
def test_digest_matches_fsverity_tool(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    expected = _oracle(path)
    assert digest_bytes(data).hex() == expected
    fd = os.open(path, os.O_RDONLY)
    try:
        assert digest_fd(fd).hex() == expected
    finally:
        os.close(fd)


def test_incremental_updates_in_odd_pieces(tmp_path: Path) -> None:
    data = os.urandom(3 * LEVEL + 12345)
    (tmp_path / "f").write_bytes(data)
    h = FsVerityHasher()
    pos = 0
    for step in (1, 4095, 4097, 7, 100000, 3):
        h.update(data[pos:pos + step])
        pos += step
    h.update(data[pos:])
    assert h.hexdigest() == _oracle(tmp_path / "f")


def test_zero_filled_file(tmp_path: Path) -> None:
    # all-zero blocks hash like the zero padding of hash blocks: the levels must still count right
    data = bytes(LEVEL + BLOCK_SIZE)
    (tmp_path / "f").write_bytes(data)
    assert digest_bytes(data).hex() == _oracle(tmp_path / "f")


def test_enable_verity_where_the_kernel_has_it(tmp_path: Path) -> None:
    """FS_IOC_ENABLE_VERITY on an ext4 with the verity feature: the kernel's measurement must be
    ours; on a kernel without CONFIG_FS_VERITY (this VM's) enable_verity() says so with False."""
    from conftest import IS_ROOT
    from pyostree.composefs.fsverity import enable_verity, measure_fd

    data = os.urandom(3 * BLOCK_SIZE + 1)
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    fd = os.open(plain, os.O_RDONLY)
    try:
        supported_here = enable_verity(fd)
        assert measure_fd(fd) == (digest_bytes(data) if supported_here else None)
    finally:
        os.close(fd)
    if not IS_ROOT or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4 for a verity-capable loop filesystem")
    img, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-O", "verity", str(img)], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True, capture_output=True, timeout=60)
    try:
        (mnt / "f").write_bytes(data)
        fd = os.open(mnt / "f", os.O_RDONLY)
        try:
            if not enable_verity(fd):
                with open("/proc/filesystems") as fs:
                    assert "ext4" in fs.read()
                pytest.skip("kernel built without CONFIG_FS_VERITY: the digest stays computed")
            assert measure_fd(fd) == digest_bytes(data)
            assert digest_fd(fd) == digest_bytes(data)
        finally:
            os.close(fd)
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)
