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
