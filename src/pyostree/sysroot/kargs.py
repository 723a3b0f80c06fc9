"""Kernel command-line arguments, with libostree's ``OstreeKernelArgs`` semantics.

An ordered list of ``key[=value]`` entries; one key may appear several times
(``console=tty0 console=ttyS0``).  *replace* collapses all entries of a key
into one at the position of the first; *append* adds another entry.
Strings are split on single spaces, like ``g_strsplit(s, " ", -1)``.
"""

from __future__ import annotations

from pyostree.errors import OstreeError


def _split(arg: str) -> tuple[str, str | None]:
    key, eq, value = arg.partition("=")
    return key, (value if eq else None)


class KernelArgs:
    def __init__(self) -> None:
        self._order: list[tuple[str, str | None]] = []

    @classmethod
    def from_string(cls, options: str | None) -> KernelArgs:
        k = cls()
        k.parse_append(options)
        return k

    @classmethod
    def from_argv(cls, argv: list[str]) -> KernelArgs:
        k = cls()
        k.append_argv(argv)
        return k

    def parse_append(self, options: str | None) -> None:
        if not options:
            return
        for arg in options.split(" "):
            self.append(arg)

    def append(self, arg: str) -> None:
        self._order.append(_split(arg))

    def append_argv(self, argv: list[str], filtered_prefixes: tuple[str, ...] = ()) -> None:
        for a in argv:
            if not (filtered_prefixes and a.startswith(filtered_prefixes)):
                self.append(a)

    def append_if_missing(self, arg: str) -> None:
        if not self.contains(arg):
            self.append(arg)

    def contains(self, arg: str) -> bool:
        key = _split(arg)[0]
        return any(k == key for k, _ in self._order)

    def replace(self, arg: str) -> None:
        key, value = _split(arg)
        idx = next((i for i, (k, _) in enumerate(self._order) if k == key), None)
        if idx is None:
            self._order.append((key, value))
            return
        self._order = [e for e in self._order if e[0] != key]
        self._order.insert(idx, (key, value))

    def replace_argv(self, argv: list[str]) -> None:
        for a in argv:
            self.replace(a)

    def _values(self, key: str) -> list[int]:
        return [i for i, (k, _) in enumerate(self._order) if k == key]

    def new_replace(self, arg: str) -> None:
        """``--replace=KEY=VALUE`` or ``KEY=OLD=NEW`` (ostree_kernel_args_new_replace)."""
        key, val = _split(arg)
        idxs = self._values(key)
        if not idxs:
            raise OstreeError(f"No key '{key}' found")
        if val is not None and "=" in val:
            old, _, new = val.partition("=")
            for i in idxs:
                if self._order[i][1] == old:
                    self._order[i] = (key, new)
                    return
            raise OstreeError(f"No karg '{key}={old}' found")
        if len(idxs) > 1:
            raise OstreeError(f"Multiple values for key '{key}' found")
        self._order[idxs[0]] = (key, val)

    def delete(self, arg: str) -> None:
        key, val = _split(arg)
        idxs = self._values(key)
        if not idxs:
            raise OstreeError(f"No key '{key}' found")
        if len(idxs) == 1:
            if val is not None and self._order[idxs[0]][1] != val:
                raise OstreeError(f"No karg '{key}={val}' found")
            del self._order[idxs[0]]
            return
        for i in idxs:
            if self._order[i][1] == val:
                del self._order[i]
                return
        if val is None:
            raise OstreeError(f"Multiple values for key '{arg}' found")
        raise OstreeError(f"No karg '{arg}' found")

    def delete_key(self, key: str) -> None:
        if not self._values(key):
            raise OstreeError(f"No key '{key}' found")
        self._order = [e for e in self._order if e[0] != key]

    def delete_if_present(self, arg: str) -> None:
        if self.contains(arg):
            self.delete(arg)

    def get_last_value(self, key: str) -> str | None:
        idxs = self._values(key)
        return self._order[idxs[-1]][1] if idxs else None

    def to_strv(self) -> list[str]:
        return [k if v is None else f"{k}={v}" for k, v in self._order]

    def to_string(self) -> str:
        return " ".join(self.to_strv())
