"""Boot Loader Specification entries (``/boot/loader/entries/*.conf``).

Parsing and writing follow ``OstreeBootconfigParser``: lines starting with a
letter are ``key value`` (split at the first space or tab); a second
``initrd`` line is an overlay initrd; known keys are written first in the
BLS order (title, version, options, devicetree, linux, initrd), then any
other keys in insertion order.
"""

from __future__ import annotations

import os
import re

from pyostree.errors import OstreeError
from pyostree.sysroot.fsutil import replace_contents_at

_FIELDS = ("title", "version", "options", "devicetree", "linux", "initrd")
_SEP = re.compile(r"[ \t]")


class BootConfig:
    def __init__(self) -> None:
        self.options: dict[str, str] = {}
        self.overlay_initrds: list[str] | None = None

    def clone(self) -> BootConfig:
        b = BootConfig()
        b.options = dict(self.options)
        b.overlay_initrds = list(self.overlay_initrds) if self.overlay_initrds is not None else None
        return b

    @classmethod
    def parse(cls, text: str) -> BootConfig:
        b = cls()
        overlays: list[str] = []
        for line in text.split("\n"):
            if not line or not (line[0].isascii() and line[0].isalpha()):
                continue
            parts = _SEP.split(line, maxsplit=1)
            if len(parts) != 2 or not parts[0]:
                continue
            k, v = parts
            if k == "initrd" and "initrd" in b.options:
                overlays.append(v)
            else:
                b.options[k] = v
        if overlays:
            b.overlay_initrds = overlays
        return b

    @classmethod
    def parse_at(cls, dfd: int, name: str) -> BootConfig:
        try:
            with open(os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd), "rb") as f:
                data = f.read()
        except OSError as e:
            raise OstreeError(f"Parsing {name}: {e.strerror}", errno=e.errno) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise OstreeError(f"Parsing {name}: Invalid UTF-8") from None
        return cls.parse(text)

    def get(self, key: str) -> str | None:
        return self.options.get(key)

    def set(self, key: str, value: str) -> None:
        self.options[key] = value

    def to_text(self) -> str:
        out: list[str] = []
        written: set[str] = set()
        for k in _FIELDS:
            v = self.options.get(k)
            if v is not None:
                out.append(f"{k} {v}\n")
                written.add(k)
        for ov in self.overlay_initrds or []:
            out.append(f"initrd {ov}\n")
        for k, v in self.options.items():
            if k not in written:
                out.append(f"{k} {v}\n")
        return "".join(out)

    def write_at(self, dfd: int, name: str) -> None:
        replace_contents_at(dfd, name, self.to_text().encode())
