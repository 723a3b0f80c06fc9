"""Trees in and out of the store: commit, checkout, whiteouts and quoting, tar import, export, diff.

``commit`` turns a directory (or tar stream, via ``tarimport``) into objects and a commit;
``checkout`` writes a commit's tree back to disk, including overlayfs whiteouts (``whiteouts``)
and the quoting of special files (``quoting``); ``export``, ``diff``, ``treewalk`` and ``sizes``
read commits; ``bootable`` finds a tree's kernel and initramfs.

Layering: ``tree`` imports ``pyostree.store`` and ``pyostree.errors``, never ``remote``, ``oci``,
``sysroot`` or ``cli``.
"""
