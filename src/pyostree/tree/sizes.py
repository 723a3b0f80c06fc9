"""``commit --generate-sizes``: the ``ostree.sizes`` commit metadata (``aay``).

Each entry is ``checksum (32 bytes) + varuint64(archived size) +
varuint64(unpacked size) + objtype byte`` for every content, dirtree and
dirmeta object of the committed tree, sorted by hex checksum.  ostree only
generates it in archive repositories (it silently skips it elsewhere).
The archived size of a content object is the size of its ``.filez`` file; its
unpacked size is the file length (the target length for symlinks); metadata
objects have both sizes equal to their length.
"""

from __future__ import annotations

import os

from pyostree.errors import OstreeError
from pyostree.store import gvariant
from pyostree.store.objects import ObjectType, varuint64
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree.commit import MutableTree, _LazyTree

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

Metadata = list[tuple[str, gvariant.Variant]]

KEY_SIZES = "ostree.sizes"
_OBJTYPE_BYTE = {ObjectType.FILE: 1, ObjectType.DIR_TREE: 2, ObjectType.DIR_META: 3}


def size_entry(checksum: str, archived: int, unpacked: int, objtype: ObjectType) -> bytes:
    return bytes.fromhex(checksum) + varuint64(archived) + varuint64(unpacked) + bytes([_OBJTYPE_BYTE[objtype]])


def _stored_size(repo: Repo, objtype: ObjectType, checksum: str) -> int:
    loc = repo._local_stat(checksum, objtype)
    if loc is None:
        if repo.parent is not None:
            return _stored_size(repo.parent, objtype, checksum)
        return 0
    dfd, rel = loc
    return os.stat(rel, dir_fd=dfd, follow_symlinks=False).st_size


def collect_sizes(repo: Repo, mtree: MutableTree) -> dict[str, tuple[int, int, ObjectType]]:
    """checksum -> (archived, unpacked, type) for every object under *mtree*."""
    out: dict[str, tuple[int, int, ObjectType]] = {}

    def meta(objtype: ObjectType, csum: str) -> None:
        if csum not in out:
            n = len(repo.load_metadata(objtype, csum))
            out[csum] = (n, n, objtype)

    def content(csum: str) -> None:
        if csum in out:
            return
        info = repo.load_file(csum).info
        unpacked = len(info.symlink_target.encode("utf-8")) if info.is_symlink else info.size
        out[csum] = (_stored_size(repo, ObjectType.FILE, csum), unpacked, ObjectType.FILE)

    def walk_stored(contents: str, meta_csum: str) -> None:
        meta(ObjectType.DIR_META, meta_csum)
        meta(ObjectType.DIR_TREE, contents)
        tree = repo.load_dirtree(contents)
        for _, fc in tree.files:
            content(fc)
        for _, tc, mc in tree.dirs:
            walk_stored(tc, mc)

    def walk(t: MutableTree) -> None:
        contents = t.write(repo)
        if t.metadata_checksum is not None:
            meta(ObjectType.DIR_META, t.metadata_checksum)
        if isinstance(t, _LazyTree):
            assert t.metadata_checksum is not None
            walk_stored(contents, t.metadata_checksum)
            return
        meta(ObjectType.DIR_TREE, contents)
        for fc in t.files.values():
            content(fc)
        for sub in t.subdirs.values():
            walk(sub)

    walk(mtree)
    return out


class SizeRecorder:
    """Records the content/dirtree/dirmeta objects a commit writes, as libostree does.

    ostree keeps a per-repo table filled by every object write (also of objects
    already stored) and *clears it whenever a new tree walk starts* (each
    ``--tree``); devino cache hits and reused stored dirtrees are not in it.
    Installing a recorder wraps this repo instance's write methods.
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.seen: dict[str, ObjectType] = {}
        orig_content = repo.write_content
        orig_meta = repo.write_metadata

        def write_content(*args: Any, **kwargs: Any) -> str:
            csum = orig_content(*args, **kwargs)
            self.seen.setdefault(csum, ObjectType.FILE)
            return csum

        def write_metadata(objtype: ObjectType, *args: Any, **kwargs: Any) -> str:
            csum = orig_meta(objtype, *args, **kwargs)
            if objtype in (ObjectType.DIR_TREE, ObjectType.DIR_META):
                self.seen.setdefault(csum, objtype)
            return csum

        repo.write_content = write_content  # type: ignore[method-assign]
        repo.write_metadata = write_metadata  # type: ignore[method-assign]

    def clear(self) -> None:
        self.seen.clear()

    def note(self, checksum: str, objtype: ObjectType) -> None:
        self.seen.setdefault(checksum, objtype)

    def sizes(self) -> dict[str, tuple[int, int, ObjectType]]:
        out: dict[str, tuple[int, int, ObjectType]] = {}
        for csum, objtype in self.seen.items():
            if objtype is ObjectType.FILE:
                info = self.repo.load_file(csum).info
                unpacked = len(info.symlink_target.encode("utf-8")) if info.is_symlink else info.size
                out[csum] = (_stored_size(self.repo, objtype, csum), unpacked, objtype)
            else:
                n = len(self.repo.load_metadata(objtype, csum))
                out[csum] = (n, n, objtype)
        return out


def sizes_metadata(repo: Repo, mtree: MutableTree, recorder: SizeRecorder | None = None) -> Metadata:
    """``[("ostree.sizes", <aay>)]`` for an archive repo, ``[]`` otherwise.

    With a *recorder*, the objects it saw being written (ostree's exact set);
    without, every object of *mtree*.
    """
    if repo.mode is not RepoMode.ARCHIVE:
        return []
    sizes = recorder.sizes() if recorder is not None else collect_sizes(repo, mtree)
    if not sizes:
        return []
    entries = [size_entry(c, a, u, t) for c, (a, u, t) in sorted(sizes.items())]
    return [(KEY_SIZES, gvariant.Variant("aay", entries))]


def parse_sizes(value: list[bytes]) -> list[tuple[str, int, int, ObjectType]]:
    """Decode ``ostree.sizes`` entries into (checksum, archived, unpacked, type)."""
    types = {v: k for k, v in _OBJTYPE_BYTE.items()}
    out = []
    for e in value:
        if len(e) < 35:
            raise OstreeError("Invalid ostree.sizes entry: too short")
        pos = 32
        nums = []
        for _ in range(2):
            n = shift = 0
            while True:
                if pos >= len(e):
                    raise OstreeError("Invalid ostree.sizes entry: truncated varint")
                b = e[pos]
                pos += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            nums.append(n)
        if pos != len(e) - 1 or e[pos] not in types:
            raise OstreeError("Invalid ostree.sizes entry: bad object type")
        out.append((e[:32].hex(), nums[0], nums[1], types[e[pos]]))
    return out
