"""The repository core: bytes on disk, as libostree lays them out.

The GVariant codec (``gvariant``), the object formats and checksums (``objects``), the repository
itself (``repo``: config, modes, loose objects, transactions, locking), refs (``refs``, ``reflist``),
integrity and clean-up (``fsck``, ``prune``), and the keyfile, time and dump helpers they share.

Layering: ``store`` imports nothing of pyostree but ``pyostree.errors`` and itself.  Everything
else (``tree``, ``remote``, ``oci``, ``sysroot``, ``cli``) builds on it.
"""
