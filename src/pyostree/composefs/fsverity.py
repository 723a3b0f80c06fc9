"""fs-verity digests computed in Python exactly as the Linux kernel computes them.

The kernel's fs-verity (Documentation/filesystems/fsverity.rst) hashes a file as a Merkle tree of
SHA-256 digests over 4096-byte blocks, salt-less here: level 0 holds the digest of every data
block (the last block zero-padded), each higher level the digests of the level below packed 128
to a 4096-byte block (zero-padded), up to a single root digest.  A file of at most one block has
the digest of that block as root; an empty file an all-zero root.  The file's fs-verity digest is
the SHA-256 of the 256-byte ``fsverity_descriptor`` (version 1, algorithm 1 = SHA-256,
log2(block size) = 12, no salt, the data size, the root digest padded to 64 bytes).

``fsverity digest FILE`` (Debian package ``fsverity``) prints the same value; the tests compare.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
from typing import BinaryIO

BLOCK_SIZE = 4096
DIGEST_SIZE = 32
HASH_ALG_SHA256 = 1
_HASHES_PER_BLOCK = BLOCK_SIZE // DIGEST_SIZE

# linux/fsverity.h: _IOW('f', 133, struct fsverity_enable_arg) / _IOWR('f', 134, struct fsverity_digest)
FS_IOC_ENABLE_VERITY = 0x40806685
FS_IOC_MEASURE_VERITY = 0xC0046686


def _sha256(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


class FsVerityHasher:
    """Incremental fs-verity digest: feed bytes with update(), read digest() once at the end."""

    __slots__ = ("_counts", "_levels", "_pending", "_size")

    def __init__(self) -> None:
        self._pending = bytearray()  # the current partial data block
        self._levels: list[bytearray] = []  # per tree level: digests not yet packed into a block
        self._counts: list[int] = []  # per tree level: digests emitted into it so far
        self._size = 0

    def _push(self, level: int, digest: bytes) -> None:
        while True:
            if level == len(self._levels):
                self._levels.append(bytearray())
                self._counts.append(0)
            buf = self._levels[level]
            buf += digest
            self._counts[level] += 1
            if len(buf) < BLOCK_SIZE:
                return
            digest = _sha256(buf)
            buf.clear()
            level += 1

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._size += len(view)
        pos = 0
        if self._pending:
            take = min(BLOCK_SIZE - len(self._pending), len(view))
            self._pending += view[:take]
            pos = take
            if len(self._pending) < BLOCK_SIZE:
                return
            self._push(0, _sha256(self._pending))
            self._pending.clear()
        end = len(view)
        while end - pos >= BLOCK_SIZE:
            self._push(0, _sha256(view[pos:pos + BLOCK_SIZE]))
            pos += BLOCK_SIZE
        if pos < end:
            self._pending += view[pos:end]

    def _root(self) -> bytes:
        if self._size == 0:
            return bytes(DIGEST_SIZE)
        if self._pending:
            self._push(0, _sha256(self._pending.ljust(BLOCK_SIZE, b"\0")))
            self._pending.clear()
        level = 0
        while True:
            top = level == len(self._levels) - 1
            if top and self._counts[level] == 1:
                return bytes(self._levels[level])
            buf = self._levels[level]
            if buf:
                digest = _sha256(buf.ljust(BLOCK_SIZE, b"\0"))
                buf.clear()
                self._push(level + 1, digest)
            level += 1

    def digest(self) -> bytes:
        """The 32-byte fs-verity digest (SHA-256 of the fsverity_descriptor)."""
        return _descriptor_digest(self._size, self._root())

    def hexdigest(self) -> str:
        return self.digest().hex()


def _descriptor_digest(size: int, root: bytes) -> bytes:
    descriptor = struct.pack("<BBBBIQ", 1, HASH_ALG_SHA256, 12, 0, 0, size)
    return _sha256(descriptor + root.ljust(64, b"\0") + bytes(176))


def digest_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if len(data) <= BLOCK_SIZE:  # the common small file: no tree, one hash and the descriptor
        if not data:
            return _descriptor_digest(0, bytes(DIGEST_SIZE))
        return _descriptor_digest(len(data), _sha256(bytes(data).ljust(BLOCK_SIZE, b"\0")))
    h = FsVerityHasher()
    h.update(data)
    return h.digest()


def digest_stream(stream: BinaryIO) -> bytes:
    h = FsVerityHasher()
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            return h.digest()
        h.update(chunk)


_NO_VERITY_FS: set[int] = set()  # st_dev of filesystems that answered "not supported"


def measure_fd(fd: int) -> bytes | None:
    """The kernel's fs-verity digest of *fd* (FS_IOC_MEASURE_VERITY), or None when verity is off."""
    dev = os.fstat(fd).st_dev
    if dev in _NO_VERITY_FS:
        return None
    buf = bytearray(struct.pack("<HH", HASH_ALG_SHA256, 64) + bytes(64))
    try:
        fcntl.ioctl(fd, FS_IOC_MEASURE_VERITY, buf)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOTTY):
            _NO_VERITY_FS.add(dev)
        return None
    alg, size = struct.unpack_from("<HH", buf)
    if alg != HASH_ALG_SHA256 or size != DIGEST_SIZE:
        return None
    return bytes(buf[4:4 + DIGEST_SIZE])


def digest_fd(fd: int, *, measure: bool = True) -> bytes:
    """fs-verity digest of an open file: the kernel's when verity is enabled on it, else computed."""
    if measure:
        known = measure_fd(fd)
        if known is not None:
            return known
    head = os.pread(fd, BLOCK_SIZE + 1, 0)
    if len(head) <= BLOCK_SIZE:
        return digest_bytes(head)
    h = FsVerityHasher()
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return h.digest()
        h.update(chunk)
        offset += len(chunk)


def enable_verity(fd: int) -> bool:
    """Enable fs-verity (SHA-256, 4 KiB, no salt) on a read-only fd; False where unsupported.

    Raises OSError for errors other than "this filesystem/kernel has no fs-verity".
    """
    arg = struct.pack("<IIIIQIIQ11Q", 1, HASH_ALG_SHA256, BLOCK_SIZE, 0, 0, 0, 0, 0, *([0] * 11))
    try:
        fcntl.ioctl(fd, FS_IOC_ENABLE_VERITY, arg)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
            return False
        if e.errno == errno.EEXIST:  # already enabled
            return True
        raise
    return True
