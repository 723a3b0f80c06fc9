"""The image lifecycle: list, remove, prune-layers, check for a newer manifest.

An image is any local ref whose commit carries ``pyostree.container.layers``;
``container import`` without a REF puts it under ``ostree/container/image/``.
Layers are the commits under ``ostree/container/layer/``: ``prune-layers``
deletes the layer refs no image uses, then the objects nothing reaches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyostree.errors import OstreeError
from pyostree.oci.image import (
    LAYER_REF_PREFIX,
    MD_LAYERS,
    MD_MANIFEST,
    MD_MANIFEST_DIGEST,
    recorded_source,
    str_metadata,
    strs_metadata,
)
from pyostree.oci.source import Platform
from pyostree.store import refs
from pyostree.store.objects import Commit
from pyostree.store.repo import Repo

__all__ = ["ImageInfo", "check_update", "list_images", "prune_layers", "remove_images"]


@dataclass
class ImageInfo:
    ref: str
    commit: str
    source: str | None
    digest: str
    timestamp: int
    size: int | None  # the manifest's layer blob sizes, summed
    layers: list[str]


def _info(repo: Repo, ref: str, csum: str, c: Commit) -> ImageInfo:
    size: int | None = None
    manifest = str_metadata(c, MD_MANIFEST)
    try:
        m = json.loads(manifest) if manifest else None
        if isinstance(m, dict) and isinstance(m.get("layers"), list):
            sizes = [d.get("size") for d in m["layers"] if isinstance(d, dict)]
            if sizes and all(isinstance(s, int) for s in sizes):
                size = sum(s for s in sizes if isinstance(s, int))
    except ValueError:
        pass
    source, sdigest = recorded_source(repo, csum)
    digest = sdigest or str_metadata(c, MD_MANIFEST_DIGEST) or ""
    return ImageInfo(ref, csum, source, digest, c.timestamp, size,
                     strs_metadata(c, MD_LAYERS))


def list_images(repo: Repo) -> list[ImageInfo]:
    out = []
    for ref, csum in sorted(refs.list_refs(repo, remotes=False).items()):
        if ref.startswith(LAYER_REF_PREFIX):
            continue
        try:
            c = repo.load_commit(csum)
        except OstreeError:
            continue
        if c.get_metadata(MD_LAYERS) is not None:
            out.append(_info(repo, ref, csum, c))
    return out


def image_info(repo: Repo, ref: str) -> ImageInfo:
    csum = refs.resolve_rev(repo, ref)
    assert csum is not None
    c = repo.load_commit(csum)
    if c.get_metadata(MD_LAYERS) is None:
        raise OstreeError(f"{ref} is not a container image (no {MD_LAYERS})")
    return _info(repo, ref, csum, c)


def remove_images(repo: Repo, names: list[str]) -> list[str]:
    """Delete the image refs *names* (all checked first); the layers stay until ``prune-layers``."""
    local = refs.list_refs(repo, remotes=False)
    for name in names:
        if name not in local:
            raise OstreeError(f"No image ref '{name}'")
        c = repo.load_commit(local[name])
        if c.get_metadata(MD_LAYERS) is None:
            raise OstreeError(f"{name} is not a container image (no {MD_LAYERS})")
    for name in names:
        refs.set_ref(repo, None, name, None)
    return names


@dataclass
class PruneLayersResult:
    layers_removed: int
    objects_pruned: int
    freed_bytes: int


def prune_layers(repo: Repo, *, dry_run: bool = False) -> PruneLayersResult:
    """Delete layer refs no image uses, then every object no ref reaches."""
    from pyostree.store.prune import PruneOptions, prune

    used: set[str] = set()
    for img in list_images(repo):
        used.update(img.layers)
    removed = 0
    for ref, csum in refs.list_refs(repo, LAYER_REF_PREFIX.rstrip("/"), remotes=False).items():
        if csum not in used:
            removed += 1
            if not dry_run:
                refs.set_ref(repo, None, ref, None)
    r = prune(repo, PruneOptions(refs_only=True, no_prune=dry_run))
    return PruneLayersResult(removed, r.pruned, r.freed_bytes)


@dataclass
class CheckResult:
    ref: str
    source: str
    current: str
    latest: str

    @property
    def newer(self) -> bool:
        return self.current != self.latest


def source_digest(source: str, platform: Platform | None = None) -> str:
    """The digest of *source*'s image manifest now (registries: without fetching layers)."""
    from pyostree.oci.skopeo import inspect_source, is_native

    if is_native(source):
        from pyostree.oci.source import open_image

        with open_image(source, platform=platform) as src:
            return src.manifest_digest
    return inspect_source(source, platform).digest


def check_update(repo: Repo, ref: str, platform: Platform | None = None) -> CheckResult:
    info = image_info(repo, ref)
    if info.source is None:
        raise OstreeError(f"{ref} records no source reference; import it again from its source")
    return CheckResult(ref, info.source, info.digest, source_digest(info.source, platform))
