"""Container images: OCI/docker image import into ostree commits, layer checkout, overlay mount.

See docs/container.md for the formats (quoting, refs, metadata keys).
"""

from __future__ import annotations

from pyostree.oci.checkout import (
    LayersCheckout,
    checkout_layers,
    checkout_tree,
    mount_overlay,
    overlay_mount_command,
)
from pyostree.oci.image import (
    IMAGE_REF_PREFIX,
    LAYER_REF_PREFIX,
    ImportResult,
    flatten_layers,
    image_ref,
    import_image,
    layer_ref,
)
from pyostree.oci.source import Descriptor, ImageSource, Platform, open_image

__all__ = [
    "IMAGE_REF_PREFIX", "LAYER_REF_PREFIX", "Descriptor", "ImageSource", "ImportResult", "LayersCheckout",
    "Platform", "checkout_layers", "checkout_tree", "flatten_layers", "image_ref", "import_image",
    "layer_ref", "mount_overlay", "open_image", "overlay_mount_command",
]
