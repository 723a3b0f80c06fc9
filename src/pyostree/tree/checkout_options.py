"""The options of a checkout (:func:`pyostree.tree.checkout.checkout_tree`), as ``ostree_repo_checkout_at``'s."""

from __future__ import annotations

import enum
from collections.abc import Callable

from pyostree.errors import OstreeError


class CheckoutMode(enum.Enum):
    NONE = "none"
    """Keep ownership and xattrs (needs root for files owned by others)."""
    USER = "user"
    """Do not change ownership nor set xattrs; drop setuid/setgid bits."""


class OverwriteMode(enum.StrEnum):
    NONE = "none"
    UNION_FILES = "union"
    ADD_FILES = "add"
    UNION_IDENTICAL = "identical"


class CheckoutOptions:
    """Options of :func:`checkout_tree`; defaults are ``ostree_repo_checkout_at``'s.

    A plain class (keyword arguments, :meth:`replace`), not a dataclass:
    importing dataclasses costs more start-up time than a small checkout.
    """

    __slots__ = ("allow_noent", "bareuseronly_dirs", "enable_uncompressed_cache", "filter",
                 "force_copy", "fsync", "mode", "no_copy_fallback", "overwrite",
                 "process_passthrough_whiteouts", "process_whiteouts", "skip_paths", "subpath",
                 "unquote_special_files")

    def __init__(self, *, mode: CheckoutMode = CheckoutMode.NONE,
                 overwrite: OverwriteMode = OverwriteMode.NONE, subpath: str = "/",
                 allow_noent: bool = False, no_copy_fallback: bool = False, force_copy: bool = False,
                 bareuseronly_dirs: bool = False, process_whiteouts: bool = False,
                 process_passthrough_whiteouts: bool = False, unquote_special_files: bool = False,
                 enable_uncompressed_cache: bool = False, fsync: bool = False,
                 skip_paths: frozenset[str] = frozenset(),
                 filter: Callable[[str, int], bool] | None = None) -> None:
        self.mode = mode
        self.overwrite = overwrite
        self.subpath = subpath
        """Path inside the commit to check out; a directory or a single file."""
        self.allow_noent = allow_noent
        """A missing subpath is not an error (nothing is checked out)."""
        self.no_copy_fallback = no_copy_fallback
        """``-H``: fail instead of copying when a file cannot be hardlinked."""
        self.force_copy = force_copy
        """``-C``: never hardlink."""
        self.bareuseronly_dirs = bareuseronly_dirs
        """``-M``: directory modes are masked with 0775."""
        self.process_whiteouts = process_whiteouts
        """``--whiteouts``: OCI/aufs ``.wh.`` processing."""
        self.process_passthrough_whiteouts = process_passthrough_whiteouts
        """``--process-passthrough-whiteouts``: ``.ostree-wh.NAME`` -> char device 0:0."""
        self.unquote_special_files = unquote_special_files
        """``--unquote-special-files``: ``.ostree-dev.NAME`` -> the device node/FIFO (see quoting.py)."""
        self.enable_uncompressed_cache = enable_uncompressed_cache
        """Use (and fill) ``uncompressed-objects-cache`` for user-mode checkouts of archive repos."""
        self.fsync = fsync
        """fsync every written file and directory."""
        self.skip_paths = skip_paths
        """Absolute paths (relative to the subpath root; directories end in ``/``) to skip."""
        self.filter = filter
        """Called as ``filter(path, mode)``; return False to skip the entry."""

    def replace(self, **changes: object) -> CheckoutOptions:
        """A copy with *changes* applied (as ``dataclasses.replace``)."""
        kw: dict[str, object] = {n: getattr(self, n) for n in self.__slots__}
        for k in changes:
            if k not in kw:
                raise TypeError(f"CheckoutOptions has no option {k!r}")
        kw.update(changes)
        return CheckoutOptions(**kw)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"CheckoutOptions({args})"

    def validate(self) -> None:
        if self.force_copy and self.no_copy_fallback:
            raise OstreeError("Cannot specify both --require-hardlinks and --force-copy")
        if self.overwrite is OverwriteMode.UNION_IDENTICAL and not self.no_copy_fallback:
            raise OstreeError("--union-identical requires --require-hardlinks")
