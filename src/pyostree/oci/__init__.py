"""Container images: OCI/docker image import into ostree commits, layer checkout, overlay mount.

See docs/container.md for the formats (quoting, refs, metadata keys).
"""

from __future__ import annotations

from pyostree.oci.image import (
    LAYER_REF_PREFIX,
    ImportResult,
    LayersCheckout,
    checkout_layers,
    checkout_tree,
    flatten_layers,
    import_image,
    layer_ref,
    mount_overlay,
    overlay_mount_command,
)
from pyostree.oci.source import Descriptor, ImageSource, open_image

__all__ = [
    "LAYER_REF_PREFIX", "Descriptor", "ImageSource", "ImportResult", "LayersCheckout",
    "checkout_layers", "checkout_tree", "flatten_layers", "import_image", "layer_ref",
    "mount_overlay", "open_image", "overlay_mount_command",
]
