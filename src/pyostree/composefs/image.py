"""A commit as a composefs image, built as ostree 2026.4's ostree-repo-composefs.c feeds libcomposefs.

The image's root is the commit's root directory (mode, owner, xattrs from its dirmeta); every
entry keeps its mode, uid, gid and xattrs, and no mtime (all 0).  A regular file of size > 0
becomes a metacopy stub whose payload is its object's path in a bare repository,
``XX/REST.file`` (redirect ``/XX/REST.file``), with the object's fs-verity digest when verity is
wanted; an empty file is an empty inline file; a symlink keeps its target.  After the tree,
``usr etc boot var sysroot`` are added to the root as 0755 root-owned directories when missing
(mount points for a booted system).  The image is written at format version 0, raised to 1 only
for trees that hold a char 0:0 (never the case for a plain ostree commit).

``ostree.composefs.digest.v0`` in a commit's metadata is the fs-verity digest of the image built
with verity digests for every file (``Verity.YES``).

Beyond ostree: with ``passthrough_whiteouts`` a regular file ``.ostree-wh.NAME`` becomes the char
0:0 whiteout ``NAME`` (mode bits, owner and xattrs of the file), which the writer then escapes as
libcomposefs escapes every char 0:0, and the opaque marker ``.ostree-wh..wh..opq`` sets its
directory's opaque xattrs (escaped in turn); see docs/composefs.md.
"""

from __future__ import annotations

import enum
import os
import stat

from pyostree.composefs import fsverity
from pyostree.composefs.erofs import CfsError, CfsNode, write_image
from pyostree.errors import OstreeError
from pyostree.store.objects import validate_filename, xattr_name
from pyostree.tree import whiteouts as whiteouts_mod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyostree.store.gvariant import Variant
    from pyostree.store.repo import ContentObject, Repo

DIGEST_KEY_V0 = "ostree.composefs.digest.v0"
"""Commit metadata key (type ``ay``): the fs-verity digest of the commit's composefs image."""
PASSTHROUGH_KEY = "pyostree.composefs.process-passthrough-whiteouts"
"""Commit metadata key (type ``b``), pyostree only: the digest was made with passthrough whiteouts."""
ROOT_DIRS = ("usr", "etc", "boot", "var", "sysroot")
WHITEOUT_PREFIX = ".ostree-wh."
OPAQUE_MARKER = WHITEOUT_PREFIX + ".wh..opq"
OPAQUE_XATTRS = (b"trusted.overlay.opaque", b"user.overlay.opaque")


class Verity(enum.Enum):
    """Which fs-verity digests go into metacopy xattrs (ostree's OtTristate)."""

    NO = 0  # none (--composefs-noverity)
    MAYBE = 1  # only digests the kernel already measured on the objects
    YES = 2  # every file's, computed where the kernel has none


def _cname(stored: bytes) -> bytes:
    """An xattr name as libcomposefs gets it from ostree: a C string (up to the first NUL)."""
    return xattr_name(stored).split(b"\0", 1)[0]


def loose_path(checksum: str) -> str:
    """Path of a content object below a bare repository's objects/ directory."""
    return f"{checksum[:2]}/{checksum[2:]}.file"


class _Builder:
    def __init__(self, repo: Repo, verity: Verity, passthrough: bool) -> None:
        self.repo = repo
        self.verity = verity
        self.passthrough = passthrough
        self._digests: dict[str, bytes | None] = {}
        self._objects: dict[str, ContentObject] = {}  # trees repeat content objects

    def _digest(self, checksum: str, co: ContentObject) -> bytes | None:
        if checksum in self._digests:
            return self._digests[checksum]
        digest: bytes | None = None
        if co.repo.mode.is_bare:
            try:
                fd = os.open(co.relpath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=co.repo.dfd)
            except OSError as e:
                raise OstreeError(f"Reading content object {checksum}: {e.strerror}") from None
            try:
                digest = fsverity.measure_fd(fd)
                if digest is None and self.verity is Verity.YES:
                    digest = fsverity.digest_fd(fd, measure=False)
            finally:
                os.close(fd)
        elif self.verity is Verity.YES:
            with co.open() as f:
                digest = fsverity.digest_stream(f)
        self._digests[checksum] = digest
        return digest

    def _load(self, checksum: str) -> ContentObject:
        co = self._objects.get(checksum)
        if co is None:
            co = self._objects[checksum] = self.repo.load_file(checksum)
        return co

    def file_node(self, checksum: str) -> CfsNode:
        co = self._load(checksum)
        info = co.info
        node = CfsNode(info.mode, info.uid, info.gid)
        if info.is_symlink:
            node.payload = info.symlink_target.encode()
            node.size = len(node.payload)
        else:
            node.size = info.size
            if info.size:
                node.payload = loose_path(checksum).encode()
                if self.verity is not Verity.NO:
                    node.digest = self._digest(checksum, co)
        for xname, value in info.xattrs:
            node.xattrs[_cname(xname)] = value
        return node

    def directory(self, contents: str, meta: str, path: str) -> CfsNode:
        dirmeta = self.repo.load_dirmeta(meta)
        node = CfsNode(dirmeta.mode, dirmeta.uid, dirmeta.gid)
        for xname, value in dirmeta.xattrs:
            node.xattrs[_cname(xname)] = value
        tree = self.repo.load_dirtree(contents)
        whiteouts: list[tuple[str, str]] = []
        for name, checksum in tree.files:
            validate_filename(name)
            if self.passthrough and name.startswith(WHITEOUT_PREFIX):
                whiteouts.append((name, checksum))
                continue
            self._add(node, name, self.file_node(checksum), path)
        for name, subtree, submeta in tree.dirs:
            validate_filename(name)
            self._add(node, name, self.directory(subtree, submeta, f"{path}{name}/"), path)
        markers = [(n, c) for n, c in whiteouts if n == OPAQUE_MARKER]
        for name, checksum in markers:
            self._passthrough(node, name, checksum, path)
        # whiteouts in an opaque directory hide nothing; an image can't mark a directory both
        # opaque and holding whiteouts, so they are left out (see docs/composefs.md)
        opaque = any(node.xattrs.get(k) == b"y" for k in OPAQUE_XATTRS)
        for name, checksum in whiteouts:
            if name == OPAQUE_MARKER:
                continue
            if opaque and not self._load(checksum).info.is_symlink:
                whiteouts_mod.passthrough_target(name, path + name)  # still validated
                continue
            self._passthrough(node, name, checksum, path)
        return node

    def _passthrough(self, node: CfsNode, name: str, checksum: str, path: str) -> None:
        from pyostree.tree import quoting

        co = self._load(checksum)
        info = co.info
        if info.is_symlink:  # as the hardlink checkout: only non-symlinks are markers
            self._add(node, name, self.file_node(checksum), path)
            return
        if name == OPAQUE_MARKER:
            for key, value in quoting.parse_opaque_marker(co.read(), path + name):
                node.xattrs[key.encode()] = value
            return
        target = whiteouts_mod.passthrough_target(name, path + name)
        wh = CfsNode(stat.S_IFCHR | stat.S_IMODE(info.mode), info.uid, info.gid)
        for xname, xvalue in info.xattrs:
            wh.xattrs[_cname(xname)] = xvalue
        self._add(node, target, wh, path)

    @staticmethod
    def _add(parent: CfsNode, name: str, child: CfsNode, path: str) -> None:
        if name.encode() in parent.children:
            raise OstreeError(f"Checking out composefs: {path}{name}: File exists")
        try:
            parent.add_child(name.encode(), child)
        except CfsError as e:
            raise OstreeError(f"Checking out composefs: {path}{name}: {e}") from None


def build_tree(repo: Repo, root_contents: str, root_meta: str, *, verity: Verity = Verity.YES,
               passthrough_whiteouts: bool = False) -> CfsNode:
    """The composefs tree of a commit's root (dirtree/dirmeta checksums)."""
    builder = _Builder(repo, verity, passthrough_whiteouts)
    root = builder.directory(root_contents, root_meta, "/")
    for name in ROOT_DIRS:
        if name.encode() not in root.children:
            root.add_child(name.encode(), CfsNode(stat.S_IFDIR | 0o755))
    return root


def commit_tree(repo: Repo, checksum: str, *, verity: Verity = Verity.YES,
                passthrough_whiteouts: bool = False) -> CfsNode:
    commit = repo.load_commit(checksum)
    return build_tree(repo, commit.root_contents, commit.root_meta, verity=verity,
                      passthrough_whiteouts=passthrough_whiteouts)


def tree_digest(repo: Repo, root_contents: str, root_meta: str, *,
                passthrough_whiteouts: bool = False) -> bytes:
    """``ostree.composefs.digest.v0`` of a tree: the image's fs-verity digest, verity on."""
    root = build_tree(repo, root_contents, root_meta, verity=Verity.YES,
                      passthrough_whiteouts=passthrough_whiteouts)
    try:
        digest = write_image(root, None, want_digest=True)
    except CfsError as e:
        raise OstreeError(f"Writing composefs: {e}") from None
    assert digest is not None
    return digest


def commit_digest_metadata(repo: Repo, checksum: str) -> tuple[bytes | None, bool]:
    """(expected digest or None, made with passthrough whiteouts) from a commit's metadata."""
    commit = repo.load_commit(checksum)
    expected: bytes | None = None
    passthrough = False
    for key, value in commit.metadata:
        if key == DIGEST_KEY_V0 and value.type == "ay":  # another type: ignored, as ostree does
            expected = bytes(value.value)
            if len(expected) != fsverity.DIGEST_SIZE:
                raise OstreeError("Expected composefs fs-verity in metadata has the wrong size")
        elif key == PASSTHROUGH_KEY:
            passthrough = bool(value.value)
    return expected, passthrough


def composefs_metadata(repo: Repo, root_contents: str, root_meta: str, metadata: list[tuple[str, Variant]],
                       *, passthrough_whiteouts: bool = False) -> list[tuple[str, Variant]]:
    """*metadata* plus ``ostree.composefs.digest.v0``, in the order ostree's GVariantDict writes it.

    With *passthrough_whiteouts* the digest is that of the image with passthrough whiteouts, and
    ``pyostree.composefs.process-passthrough-whiteouts=true`` records it.
    """
    from pyostree.store.gvariant import Variant
    from pyostree.tree.bootable import dict_end

    digest = tree_digest(repo, root_contents, root_meta, passthrough_whiteouts=passthrough_whiteouts)
    md = [*metadata, (DIGEST_KEY_V0, Variant("ay", digest))]
    if passthrough_whiteouts:
        md.append((PASSTHROUGH_KEY, Variant("b", True)))
    return dict_end(md)
