"""GKeyFile-compatible ``.ini`` reader and writer (the repo ``config`` format).

Keeps group and key order and comments so that a file ostree wrote comes back
unchanged apart from the edited keys, and escapes values as GKeyFile does.
"""

from __future__ import annotations

from collections.abc import Iterator

from pyostree.errors import OstreeError


def _unescape(v: str, where: str) -> str:
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            e = v[i + 1]
            mapped = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(e)
            if mapped is None:
                # GKeyFile keeps list separators escaped for list parsing
                if e == ";":
                    out.append("\\;")
                    i += 2
                    continue
                raise OstreeError(f"{where}: invalid escape sequence \\{e}")
            out.append(mapped)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _escape(v: str) -> str:
    out = []
    for i, c in enumerate(v):
        if c == " " and i == 0:
            out.append("\\s")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif c == "\\":
            out.append("\\\\")
        else:
            out.append(c)
    return "".join(out)


class KeyFile:
    """An ordered keyfile: groups of key=value lines."""

    def __init__(self) -> None:
        # each group: name -> list of lines; a line is ("kv", key, raw) or ("raw", text)
        self._groups: dict[str, list[tuple[str, str, str]]] = {}
        self._head: list[str] = []

    # -- parsing -----------------------------------------------------------
    @classmethod
    def parse(cls, text: str, where: str = "keyfile") -> KeyFile:
        kf = cls()
        cur: list[tuple[str, str, str]] | None = None
        for lineno, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                if cur is None:
                    kf._head.append(line)
                else:
                    cur.append(("raw", "", line))
                continue
            if stripped.startswith("["):
                if not stripped.endswith("]"):
                    raise OstreeError(f"{where}:{lineno}: Key file contains line “{line}” which is not a key-value pair, group, or comment")
                name = stripped[1:-1]
                if "]" in name or "[" in name or not name:
                    raise OstreeError(f"{where}:{lineno}: Invalid group name: {name}")
                cur = kf._groups.setdefault(name, [])
                continue
            if "=" not in line:
                raise OstreeError(f"{where}:{lineno}: Key file contains line “{line}” which is not a key-value pair, group, or comment")
            if cur is None:
                raise OstreeError(f"{where}: Key file does not start with a group")
            key, _, raw = line.partition("=")
            key = key.strip()
            raw = raw.lstrip(" ")
            if not key:
                raise OstreeError(f"{where}:{lineno}: Key file contains line “{line}” which is not a key-value pair, group, or comment")
            # a later duplicate key replaces the earlier one, as GKeyFile does
            for i, (kind, k, _r) in enumerate(cur):
                if kind == "kv" and k == key:
                    del cur[i]
                    break
            cur.append(("kv", key, raw))
        return kf

    @classmethod
    def load(cls, path: str) -> KeyFile:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise OstreeError(f"{path}: Key file contains invalid UTF-8") from None
        except OSError as e:
            raise OstreeError(f"Couldn't open {path}: {e.strerror}", errno=e.errno) from None
        return cls.parse(text, path)

    # -- access --------------------------------------------------------------
    def groups(self) -> list[str]:
        return list(self._groups)

    def has_group(self, group: str) -> bool:
        return group in self._groups

    def keys(self, group: str) -> list[str]:
        return [k for kind, k, _ in self._groups.get(group, []) if kind == "kv"]

    def has_key(self, group: str, key: str) -> bool:
        return key in self.keys(group)

    def get_raw(self, group: str, key: str) -> str | None:
        for kind, k, raw in self._groups.get(group, []):
            if kind == "kv" and k == key:
                return raw
        return None

    def get(self, group: str, key: str, default: str | None = None) -> str | None:
        raw = self.get_raw(group, key)
        if raw is None:
            return default
        return _unescape(raw, f"{group}.{key}").replace("\\;", ";")

    def get_bool(self, group: str, key: str, default: bool = False) -> bool:
        v = self.get(group, key)
        if v is None:
            return default
        v = v.strip()
        if v in ("true", "1"):
            return True
        if v in ("false", "0"):
            return False
        raise OstreeError(f"Key file contains key “{key}” in group “{group}” which has a value that cannot be interpreted.")

    def get_int(self, group: str, key: str, default: int = 0) -> int:
        v = self.get(group, key)
        if v is None:
            return default
        try:
            return int(v.strip())
        except ValueError:
            raise OstreeError(f"Key file contains key “{key}” in group “{group}” which has a value that cannot be interpreted.") from None

    def get_list(self, group: str, key: str) -> list[str] | None:
        raw = self.get_raw(group, key)
        if raw is None:
            return None
        items: list[str] = []
        cur = []
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == "\\" and i + 1 < len(raw) and raw[i + 1] == ";":
                cur.append(";")
                i += 2
                continue
            if c == "\\" and i + 1 < len(raw):
                cur.append(raw[i : i + 2])
                i += 2
                continue
            if c in ";,":
                items.append(_unescape("".join(cur), f"{group}.{key}"))
                cur = []
                i += 1
                continue
            cur.append(c)
            i += 1
        if cur:
            items.append(_unescape("".join(cur), f"{group}.{key}"))
        return [s.strip() for s in items if s.strip() != ""]

    def set(self, group: str, key: str, value: str) -> None:
        self.set_raw(group, key, _escape(value))

    def set_raw(self, group: str, key: str, raw: str) -> None:
        lines = self._groups.setdefault(group, [])
        for i, (kind, k, _r) in enumerate(lines):
            if kind == "kv" and k == key:
                lines[i] = ("kv", key, raw)
                return
        # insert after the last key, before trailing blank lines
        pos = len(lines)
        while pos > 0 and lines[pos - 1][0] == "raw" and not lines[pos - 1][2].strip():
            pos -= 1
        lines.insert(pos, ("kv", key, raw))

    def set_bool(self, group: str, key: str, value: bool) -> None:
        self.set_raw(group, key, "true" if value else "false")

    def set_list(self, group: str, key: str, values: list[str]) -> None:
        self.set_raw(group, key, "".join(_escape(v).replace(";", "\\;") + ";" for v in values))

    def remove_key(self, group: str, key: str) -> bool:
        lines = self._groups.get(group)
        if lines is None:
            return False
        for i, (kind, k, _r) in enumerate(lines):
            if kind == "kv" and k == key:
                del lines[i]
                return True
        return False

    def remove_group(self, group: str) -> bool:
        if group not in self._groups:
            return False
        # GKeyFile keeps the blank and comment lines above a group with that group,
        # so they go with it: strip them from the end of the previous group.
        names = list(self._groups)
        i = names.index(group)
        if i > 0:
            prev = self._groups[names[i - 1]]
            while prev and prev[-1][0] == "raw":
                prev.pop()
        del self._groups[group]
        return True

    def items(self, group: str) -> Iterator[tuple[str, str]]:
        for kind, k, _raw in self._groups.get(group, []):
            if kind == "kv":
                yield k, self.get(group, k) or ""

    # -- output --------------------------------------------------------------
    def to_data(self) -> str:
        out: list[str] = list(self._head)
        first = True
        for name, lines in self._groups.items():
            if not first and out and out[-1].strip():
                out.append("")
            first = False
            out.append(f"[{name}]")
            for kind, k, raw in lines:
                out.append(raw if kind == "raw" else f"{k}={raw}")
        text = "\n".join(out)
        return text + "\n" if text else ""
