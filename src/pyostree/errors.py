"""The one exception type the library raises for expected failures.

The CLI prints ``error: <message>`` and exits 1 for these; anything else is a bug.
"""

from __future__ import annotations

import errno as _errno
import os


class OstreeError(Exception):
    """An operation failed for a reason the user can act on (bad input, missing object...)."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class NotFoundError(OstreeError):
    """A ref, object or path does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errno=_errno.ENOENT)


def os_error(e: OSError, what: str) -> OstreeError:
    """Wrap an OSError as ostree does: ``WHAT: strerror``."""
    msg = os.strerror(e.errno) if e.errno else str(e)
    err = OstreeError(f"{what}: {msg}", errno=e.errno)
    return err
