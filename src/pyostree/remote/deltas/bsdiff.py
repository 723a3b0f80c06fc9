"""bsdiff: the binary diff ostree's ``B`` (bspatch) delta operation applies.

The stream is the one Matthew Endsley's bsdiff library writes and ostree
embeds in a delta part (no header, no compression): a sequence of controls,
each three 8-byte sign-magnitude little-endian integers ``(x, y, z)`` followed
by ``x`` bytes to add to the old file, then ``y`` bytes to copy, after which
the old file's position moves by ``z``.

The search is Colin Percival's algorithm, step for step: a suffix array of
the old file, at each position of the new file the longest match found by
bisecting it, a new control only where a match of another alignment beats
the current one by more than 8 bytes, and the forward and backward
extensions of each aligned run.  The suffix array is unique, so the stream
is byte for byte the one ostree's bsdiff writes for the same two files.

Speed: the suffix array is built by prefix doubling with numpy (sorting only
the suffixes whose rank is still shared), and the per-run scans are numpy
vector operations; only the bisection at unmatched positions runs in Python.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    IntArray = npt.NDArray[np.int64]
    ByteArray = npt.NDArray[np.uint8]

# Above this many bytes the comparisons of a bisection step grow in chunks.
_CMP_CHUNK = 64


def _prefix_keys(data: bytes, width: int) -> npt.NDArray[np.uint64]:
    """For each position, its next *width* (<= 8) bytes as a big-endian integer, zero padded."""
    import numpy as np

    n = len(data)
    pad = np.zeros(n + width, dtype=np.uint64)
    pad[:n] = np.frombuffer(data, dtype=np.uint8)
    key = np.zeros(n, dtype=np.uint64)
    for j in range(width):
        key |= pad[j:j + n] << np.uint64(8 * (width - 1 - j))
    return key


def suffix_array(data: bytes) -> IntArray:
    """The suffix array of *data* with the empty suffix first (``len(data) + 1`` entries).

    Prefix doubling: ranks start from the first seven bytes (the suffix length
    breaks the ties of zero padding), and each round sorts only the suffixes
    whose group still holds more than one, by (rank of i, rank of i + k).
    A suffix's rank is the index in the array where its group starts.
    """
    import numpy as np

    n = len(data)
    width = 7
    key = np.zeros(n + 1, dtype=np.uint64)
    key[:n] = (_prefix_keys(data, width) << np.uint64(3)) | np.minimum(
        np.arange(n, 0, -1, dtype=np.uint64), np.uint64(width))
    sa = np.argsort(key).astype(np.int64)  # ties share a group and are refined below
    sk = key[sa]
    first = np.empty(n + 1, dtype=bool)
    first[0] = True
    first[1:] = sk[1:] != sk[:-1]
    positions = np.arange(n + 1, dtype=np.int64)
    rank = np.empty(n + 1, dtype=np.int64)
    rank[sa] = np.maximum.accumulate(np.where(first, positions, 0))
    idx = positions
    k = width
    while True:
        # entries of the array whose group still holds more than one suffix
        rs = rank[sa[idx]]
        same = rs[1:] == rs[:-1]
        shared = np.zeros(idx.size, dtype=bool)
        shared[1:] |= same
        shared[:-1] |= same
        idx = idx[shared]
        if idx.size == 0:
            break
        items = sa[idx]
        nxt = items + k
        second = np.full(items.size, -1, dtype=np.int64)
        inside = nxt <= n
        second[inside] = rank[nxt[inside]]
        pair = rank[items] * (n + 2) + (second + 1)
        order = np.argsort(pair)
        items = items[order]
        pair = pair[order]
        sa[idx] = items
        starts = np.empty(items.size, dtype=bool)
        starts[0] = True
        starts[1:] = pair[1:] != pair[:-1]
        rank[items] = np.maximum.accumulate(np.where(starts, idx, 0))
        k *= 2
    return sa


def _offtout(v: int) -> bytes:
    return (abs(v) | ((1 << 63) if v < 0 else 0)).to_bytes(8, "little")


def _matchlen(a: bytes, ai: int, b: bytes, bi: int) -> int:
    """Length of the common prefix of a[ai:] and b[bi:]."""
    limit = min(len(a) - ai, len(b) - bi)
    if limit <= 0:
        return 0
    step = 32
    done = 0
    while done < limit:
        m = min(step, limit - done)
        if a[ai + done:ai + done + m] != b[bi + done:bi + done + m]:
            x = a[ai + done:ai + done + m]
            y = b[bi + done:bi + done + m]
            lo, hi = 0, m - 1  # first differing index lies in [lo, hi]
            while lo < hi:
                mid = (lo + hi) // 2
                if x[:mid + 1] == y[:mid + 1]:
                    lo = mid + 1
                else:
                    hi = mid
            return done + lo
        done += m
        step *= 4
    return limit


def _less(old: bytes, oi: int, new: bytes, ni: int) -> bool:
    """memcmp(old + oi, new + ni, MIN(remaining lengths)) < 0."""
    limit = min(len(old) - oi, len(new) - ni)
    done = 0
    step = _CMP_CHUNK
    while done < limit:
        m = min(step, limit - done)
        x = old[oi + done:oi + done + m]
        y = new[ni + done:ni + done + m]
        if x != y:
            return x < y
        done += m
        step *= 8
    return False


class _Searcher:
    """bsdiff's bisection over the suffix array, each step deciding on the
    first eight bytes as integers where both sides have them."""

    def __init__(self, old: bytes, sa: IntArray) -> None:
        import array

        import numpy as np

        self.old = old
        self.sa = array.array("q", sa.tobytes())
        keys = np.zeros(len(old) + 1, dtype=np.uint64)
        keys[:len(old)] = _prefix_keys(old, 8)
        self.keys = array.array("Q", keys[sa].tobytes())

    def search(self, new: bytes, scan: int) -> tuple[int, int]:
        """(match length, position in old)."""
        old, sa, keys = self.old, self.sa, self.keys
        oldsize = len(old)
        long_query = len(new) - scan >= 8
        q = int.from_bytes(new[scan:scan + 8], "big") if long_query else 0
        st, en = 0, oldsize
        while en - st >= 2:
            x = st + (en - st) // 2
            ox = sa[x]
            if long_query and oldsize - ox >= 8:
                kx = keys[x]
                if kx != q:
                    less = kx < q
                else:
                    less = _less(old, ox + 8, new, scan + 8)
            else:
                less = _less(old, ox, new, scan)
            if less:
                st = x
            else:
                en = x
        x = _matchlen(old, sa[st], new, scan)
        y = _matchlen(old, sa[en], new, scan)
        if x > y:
            return x, sa[st]
        return y, sa[en]


def _count_equal(oa: ByteArray, na: ByteArray, old: bytes, new: bytes, oi: int, ni: int, m: int) -> int:
    """How many of old[oi:oi+m] and new[ni:ni+m] agree (both ranges inside their buffers)."""
    if m <= 0:
        return 0
    if old[oi:oi + m] == new[ni:ni + m]:
        return m
    if m < 16:
        return sum(1 for i in range(m) if old[oi + i] == new[ni + i])
    import numpy as np

    return int(np.count_nonzero(oa[oi:oi + m] == na[ni:ni + m]))


def _best_prefix(eq: npt.NDArray[np.bool_]) -> int:
    """First i (1-based) maximising 2*sum(eq[:i]) - i if that maximum beats 0, else 0.

    bsdiff's ``if (s*2 - i > Sf*2 - lenf)`` scan over an aligned run."""
    import numpy as np

    if eq.size == 0:
        return 0
    score = 2 * np.cumsum(eq, dtype=np.int64) - np.arange(1, eq.size + 1, dtype=np.int64)
    best = int(np.argmax(score))
    return best + 1 if int(score[best]) > 0 else 0


def diff(old: bytes, new: bytes) -> bytes:
    """The bsdiff stream turning *old* into *new*."""
    import numpy as np

    sa = suffix_array(old)
    searcher = _Searcher(old, sa)
    oa = np.frombuffer(old, dtype=np.uint8)
    na = np.frombuffer(new, dtype=np.uint8)
    oldsize, newsize = len(old), len(new)
    out: list[bytes] = []
    scan = length = pos = 0
    lastscan = lastpos = lastoffset = 0
    search = searcher.search
    while scan < newsize:
        oldscore = 0
        scan += length
        scsc = scan
        while scan < newsize:
            length, pos = search(new, scan)
            # count the bytes of [scsc, scan + length) that the current alignment matches
            end = scan + length
            if scsc < end:
                lo = max(scsc, -lastoffset)
                hi = min(end, oldsize - lastoffset)
                if lo < hi:
                    oldscore += _count_equal(oa, na, old, new, lo + lastoffset, lo, hi - lo)
                scsc = end
            if (length == oldscore and length != 0) or length > oldscore + 8:
                break
            o = scan + lastoffset
            if 0 <= o < oldsize and old[o] == new[scan]:
                oldscore -= 1
            scan += 1
        if length != oldscore or scan == newsize:
            m = min(scan - lastscan, oldsize - lastpos)
            lenf = _best_prefix(oa[lastpos:lastpos + m] == na[lastscan:lastscan + m]) if m > 0 else 0
            lenb = 0
            if scan < newsize:
                m = min(scan - lastscan, pos)
                if m > 0:
                    eqb = oa[pos - m:pos][::-1] == na[scan - m:scan][::-1]
                    lenb = _best_prefix(eqb)
            if lastscan + lenf > scan - lenb:
                overlap = (lastscan + lenf) - (scan - lenb)
                f0, b0 = lastscan + lenf - overlap, scan - lenb
                fo, bo = lastpos + lenf - overlap, pos - lenb
                d = ((na[f0:f0 + overlap] == oa[fo:fo + overlap]).astype(np.int64)
                     - (na[b0:b0 + overlap] == oa[bo:bo + overlap]).astype(np.int64))
                s = np.cumsum(d)
                best = int(np.argmax(s))
                lens = best + 1 if int(s[best]) > 0 else 0
                lenf += lens - overlap
                lenb -= lens
            extra = (scan - lenb) - (lastscan + lenf)
            out.append(_offtout(lenf) + _offtout(extra) + _offtout((pos - lenb) - (lastpos + lenf)))
            if lenf:
                out.append((na[lastscan:lastscan + lenf] - oa[lastpos:lastpos + lenf]).tobytes())
            if extra:
                out.append(new[lastscan + lenf:lastscan + lenf + extra])
            lastscan = scan - lenb
            lastpos = pos - lenb
            lastoffset = pos - scan
    return b"".join(out)
