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

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime

from pyostree.errors import OstreeError
from pyostree.oci.layer import import_layer_stream
from pyostree.oci.progress import Progress
from pyostree.oci.source import ImageSource, Platform
from pyostree.store import gvariant, refs
from pyostree.store import objects as obj
from pyostree.store.objects import Commit
from pyostree.store.repo import Repo
from pyostree.tree.commit import Metadata, MutableTree, write_commit
from pyostree.tree.quoting import OPAQUE_XATTRS, quoted_kind

LAYER_REF_PREFIX = "ostree/container/layer/"
IMAGE_REF_PREFIX = "ostree/container/image/"
MD_LAYERS = "pyostree.container.layers"
MD_DIFF_IDS = "pyostree.container.diff-ids"
MD_MANIFEST = "pyostree.container.manifest"
MD_MANIFEST_DIGEST = "pyostree.container.manifest-digest"
MD_CONFIG = "pyostree.container.config"
MD_DIFF_ID = "pyostree.container.diff-id"
MD_BLOB_DIGEST = "pyostree.container.blob-digest"
MD_IMPLICIT = "pyostree.container.implicit-dirs"
MD_SOURCE = "pyostree.container.source"
MD_SOURCE_DIGEST = "pyostree.container.source-digest"
MAX_DEPTH = 256  # OSTREE_MAX_RECURSION

__all__ = ["IMAGE_REF_PREFIX", "LAYER_REF_PREFIX", "ImportResult", "flatten_layers", "image_ref",
           "import_image", "layer_ref", "str_metadata", "strs_metadata"]


def layer_ref(diff_id: str) -> str:
    alg, _, hexd = diff_id.partition(":")
    return f"{LAYER_REF_PREFIX}{alg}_{hexd}"


@dataclass
class ImportResult:
    commit: str
    layer_commits: list[str] = field(default_factory=list)
    layers_imported: int = 0
    layers_reused: int = 0
    up_to_date: bool = False


def _created_timestamp(config: dict[str, object]) -> int:
    created = config.get("created")
    if isinstance(created, str):
        try:
            return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return 0


def strs_metadata(c: Commit, key: str) -> list[str]:
    v = c.get_metadata(key)
    if v is None:
        return []
    val = v.value if isinstance(v, gvariant.Variant) else v
    return [str(x) for x in val] if isinstance(val, (list, tuple)) else []


def str_metadata(c: Commit, key: str) -> str | None:
    v = c.get_metadata(key)
    val = v.value if isinstance(v, gvariant.Variant) else v
    return val if isinstance(val, str) else None


def image_ref(source: str) -> str:
    """The default ref of an image imported from *source*: ``ostree/container/image/<escaped>``.

    Bytes other than ASCII letters, digits, ``-`` and ``.`` are written ``_XX`` (hex),
    and ``.`` too where it would start a ref component.
    """
    out = []
    for i, ch in enumerate(source.encode("utf-8")):
        c = chr(ch)
        if c.isascii() and (c.isalnum() or c == "-" or (c == "." and i > 0)):
            out.append(c)
        else:
            out.append(f"_{ch:02x}")
    return IMAGE_REF_PREFIX + "".join(out)


def _write_layer(repo: Repo, src: ImageSource, i: int, diff_id: str, *, special: bool,
                 progress: Progress | None) -> str:
    desc = src.layers[i]
    what = f"layer {i} ({desc.digest or desc.path})"
    with repo.transaction():
        raw = src.open_blob(desc, what)
        try:
            cb = None
            if progress is not None:
                cb = progress.layer(i, len(src.layers), desc.size, raw)
            lr = import_layer_stream(repo, raw, diff_id, special=special, where=what, progress=cb)
        finally:
            raw.close()
            if progress is not None:
                progress.done()
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
        refs.set_ref(repo, None, layer_ref(diff_id), csum)
    return csum


def _existing_layer(repo: Repo, diff_id: str) -> str | None:
    existing = refs.resolve_rev(repo, layer_ref(diff_id), allow_noent=True)
    if existing is not None and repo.has_object(obj.ObjectType.COMMIT, existing):
        return existing
    return None


def _up_to_date(repo: Repo, ref: str, source: str, digest: str) -> ImportResult | None:
    """The existing import of *ref* if it is *source* at *digest* with every layer present."""
    csum = refs.resolve_rev(repo, ref, allow_noent=True)
    if csum is None or not repo.has_object(obj.ObjectType.COMMIT, csum):
        return None
    c = repo.load_commit(csum)
    if recorded_source(repo, csum) != (source, digest):
        return None
    layers = strs_metadata(c, MD_LAYERS)
    if not all(repo.has_object(obj.ObjectType.COMMIT, lc) for lc in layers):
        return None
    return ImportResult(csum, layers, 0, len(layers), up_to_date=True)


def import_image(repo: Repo, source: str | ImageSource, ref: str | None = None, *, special: bool = False,
                 platform: str | Platform | None = None, quiet: bool = True) -> ImportResult:
    """``container import``: store every layer (once) and the flattened image as *ref*.

    *source* is any image reference skopeo knows (see :mod:`pyostree.oci.skopeo`);
    *ref* defaults to :func:`image_ref` of it.  A refused import writes no image
    ref and removes the layer refs it wrote (their objects are left for
    ``prune-layers``/``prune``); nothing is written outside the repository.
    """
    if ref is None:
        if not isinstance(source, str):
            raise OstreeError("An image ref is needed when importing from an opened source")
        ref = image_ref(source)
    refs.validate_rev(ref)
    plat = Platform.parse(platform) if isinstance(platform, str) else platform
    source_digest: str | None = None
    if isinstance(source, str):
        from pyostree.oci.skopeo import inspect_source, is_native, open_any

        info = None
        if not is_native(source):
            info = inspect_source(source, plat)
            same = _up_to_date(repo, ref, source, info.digest)
            if same is not None:
                return same
        src, source_digest = open_any(source, os.path.join(repo.path, "tmp"), platform=plat, quiet=quiet,
                                      info=info, have=lambda d: _existing_layer(repo, d) is not None)
    else:
        src = source
    progress = Progress() if not quiet and sys.stderr.isatty() else None
    result = ImportResult("")
    written: list[str] = []
    try:
        for i, diff_id in enumerate(src.diff_ids):
            existing = _existing_layer(repo, diff_id)
            if existing is not None:
                result.layer_commits.append(existing)
                result.layers_reused += 1
                continue
            csum = _write_layer(repo, src, i, diff_id, special=special, progress=progress)
            written.append(layer_ref(diff_id))
            result.layer_commits.append(csum)
            result.layers_imported += 1
        result.commit = _write_image(repo, src, ref, result.layer_commits,
                                     source if isinstance(source, str) else None, source_digest)
    except BaseException:
        for lref in written:  # no image uses them: drop the refs, prune-layers/prune drop the objects
            try:
                refs.set_ref(repo, None, lref, None)
            except OstreeError:
                pass
        raise
    finally:
        if isinstance(source, str):
            src.close()
    return result


def _write_image(repo: Repo, src: ImageSource, ref: str, layer_commits: list[str],
                 source: str | None, source_digest: str | None) -> str:
    with repo.transaction():
        contents, meta = flatten_layers(repo, layer_commits)
        md: Metadata = [
            (MD_CONFIG, gvariant.Variant("s", src.config_bytes.decode("utf-8", "replace"))),
            (MD_DIFF_IDS, gvariant.Variant("as", list(src.diff_ids))),
            (MD_LAYERS, gvariant.Variant("as", layer_commits)),
            (MD_MANIFEST, gvariant.Variant("s", src.manifest_bytes.decode("utf-8", "replace"))),
            (MD_MANIFEST_DIGEST, gvariant.Variant("s", src.manifest_digest)),
        ]
        commit = write_commit(repo, parent=None, subject=f"Image {src.manifest_digest}",
                              body="", metadata=md, root_contents=contents, root_meta=meta,
                              timestamp=_created_timestamp(src.config))
        record_source(repo, commit, source, source_digest or src.manifest_digest)
        refs.set_ref(repo, None, ref, commit)
    return commit


def record_source(repo: Repo, commit: str, source: str | None, digest: str) -> None:
    """Where the image came from, in the commit's detached metadata (not part of its checksum).

    The same image imported from two places is one commit: the last import's source is kept.
    """
    old = [kv for kv in (repo.load_detached_metadata(commit) or [])
           if kv[0] not in (MD_SOURCE, MD_SOURCE_DIGEST)]
    new = [(MD_SOURCE_DIGEST, gvariant.Variant("s", digest))]
    if source is not None:
        new.append((MD_SOURCE, gvariant.Variant("s", source)))
    repo.write_detached_metadata(commit, sorted(old + new, key=lambda kv: kv[0]))


def recorded_source(repo: Repo, commit: str) -> tuple[str | None, str | None]:
    """(source reference, source manifest digest) recorded by :func:`record_source`."""
    source = digest = None
    for k, v in repo.load_detached_metadata(commit) or []:
        val = v.value if isinstance(v, gvariant.Variant) else v
        if k == MD_SOURCE and isinstance(val, str):
            source = val
        elif k == MD_SOURCE_DIGEST and isinstance(val, str):
            digest = val
    return source, digest


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
        _apply_layer(repo, merged, c.root_contents, c.root_meta, "/", set(strs_metadata(c, MD_IMPLICIT)))
    if merged.metadata_checksum is None:
        merged.metadata_checksum = repo.write_dirmeta(obj.DirMeta(0, 0, 0o40755, []))
    return merged.write(repo), merged.metadata_checksum


