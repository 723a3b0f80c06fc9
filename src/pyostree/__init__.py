"""pyostree: OSTree in Python, on disk byte-compatible with libostree."""

__version__ = "0.1.0"
OSTREE_COMPAT_VERSION = "2022.7"
