"""Per-layer progress on a terminal: bytes read of the blob and tar entries stored.

Only used when stderr is a terminal and ``--quiet`` was not given; the line is
redrawn at most every 0.2 s and ends with the layer's totals.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from pyostree.oci.source import VerifyingReader


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO = stream or sys.stderr
        self._line = ""
        self._last = 0.0
        self._t0 = 0.0
        self._raw: VerifyingReader | None = None
        self._entries = 0
        self._head = ""
        self._size: int | None = None

    def _draw(self, final: bool = False) -> None:
        assert self._raw is not None
        done = self._raw.count
        total = f"/{_mb(self._size)}" if self._size else ""
        rate = done / max(time.monotonic() - self._t0, 1e-6)
        line = f"{self._head}: {_mb(done)}{total}, {self._entries} entries, {rate / 1e6:.1f} MB/s"
        pad = " " * max(0, len(self._line) - len(line))
        self.stream.write("\r" + line + pad + ("\n" if final else ""))
        self.stream.flush()
        self._line = line

    def layer(self, i: int, n: int, size: int | None, raw: VerifyingReader) -> Callable[[int], None]:
        self._raw, self._size, self._entries = raw, size, 0
        self._head = f"Layer {i + 1}/{n}"
        self._t0 = self._last = time.monotonic()
        self._line = ""

        def tick(entries: int) -> None:
            self._entries = entries
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._last = now
                self._draw()
        return tick

    def done(self) -> None:
        if self._raw is not None:
            self._draw(final=True)
            self._raw = None
