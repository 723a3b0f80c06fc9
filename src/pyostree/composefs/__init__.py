"""composefs: EROFS metadata images of commits, fs-verity digests, composefs mounts.

A composefs image (written as libcomposefs's ``mkcomposefs`` and ostree 2026.4 write it, byte for
byte) holds a commit's whole tree as EROFS metadata; each regular file is an overlayfs
``metacopy`` stub whose ``redirect`` points at its object in the repository, which overlayfs
reads as a data-only lower layer.  The image's fs-verity digest, stored in the commit as
``ostree.composefs.digest.v0``, seals the tree.

Layer rank: like ``remote`` and ``oci``; it imports ``tree`` and ``store`` only.
See docs/composefs.md.
"""

from __future__ import annotations
