"""Importing an image (layer commits + a flattened image commit) and checking its layers out.

Refs and metadata (see docs/container.md):

* each layer is the commit ``ostree/container/layer/sha256_<HEX>`` named by its
  diff_id (the digest of the *uncompressed* tar, so the same layer compressed
  differently is stored once);  an existing ref is reused without reading the blob;
* the image REF is a commit of the flattened rootfs, whose metadata has
  ``pyostree.container.layers`` (layer commit checksums, bottom first),
  ``pyostree.container.diff-ids``, ``pyostree.container.manifest`` (JSON text),
  ``pyostree.container.manifest-digest`` and ``pyostree.container.config`` (JSON text).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
import stat
from dataclasses import dataclass, field
from datetime import datetime

from pyostree.errors import OstreeError
from pyostree.oci.layer import import_layer_stream
from pyostree.oci.source import ImageSource, open_image
from pyostree.store import gvariant, refs
from pyostree.store import objects as obj
from pyostree.store.objects import Commit, FileInfo
from pyostree.store.repo import Repo
from pyostree.tree.commit import Metadata, MutableTree, write_commit
from pyostree.tree.quoting import (
    OPAQUE_XATTRS,
    make_whiteout_at,
    quoted_kind,
    restore_opaque_at,
    restore_special_at,
)

LAYER_REF_PREFIX = "ostree/container/layer/"
MD_LAYERS = "pyostree.container.layers"
MD_DIFF_IDS = "pyostree.container.diff-ids"
MD_MANIFEST = "pyostree.container.manifest"
MD_MANIFEST_DIGEST = "pyostree.container.manifest-digest"
MD_CONFIG = "pyostree.container.config"
MD_DIFF_ID = "pyostree.container.diff-id"
MD_BLOB_DIGEST = "pyostree.container.blob-digest"
MD_IMPLICIT = "pyostree.container.implicit-dirs"
MAX_DEPTH = 256  # OSTREE_MAX_RECURSION

__all__ = ["ImportResult", "checkout_layers", "flatten_layers", "import_image", "layer_ref",
           "mount_overlay", "overlay_mount_command"]


def layer_ref(diff_id: str) -> str:
    alg, _, hexd = diff_id.partition(":")
    return f"{LAYER_REF_PREFIX}{alg}_{hexd}"


@dataclass
class ImportResult:
    commit: str
    layer_commits: list[str] = field(default_factory=list)
    layers_imported: int = 0
    layers_reused: int = 0


def _created_timestamp(config: dict[str, object]) -> int:
    created = config.get("created")
    if isinstance(created, str):
        try:
            return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return 0


def _strs(c: Commit, key: str) -> list[str]:
    v = c.get_metadata(key)
    if v is None:
        return []
    val = v.value if isinstance(v, gvariant.Variant) else v
    return [str(x) for x in val] if isinstance(val, (list, tuple)) else []


def import_image(repo: Repo, source: str | ImageSource, ref: str, *, special: bool = False) -> ImportResult:
    """``container import``: store every layer (once) and the flattened image as *ref*."""
    refs.validate_rev(ref)
    src = open_image(source) if isinstance(source, str) else source
    result = ImportResult("")
    try:
        for i, (desc, diff_id) in enumerate(zip(src.layers, src.diff_ids, strict=True)):
            lref = layer_ref(diff_id)
            existing = refs.resolve_rev(repo, lref, allow_noent=True)
            if existing is not None and repo.has_object(obj.ObjectType.COMMIT, existing):
                result.layer_commits.append(existing)
                result.layers_reused += 1
                continue
            what = f"layer {i} ({desc.digest or desc.path})"
            with repo.transaction():
                raw = src.open_blob(desc, what)
                try:
                    lr = import_layer_stream(repo, raw, diff_id, special=special, where=what)
                finally:
                    raw.close()
                contents = lr.root.write(repo)
                assert lr.root.metadata_checksum is not None
                md: Metadata = [
                    (MD_BLOB_DIGEST, gvariant.Variant("s", lr.blob_digest)),
                    (MD_DIFF_ID, gvariant.Variant("s", diff_id)),
                    (MD_IMPLICIT, gvariant.Variant("as", lr.implicit_dirs)),
                ]
                csum = write_commit(repo, parent=None, subject=f"Layer {diff_id}", body="",
                                    metadata=md, root_contents=contents,
                                    root_meta=lr.root.metadata_checksum, timestamp=0)
                refs.set_ref(repo, None, lref, csum)
            result.layer_commits.append(csum)
            result.layers_imported += 1
        with repo.transaction():
            contents, meta = flatten_layers(repo, result.layer_commits)
            md = [
                (MD_CONFIG, gvariant.Variant("s", src.config_bytes.decode("utf-8", "replace"))),
                (MD_DIFF_IDS, gvariant.Variant("as", list(src.diff_ids))),
                (MD_LAYERS, gvariant.Variant("as", result.layer_commits)),
                (MD_MANIFEST, gvariant.Variant("s", src.manifest_bytes.decode("utf-8", "replace"))),
                (MD_MANIFEST_DIGEST, gvariant.Variant("s", src.manifest_digest)),
            ]
            result.commit = write_commit(repo, parent=None, subject=f"Image {src.manifest_digest}",
                                         body="", metadata=md, root_contents=contents, root_meta=meta,
                                         timestamp=_created_timestamp(src.config))
            refs.set_ref(repo, None, ref, result.commit)
    finally:
        if isinstance(source, str):
            src.close()
    return result


# ---------------------------------------------------------------------------
# flattening


def _clear(t: MutableTree) -> None:
    for n in list(t.files) + list(t.subdirs):
        t.remove(n)


_OPAQUE_NAMES = {n.encode() + b"\0" for n in OPAQUE_XATTRS}


def _apply_layer(repo: Repo, merged: MutableTree, contents: str, meta: str, path: str,
                 implicit: set[str]) -> None:
    if path.count("/") > MAX_DEPTH:
        raise OstreeError(f"Exceeded maximum recursion depth of {MAX_DEPTH} at {path}")
    dm = repo.load_dirmeta(meta)
    is_opaque = any(x[0] in _OPAQUE_NAMES for x in dm.xattrs)
    if is_opaque:  # the flattened rootfs has no use for overlayfs xattrs
        meta = repo.write_dirmeta(obj.DirMeta(dm.uid, dm.gid, dm.mode,
                                              [x for x in dm.xattrs if x[0] not in _OPAQUE_NAMES]))
    if path not in implicit or merged.metadata_checksum is None:
        merged.metadata_checksum = meta
    tree = repo.load_dirtree(contents)
    quoted = {n: quoted_kind(n) for n, _ in tree.files}
    if is_opaque or any(k is not None and k[0] == "opaque" for k in quoted.values()):
        _clear(merged)
    for name, csum in tree.files:
        k = quoted[name]
        if k is not None and k[0] == "opaque":
            continue
        if k is not None and k[0] == "whiteout":
            merged.remove(k[1], allow_noent=True)
            continue
        if name in merged.subdirs:
            merged.remove(name)
        merged.replace_file(name, csum)
    prefix = path if path.endswith("/") else path + "/"
    for name, tc, mc in tree.dirs:
        if name in merged.files:
            merged.remove(name)
        _apply_layer(repo, merged.ensure_dir(name), tc, mc, prefix + name, implicit)


def flatten_layers(repo: Repo, layer_commits: list[str]) -> tuple[str, str]:
    """Apply the layer commits bottom-up (whiteouts, opaque dirs); returns (contents, meta)."""
    merged = MutableTree()
    for csum in layer_commits:
        c = repo.load_commit(csum)
        _apply_layer(repo, merged, c.root_contents, c.root_meta, "/", set(_strs(c, MD_IMPLICIT)))
    if merged.metadata_checksum is None:
        merged.metadata_checksum = repo.write_dirmeta(obj.DirMeta(0, 0, 0o40755, []))
    return merged.write(repo), merged.metadata_checksum


# ---------------------------------------------------------------------------
# layer checkout


def _set_meta(dfd: int, name: str | None, info: FileInfo, set_owner: bool, is_link: bool = False) -> None:
    target: str | int = dfd if name is None else f"/proc/self/fd/{dfd}/{name}"
    try:
        if set_owner:
            if name is None:
                os.fchown(dfd, info.uid, info.gid)
            else:
                os.chown(name, info.uid, info.gid, dir_fd=dfd, follow_symlinks=False)
        if not is_link:
            if name is None:
                os.fchmod(dfd, stat.S_IMODE(info.mode))
            else:
                os.chmod(name, stat.S_IMODE(info.mode), dir_fd=dfd)
        for xname, value in info.xattrs:
            n = obj.xattr_name(xname).decode("utf-8", "surrogateescape")
            if isinstance(target, int):
                os.setxattr(target, n, value)
            else:
                os.setxattr(target, n, value, follow_symlinks=False)
    except OSError as e:
        raise OstreeError(f"Setting metadata of {name or '.'}: {e.strerror}", errno=e.errno) from None
    except ValueError:  # a NUL inside an xattr name
        raise OstreeError(f"Setting metadata of {name or '.'}: invalid xattr name (NUL byte)") from None


def _user_overlay(xattrs: obj.Xattrs) -> obj.Xattrs:
    """``trusted.overlay.*`` -> ``user.overlay.*`` (overlayfs ``userxattr`` mounts)."""
    pre = b"trusted.overlay."
    return obj.normalize_xattrs((b"user.overlay." + n[len(pre):] if n.startswith(pre) else n, v)
                                for n, v in xattrs)


def _checkout_dir(repo: Repo, contents: str, meta: str, dfd: int, set_owner: bool,
                  userxattr: bool = False, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise OstreeError(f"Exceeded maximum recursion depth of {MAX_DEPTH}")
    tree = repo.load_dirtree(contents)
    opaque: bytes | None = None
    for name, csum in tree.files:
        obj.validate_filename(name)
        co = repo.load_file(csum)
        info = co.info
        k = quoted_kind(name) if not info.is_symlink else None
        if k is not None and k[0] == "opaque":
            opaque = co.read()
            continue
        if k is not None and k[0] == "whiteout":
            make_whiteout_at(dfd, k[1], info, set_owner=set_owner)
            continue
        if k is not None and k[0] == "special":
            restore_special_at(dfd, k[1], info, co.read(), set_owner=set_owner)
            continue
        if info.is_symlink:
            os.symlink(info.symlink_target, name, dir_fd=dfd)
            _set_meta(dfd, name, info, set_owner, is_link=True)
            continue
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600,
                     dir_fd=dfd)
        try:
            with co.open() as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        _set_meta(dfd, name, info, set_owner)
    for name, tc, mc in tree.dirs:
        obj.validate_filename(name)
        os.mkdir(name, 0o700, dir_fd=dfd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            _checkout_dir(repo, tc, mc, sub, set_owner, userxattr, depth + 1)
        finally:
            os.close(sub)
    dm = repo.load_dirmeta(meta)
    xattrs = _user_overlay(dm.xattrs) if userxattr else dm.xattrs
    _set_meta(dfd, None, FileInfo(dm.mode, dm.uid, dm.gid, 0, "", xattrs), set_owner)
    if opaque is not None:
        restore_opaque_at(dfd, opaque, userxattr=userxattr)


def checkout_tree(repo: Repo, rev: str, dest: str, *, userxattr: bool = False) -> None:
    """Write commit *rev* to the new directory *dest*, unquoting whiteouts, opaque dirs, nodes.

    With *userxattr*, overlayfs xattrs are written as ``user.overlay.*``.
    """
    csum = refs.resolve_rev(repo, rev)
    assert csum is not None
    c = repo.load_commit(csum)
    try:
        os.mkdir(dest, 0o700)
    except OSError as e:
        raise OstreeError(f"mkdir {dest}: {e.strerror}", errno=e.errno) from None
    dfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _checkout_dir(repo, c.root_contents, c.root_meta, dfd, os.geteuid() == 0, userxattr)
    finally:
        os.close(dfd)


def _escape_lower(p: str) -> str:
    return p.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lowers_top_first: list[str], userxattr: bool = False) -> str:
    return ("ro,userxattr," if userxattr else "ro,") + "lowerdir=" + \
        ":".join(_escape_lower(p) for p in lowers_top_first)


def overlay_mount_command(lowers_top_first: list[str], target: str, userxattr: bool = False) -> str:
    return shlex.join(["mount", "-t", "overlay", "overlay", "-o",
                       overlay_options(lowers_top_first, userxattr), target])


def mount_overlay(lowers_top_first: list[str], target: str, userxattr: bool = False) -> None:
    """Mount the read-only overlay of *lowers_top_first* at *target* (mount(2), no subprocess)."""
    opts = overlay_options(lowers_top_first, userxattr)
    if len(opts) >= 4096:
        raise OstreeError(f"overlay mount options too long ({len(opts)} bytes); use shorter paths")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    ms_rdonly = 1
    if libc.mount(b"overlay", os.fsencode(target), b"overlay", ctypes.c_ulong(ms_rdonly),
                  opts.encode()) != 0:
        e = ctypes.get_errno()
        raise OstreeError(f"mount overlay at {target}: {os.strerror(e)}", errno=e)


@dataclass
class LayersCheckout:
    layers: list[str]  # bottom first
    merged: str
    lowers_top_first: list[str]
    mounted: bool = False
    userxattr: bool = False

    @property
    def mount_command(self) -> str:
        return overlay_mount_command(self.lowers_top_first, self.merged, self.userxattr)


def checkout_layers(repo: Repo, ref: str, dest: str, *, mount: bool = False,
                    userxattr: bool = False) -> LayersCheckout:
    """``container checkout``: DEST/layers/0..N-1 (bottom first), DEST/merged; mount if asked."""
    csum = refs.resolve_rev(repo, ref)
    assert csum is not None
    c = repo.load_commit(csum)
    layers = _strs(c, MD_LAYERS)
    if c.get_metadata(MD_LAYERS) is None:
        raise OstreeError(f"Commit {csum} ({ref}) is not a container image (no {MD_LAYERS})")
    for lc in layers:
        obj.validate_checksum(lc)
    try:
        os.makedirs(dest, exist_ok=True)
        if os.listdir(dest):
            raise OstreeError(f"{dest}: destination exists and is not empty")
        os.mkdir(os.path.join(dest, "layers"), 0o755)
        os.mkdir(os.path.join(dest, "merged"), 0o755)
    except OSError as e:
        raise OstreeError(f"Creating {dest}: {e.strerror}", errno=e.errno) from None
    paths = []
    for i, lc in enumerate(layers):
        p = os.path.join(os.path.abspath(dest), "layers", str(i))
        checkout_tree(repo, lc, p, userxattr=userxattr)
        paths.append(p)
    lowers = list(reversed(paths))
    if len(lowers) < 2:  # a read-only overlay needs two lower dirs
        empty = os.path.join(os.path.abspath(dest), "layers", "empty")
        os.mkdir(empty, 0o755)
        lowers.append(empty)
    res = LayersCheckout(paths, os.path.join(os.path.abspath(dest), "merged"), lowers, userxattr=userxattr)
    if mount:
        mount_overlay(lowers, res.merged, userxattr)
        res.mounted = True
    return res


