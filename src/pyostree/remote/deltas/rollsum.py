"""Rollsum matching: the chunks two versions of a file share (ostree-rollsum.c, bupsplit.c).

Both files are cut into chunks where bup's rolling checksum (a 64-byte
window, ``s2 & 8191 == 8191``) says so, restarting the checksum at each
chunk, at most 32 KiB a chunk, and after the last cut point in fixed 32 KiB
pieces.  A chunk of the new file whose CRC-32, length and bytes equal a chunk
of the old one is a match; the delta copies matched chunks from the old file
(``w`` with the old object as read source) and sends the rest.

ostree computes each chunk's CRC over the *start of the file* instead of the
chunk (``crc32 (crc, buf, offset)``), so in ostree a chunk only matches when
the two files also share a prefix as long as the chunk.  We take the CRC of
the chunk itself, so every chunk ostree matches we match too, and more
(``Matches.matches``); ``Matches.ostree_ratio`` is the ratio ostree computes,
which decides whether ostree uses rollsum for a file at all.

The rolling sum is vectorised: bup's ``s2`` over a window is
``sum((p + 1 - t) * x[t]) + s2_init`` (mod 2^32), so prefix sums of ``x`` and
``t * x`` give it at every position at once.  Only the 63 positions after a
chunk start, where the restarted window still holds zeros, are computed apart.
"""

from __future__ import annotations

import zlib

from pyostree.store.objects import Record

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

WINDOW = 64
BLOB_BITS = 13
BLOB_MASK = (1 << BLOB_BITS) - 1
BLOB_MAX = 8192 * 4
_CHAR_OFFSET = 31
_S2_INIT = WINDOW * (WINDOW - 1) * _CHAR_OFFSET


class Matches(Record):
    def __init__(self) -> None:
        self.matches: list[tuple[int, int, int]] = []
        """(length, offset in the new file, offset in the old file), by new offset."""
        self.crcmatches = 0
        self.bufmatches = 0
        self.total = 0
        self.match_size = 0
        self.ostree_bufmatches = 0
        """Matches as ostree counts them (its CRC covers the file's start)."""

    @property
    def ratio(self) -> int:
        """Percentage of the new file's chunks found in the old file (ostree's ``match_ratio``)."""
        return self.bufmatches * 100 // self.total if self.total else 0

    @property
    def ostree_ratio(self) -> int:
        return self.ostree_bufmatches * 100 // self.total if self.total else 0


class _Sums:
    """Prefix sums that give bup's s2 (mod 2^64, enough for the low 13 bits)."""

    def __init__(self, data: bytes) -> None:
        import numpy as np

        x = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
        self.p1 = np.zeros(len(data) + 1, dtype=np.uint64)
        self.p2 = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(x, out=self.p1[1:])
        np.cumsum(x * np.arange(len(data), dtype=np.uint64), out=self.p2[1:])

    def s2(self, pos: npt.NDArray[np.int64], low: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        """s2 after rolling byte p, the window starting at lo (zeros before it)."""
        import numpy as np

        p = pos.astype(np.uint64)
        lo = low.astype(np.uint64)
        out: npt.NDArray[np.uint64] = ((p + np.uint64(1)) * (self.p1[p + np.uint64(1)] - self.p1[lo])
                                       - (self.p2[p + np.uint64(1)] - self.p2[lo]) + np.uint64(_S2_INIT))
        return out


def chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each chunk, as ostree's rollsum_chunks_crc32 cuts them."""
    import numpy as np

    n = len(data)
    if n == 0:
        return []
    sums = _Sums(data)
    # cut points for an unbroken window (valid from 63 bytes after a chunk start on)
    pos = np.arange(n, dtype=np.int64)
    full = sums.s2(pos, np.maximum(pos - (WINDOW - 1), 0))
    cuts = np.flatnonzero((full & np.uint64(BLOB_MASK)) == BLOB_MASK)
    out: list[tuple[int, int]] = []
    start = 0
    ended = False
    while start < n:
        remaining = n - start
        if ended:
            offset = min(BLOB_MAX, remaining)
        else:
            head_end = min(start + WINDOW - 1, n)
            head = np.arange(start, head_end, dtype=np.int64)
            hs = sums.s2(head, np.full(head.size, start, dtype=np.int64))
            hit = np.flatnonzero((hs & np.uint64(BLOB_MASK)) == BLOB_MASK)
            if hit.size:
                offset = int(hit[0]) + 1
            else:
                i = int(np.searchsorted(cuts, head_end))
                offset = int(cuts[i]) + 1 - start if i < cuts.size else 0
            if offset == 0:
                ended = True
                offset = min(BLOB_MAX, remaining)
            elif offset > BLOB_MAX:
                offset = BLOB_MAX
        out.append((start, offset))
        start += offset
    return out


def compute_matches(old: bytes, new: bytes) -> Matches:
    """The chunks of *new* that *old* also has (ostree's _ostree_compute_rollsum_matches)."""
    mo = memoryview(old)
    mn = memoryview(new)
    by_crc: dict[int, list[tuple[int, int]]] = {}
    for start, length in chunks(old):
        by_crc.setdefault(zlib.crc32(mo[start:start + length]), []).append((start, length))
    new_by_crc: dict[int, list[tuple[int, int]]] = {}
    for start, length in chunks(new):
        new_by_crc.setdefault(zlib.crc32(mn[start:start + length]), []).append((start, length))
    m = Matches()
    for crc, to_chunks in new_by_crc.items():
        from_chunks = by_crc.get(crc)
        m.total += len(to_chunks)
        if from_chunks is None:
            continue
        m.crcmatches += 1
        for to_start, length in to_chunks:
            for from_start, from_len in from_chunks:
                if from_len == length and mo[from_start:from_start + length] == mn[to_start:to_start + length]:
                    m.matches.append((length, to_start, from_start))
                    m.bufmatches += 1
                    m.match_size += length
                    break
    m.matches.sort(key=lambda t: t[1])
    # ostree's count: a new chunk matches when an old chunk of the same length has the
    # same bytes and the two files' prefixes of that length have the same CRC
    old_prefix: dict[int, int] = {}
    for length, _to, _from in m.matches:
        if length not in old_prefix:
            old_prefix[length] = int(zlib.crc32(mo[:length]) == zlib.crc32(mn[:length]))
        m.ostree_bufmatches += old_prefix[length]
    return m
