"""``commit --bootable``: the ``ostree.linux`` / ``ostree.bootable`` commit metadata.

ostree finds the kernel in the *committed* tree: exactly one directory
``/usr/lib/modules/VERSION`` that contains a ``vmlinuz`` entry.  It then adds
the two keys through a ``GVariantDict``, whose ``end()`` emits the entries in
``GHashTable`` iteration order -- so the order of *all* metadata keys changes,
and with it the commit checksum.  :func:`ghash_order` reproduces that order
(GLib >= 2.60 open-addressing table with ``g_str_hash``) so pyostree writes
the very same commit bytes.
"""

from __future__ import annotations

from pyostree.errors import OstreeError
from pyostree.store import gvariant
from pyostree.store.repo import Repo

Metadata = list[tuple[str, gvariant.Variant]]

KEY_BOOTABLE = "ostree.bootable"
KEY_LINUX = "ostree.linux"

_MIN_SHIFT = 3
_PRIME_MOD = (1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749,
              65521, 131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213,
              33554393, 67108859, 134217689, 268435399, 536870909, 1073741789, 2147483647)
_M32 = 0xFFFFFFFF


def g_str_hash(key: str) -> int:
    """GLib's ``g_str_hash`` (djb2 over *signed* chars of the UTF-8 bytes)."""
    h = 5381
    for b in key.encode("utf-8"):
        h = (h * 33 + (b - 256 if b >= 128 else b)) & _M32
    return h


class _GHash:
    """Just enough of GLib's GHashTable to know where every key ends up."""

    def __init__(self) -> None:
        self._set_shift(_MIN_SHIFT)
        self.hashes = [0] * self.size
        self.keys: list[str | None] = [None] * self.size
        self.nnodes = 0
        self.noccupied = 0

    def _set_shift(self, shift: int) -> None:
        self.size = 1 << shift
        self.mod = _PRIME_MOD[shift]
        self.mask = self.size - 1

    def _index(self, h: int) -> int:
        return ((h * 11) & _M32) % self.mod

    def _lookup(self, key: str) -> tuple[int, int]:
        h = g_str_hash(key)
        if h < 2:
            h = 2
        i = self._index(h)
        step = 0
        tomb = -1
        while self.hashes[i] != 0:
            if self.hashes[i] == h and self.keys[i] == key:
                return i, h
            if self.hashes[i] == 1 and tomb < 0:
                tomb = i
            step += 1
            i = (i + step) & self.mask
        return (tomb if tomb >= 0 else i), h

    def insert(self, key: str) -> None:
        i, h = self._lookup(key)
        old = self.hashes[i]
        if old >= 2:
            return  # replacing a value keeps the slot
        self.hashes[i] = h
        self.keys[i] = key
        self.nnodes += 1
        if old == 0:
            self.noccupied += 1
        self._maybe_resize()

    def _maybe_resize(self) -> None:
        noc = self.noccupied
        if (self.size > self.nnodes * 4 and self.size > 1 << _MIN_SHIFT) or self.size <= noc + noc // 16:
            self._resize()

    def _resize(self) -> None:
        old_size = self.size
        n = int(self.nnodes * 1.333)
        shift = 0
        while n:
            shift += 1
            n >>= 1
        self._set_shift(max(shift, _MIN_SHIFT))
        if self.size > old_size:
            self.hashes += [0] * (self.size - old_size)
            self.keys += [None] * (self.size - old_size)
        moved = [False] * max(self.size, old_size)
        for i in range(old_size):
            h = self.hashes[i]
            if h < 2:
                self.hashes[i] = 0
                continue
            if moved[i]:
                continue
            self.hashes[i] = 0
            key = self.keys[i]
            self.keys[i] = None
            while True:
                j = self._index(h)
                step = 0
                while moved[j]:
                    step += 1
                    j = (j + step) & self.mask
                moved[j] = True
                replaced_h, replaced_k = self.hashes[j], self.keys[j]
                self.hashes[j], self.keys[j] = h, key
                if replaced_h < 2:
                    break
                h, key = replaced_h, replaced_k
        if self.size < old_size:
            del self.hashes[self.size:]
            del self.keys[self.size:]
        self.noccupied = self.nnodes

    def order(self) -> list[str]:
        return [k for h, k in zip(self.hashes, self.keys, strict=True) if h >= 2 and k is not None]


def ghash_order(keys: list[str]) -> list[str]:
    """The order ``g_variant_dict_end`` emits *keys* inserted in this order."""
    t = _GHash()
    for k in keys:
        t.insert(k)
    return t.order()


def dict_end(metadata: Metadata) -> Metadata:
    """``GVariantDict`` round trip: last value wins per key, GHashTable order."""
    values: dict[str, gvariant.Variant] = {}
    for k, v in metadata:
        values[k] = v
    return [(k, values[k]) for k in ghash_order([k for k, _ in metadata])]


def find_kernel_release(repo: Repo, root_contents: str) -> str:
    """The single ``/usr/lib/modules/VERSION`` holding a ``vmlinuz``."""
    contents = root_contents
    path = ""
    for part in ("usr", "lib", "modules"):
        tree = repo.load_dirtree(contents)
        path += "/" + part
        sub = next((tc for name, tc, _ in tree.dirs if name == part), None)
        if sub is None:
            if any(name == part for name, _ in tree.files):
                raise OstreeError(f"Opening usr/lib/modules: Not a directory: {path}")
            raise OstreeError(f"No such file or directory: {path}")
        contents = sub
    release: str | None = None
    for name, tc, _ in repo.load_dirtree(contents).dirs:
        kdir = repo.load_dirtree(tc)
        if any(n == "vmlinuz" for n, _ in kdir.files) or any(n == "vmlinuz" for n, _, _ in kdir.dirs):
            if release is not None:
                raise OstreeError("Multiple kernels found in /usr/lib/modules")
            release = name
    if release is None:
        raise OstreeError("No kernel found in /usr/lib/modules")
    return release


def bootable_metadata(repo: Repo, root_contents: str, root_meta: str, metadata: Metadata) -> Metadata:
    """*metadata* plus ``ostree.bootable``/``ostree.linux``, in the order ostree writes them."""
    del root_meta  # the kernel lookup only needs the contents
    release = find_kernel_release(repo, root_contents)
    md = [*metadata, (KEY_BOOTABLE, gvariant.Variant("b", True)), (KEY_LINUX, gvariant.Variant("s", release))]
    return dict_end(md)
