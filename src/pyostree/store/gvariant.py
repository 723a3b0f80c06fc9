"""Our own GVariant codec: normal-form serialization and strict parsing.

GVariant is the binary format every OSTree metadata object is stored in.  This
module implements the subset of the specification ostree uses -- which is all
of it except handles being meaningful -- without GLib:

* basic types ``b y n q i u x t h d s o g``
* arrays ``aT``, maybes ``mT``, tuples ``(...)``, dict entries ``{KV}``,
  variants ``v``
* framing offsets of every width (1, 2, 4 and 8 bytes)

Python values:

=============  ==========================================
type           value
=============  ==========================================
``b``          ``bool``
integers       ``int``
``d``          ``float``
``s o g``      ``str``
``ay``         ``bytes`` (fast path)
``aT``         ``list``; ``a{KV}`` is a list of ``(k, v)``
``mT``         ``None`` or the value
``(...)``      ``tuple``
``v``          :class:`Variant`
=============  ==========================================

Parsing is strict: out-of-bounds framing offsets, strings without their NUL or
with invalid UTF-8, wrong fixed sizes and non-zero padding raise
:class:`GVariantError`.  :func:`is_normal_form` additionally checks that a
buffer is the unique normal-form serialization of what it decodes to.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any


def _category(ch: str) -> str:
    import unicodedata  # only the text printer needs it; costs start-up time

    return unicodedata.category(ch)


class GVariantError(ValueError):
    """Malformed serialized data or an invalid type string."""


class Variant:
    """A value boxed together with its type (GVariant ``v``); immutable.

    A plain class rather than a frozen dataclass: importing dataclasses costs
    more start-up time than the whole codec.
    """

    __slots__ = ("type", "value")
    type: str
    value: Any

    def __init__(self, type: str, value: Any) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: Variant is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: Variant is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Variant:
            return NotImplemented
        assert isinstance(other, Variant)
        return self.type == other.type and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.type, self.value))

    def __repr__(self) -> str:
        return f"Variant(type={self.type!r}, value={self.value!r})"


_BASIC_FIXED = {
    "b": (1, 1),
    "y": (1, 1),
    "n": (2, 2),
    "q": (2, 2),
    "i": (4, 4),
    "u": (4, 4),
    "h": (4, 4),
    "x": (8, 8),
    "t": (8, 8),
    "d": (8, 8),
}
_INT_FORMATS = {"y": "<B", "n": "<h", "q": "<H", "i": "<i", "u": "<I", "h": "<i", "x": "<q", "t": "<Q"}
_STRINGS = "sog"


class GType:
    """A parsed GVariant type with its alignment and fixed size (None if variable)."""

    __slots__ = ("align", "children", "fixed", "kind", "string")

    def __init__(self, string: str, kind: str, children: tuple[GType, ...]) -> None:
        self.string = string
        self.kind = kind
        self.children = children
        if kind in _BASIC_FIXED:
            self.align, fixed = _BASIC_FIXED[kind]
            self.fixed: int | None = fixed
        elif kind in _STRINGS:
            self.align, self.fixed = 1, None
        elif kind == "v":
            self.align, self.fixed = 8, None
        elif kind in ("a", "m"):
            self.align, self.fixed = children[0].align, None
        else:  # tuple "(" or dict entry "{"
            self.align = max((c.align for c in children), default=1)
            size = 0
            fixed_ok = True
            for c in children:
                if c.fixed is None:
                    fixed_ok = False
                    break
                size = _align(size, c.align) + c.fixed
            if fixed_ok:
                self.fixed = _align(size, self.align) if children else 1
            else:
                self.fixed = None

    def __repr__(self) -> str:
        return f"GType({self.string!r})"


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _parse_type_at(s: str, i: int, depth: int = 0) -> tuple[GType, int]:
    if depth > _MAX_DEPTH:
        raise GVariantError(f"type {s[:40]!r}... nested more than {_MAX_DEPTH} deep")
    if i >= len(s):
        raise GVariantError(f"incomplete type string {s!r}")
    c = s[i]
    if c in _BASIC_FIXED or c in _STRINGS or c == "v":
        return GType(c, c, ()), i + 1
    if c in "am":
        child, j = _parse_type_at(s, i + 1, depth + 1)
        return GType(s[i:j], c, (child,)), j
    if c == "(":
        j = i + 1
        kids: list[GType] = []
        while True:
            if j >= len(s):
                raise GVariantError(f"unterminated tuple in type {s!r}")
            if s[j] == ")":
                return GType(s[i : j + 1], "(", tuple(kids)), j + 1
            k, j = _parse_type_at(s, j, depth + 1)
            kids.append(k)
    if c == "{":
        key, j = _parse_type_at(s, i + 1, depth + 1)
        if key.kind not in _BASIC_FIXED and key.kind not in _STRINGS:
            raise GVariantError(f"dict entry key must be basic in {s!r}")
        val, j = _parse_type_at(s, j, depth + 1)
        if j >= len(s) or s[j] != "}":
            raise GVariantError(f"bad dict entry in type {s!r}")
        return GType(s[i : j + 1], "{", (key, val)), j + 1
    raise GVariantError(f"invalid type character {c!r} in {s!r}")


_MAX_DEPTH = 128  # G_VARIANT_MAX_RECURSION_DEPTH


@lru_cache(maxsize=512)
def parse_type(s: str) -> GType:
    """Parse a complete type string such as ``(a{sv}aya(say)sstayay)``."""
    try:
        t, j = _parse_type_at(s, 0)
    except RecursionError:
        raise GVariantError("type string nested too deeply") from None
    if j != len(s):
        raise GVariantError(f"trailing characters in type {s!r}")
    return t


def is_valid_type(s: str) -> bool:
    try:
        parse_type(s)
    except GVariantError:
        return False
    return True


# ---------------------------------------------------------------------------
# Serialization


def _offset_width_for_body(body: int, n_offsets: int) -> int:
    if n_offsets == 0:
        return 0
    if body + n_offsets <= 0xFF:
        return 1
    if body + 2 * n_offsets <= 0xFFFF:
        return 2
    if body + 4 * n_offsets <= 0xFFFFFFFF:
        return 4
    return 8


def _offset_width_for_size(size: int) -> int:
    if size == 0:
        return 0
    if size <= 0xFF:
        return 1
    if size <= 0xFFFF:
        return 2
    if size <= 0xFFFFFFFF:
        return 4
    return 8


def _pack_offsets(offsets: list[int], width: int) -> bytes:
    if width == 0:
        return b""
    return b"".join(o.to_bytes(width, "little") for o in offsets)


def _ser(t: GType, v: Any) -> bytes:
    k = t.kind
    if k in _INT_FORMATS:
        try:
            return struct.pack(_INT_FORMATS[k], v)
        except struct.error as e:
            raise GVariantError(f"value {v!r} out of range for type {k}") from e
    if k == "b":
        return b"\x01" if v else b"\x00"
    if k == "d":
        return struct.pack("<d", v)
    if k in _STRINGS:
        if isinstance(v, bytes):
            raise GVariantError("GVariant strings must be str, not bytes")
        data: bytes = v.encode("utf-8")
        if b"\0" in data:
            raise GVariantError("embedded NUL in GVariant string")
        if (k == "o" and not _OBJECT_PATH.fullmatch(v)) or (k == "g" and not _is_signature(v)):
            raise GVariantError(f"invalid {'object path' if k == 'o' else 'signature'} {v!r}")
        return data + b"\0"
    if k == "v":
        if not isinstance(v, Variant):
            raise GVariantError(f"expected Variant for type v, got {type(v).__name__}")
        return _ser(parse_type(v.type), v.value) + b"\0" + v.type.encode("ascii")
    if k == "m":
        if v is None:
            return b""
        child = t.children[0]
        data = _ser(child, v)
        return data if child.fixed is not None else data + b"\0"
    if k == "a":
        child = t.children[0]
        if child.kind == "y":
            return bytes(v)
        if child.fixed is not None:
            return b"".join(_ser(child, el) for el in v)
        buf = bytearray()
        ends: list[int] = []
        for el in v:
            pad = _align(len(buf), child.align) - len(buf)
            if pad:
                buf += b"\0" * pad
            buf += _ser(child, el)
            ends.append(len(buf))
        width = _offset_width_for_body(len(buf), len(ends))
        return bytes(buf) + _pack_offsets(ends, width)
    # tuple or dict entry
    kids = t.children
    if not kids:
        if v not in ((), None):
            raise GVariantError("value for () must be an empty tuple")
        return b"\0"
    if len(v) != len(kids):
        raise GVariantError(f"tuple of type {t.string} needs {len(kids)} items, got {len(v)}")
    buf = bytearray()
    ends = []
    last = len(kids) - 1
    for i, (ct, cv) in enumerate(zip(kids, v, strict=True)):
        pad = _align(len(buf), ct.align) - len(buf)
        if pad:
            buf += b"\0" * pad
        buf += _ser(ct, cv)
        if ct.fixed is None and i != last:
            ends.append(len(buf))
    if t.fixed is not None:
        buf += b"\0" * (t.fixed - len(buf))
        return bytes(buf)
    width = _offset_width_for_body(len(buf), len(ends))
    return bytes(buf) + _pack_offsets(list(reversed(ends)), width)


def serialize(type_string: str, value: Any) -> bytes:
    """Serialize *value* as GVariant *type_string* in normal form."""
    return _ser(parse_type(type_string), value)


# ---------------------------------------------------------------------------
# Parsing


_OBJECT_PATH = re.compile(r"/|(/[A-Za-z0-9_]+)+")


def _is_signature(text: str) -> bool:
    """A D-Bus signature: complete types in sequence, no maybes."""
    if "m" in text:
        return False
    i = 0
    try:
        while i < len(text):
            _, i = _parse_type_at(text, i)
    except (GVariantError, RecursionError):
        return False
    return True


def _read_offset(data: bytes, pos: int, width: int) -> int:
    return int.from_bytes(data[pos : pos + width], "little")


def _check_zero(data: bytes, start: int, end: int) -> None:
    if end > start and any(data[start:end]):
        raise GVariantError("non-zero padding")


def _de(t: GType, data: bytes, start: int, end: int) -> Any:
    size = end - start
    k = t.kind
    if t.fixed is not None and size != t.fixed:
        raise GVariantError(f"type {t.string} needs {t.fixed} bytes, got {size}")
    if k in _INT_FORMATS:
        return struct.unpack_from(_INT_FORMATS[k], data, start)[0]
    if k == "b":
        b = data[start]
        if b > 1:
            raise GVariantError("boolean that is neither 0 nor 1")
        return b == 1
    if k == "d":
        return struct.unpack_from("<d", data, start)[0]
    if k in _STRINGS:
        if size == 0 or data[end - 1] != 0:
            raise GVariantError("string without its terminating NUL")
        raw = data[start : end - 1]
        if b"\0" in raw:
            raise GVariantError("string with an embedded NUL")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GVariantError("string that is not valid UTF-8") from e
        if k == "o" and not _OBJECT_PATH.fullmatch(text):
            raise GVariantError(f"invalid object path {text!r}")
        if k == "g" and not _is_signature(text):
            raise GVariantError(f"invalid signature {text!r}")
        return text
    if k == "v":
        if size == 0:
            raise GVariantError("empty variant")
        sep = data.rfind(b"\0", start, end)
        if sep < 0:
            raise GVariantError("variant without a type string")
        try:
            tstr = data[sep + 1 : end].decode("ascii")
        except UnicodeDecodeError as e:
            raise GVariantError("variant with a non-ASCII type string") from e
        ct = parse_type(tstr)
        return Variant(tstr, _de(ct, data, start, sep))
    if k == "m":
        if size == 0:
            return None
        child = t.children[0]
        if child.fixed is not None:
            return _de(child, data, start, end)
        if data[end - 1] != 0:
            raise GVariantError("maybe without its trailing NUL")
        return _de(child, data, start, end - 1)
    if k == "a":
        child = t.children[0]
        if child.kind == "y":
            return bytes(data[start:end])
        if child.fixed is not None:
            f = child.fixed
            if size % f:
                raise GVariantError(f"array of {child.string} with a size not a multiple of {f}")
            return [_de(child, data, start + i * f, start + (i + 1) * f) for i in range(size // f)]
        if size == 0:
            return []
        w = _offset_width_for_size(size)
        last_end = _read_offset(data, end - w, w)
        if last_end > size - w or (size - last_end) % w:
            raise GVariantError("array framing offsets out of bounds")
        n = (size - last_end) // w
        out = []
        pos = 0
        table = start + last_end
        for i in range(n):
            stop = _read_offset(data, table + i * w, w)
            s = _align(pos, child.align)
            if s > stop or stop > last_end:
                raise GVariantError("array framing offsets out of order")
            _check_zero(data, start + pos, start + s)
            out.append(_de(child, data, start + s, start + stop))
            pos = stop
        return out
    # tuple / dict entry
    kids = t.children
    if not kids:
        if data[start] != 0:
            raise GVariantError("unit value that is not zero")
        return ()
    w = _offset_width_for_size(size)
    frame_end = end  # offsets are consumed from the end backwards
    pos = 0
    vals = []
    last = len(kids) - 1
    for i, ct in enumerate(kids):
        s = _align(pos, ct.align)
        if ct.fixed is not None:
            stop = s + ct.fixed
        elif i == last:
            stop = frame_end - start
        else:
            frame_end -= w
            if frame_end < start or w == 0:
                raise GVariantError("tuple framing offsets out of bounds")
            stop = _read_offset(data, frame_end, w)
        if s > stop or start + stop > frame_end:
            raise GVariantError(f"tuple member {i} of {t.string} out of bounds")
        _check_zero(data, start + pos, start + s)
        vals.append(_de(ct, data, start + s, start + stop))
        pos = stop
    if t.fixed is not None:
        _check_zero(data, start + pos, end)
    elif start + pos != frame_end:
        raise GVariantError(f"unused bytes inside {t.string}")
    return tuple(vals)


def deserialize(type_string: str, data: bytes) -> Any:
    """Parse *data* as GVariant *type_string*; raise GVariantError if malformed."""
    t = parse_type(type_string)
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        return _de(t, data, 0, len(data))
    except (IndexError, struct.error) as e:
        raise GVariantError(f"truncated {type_string} data") from e
    except RecursionError:
        raise GVariantError(f"{type_string} data nested too deeply") from None


def is_normal_form(type_string: str, data: bytes) -> bool:
    """True when *data* parses and is the unique normal-form encoding of its value."""
    try:
        value = deserialize(type_string, data)
    except GVariantError:
        return False
    return _ser(parse_type(type_string), value) == bytes(data)


# ---------------------------------------------------------------------------
# Text format (the subset ostree's CLI prints and parses)

_TYPE_KEYWORDS = {
    "boolean": "b",
    "byte": "y",
    "int16": "n",
    "uint16": "q",
    "int32": "i",
    "uint32": "u",
    "int64": "x",
    "uint64": "t",
    "handle": "h",
    "double": "d",
    "string": "s",
    "objectpath": "o",
    "signature": "g",
}
_KEYWORD_OF = {v: k for k, v in _TYPE_KEYWORDS.items()}


_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}


def _quote(s: str) -> str:
    """Quote like g_variant_print: '...' unless the text holds a ', escapes for the unprintable."""
    q = '"' if "'" in s else "'"
    out = [q]
    for ch in s:
        if ch == q or ch == "\\":
            out.append("\\" + ch)
        elif _category(ch) not in ("Cc", "Cf", "Cn", "Cs"):  # g_unichar_isprint
            out.append(ch)
        elif ch in _ESCAPES:
            out.append("\\" + _ESCAPES[ch])
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append(q)
    return "".join(out)


def _fmt_double(d: float) -> str:
    # g_variant_print: g_ascii_dtostr ("%.17g"), then ".0" when it looks like an integer
    r = f"{d:.17g}"
    if any(ch in r for ch in ".enN"):
        return r
    return r + ".0"


def print_value(type_string: str, value: Any, annotate: bool = True) -> str:
    """Render like ``g_variant_print(value, type_annotate)``."""
    return _print(parse_type(type_string), value, annotate)


def _print(t: GType, v: Any, annotate: bool) -> str:
    k = t.kind
    if k == "b":
        return "true" if v else "false"
    if k in ("n", "q", "x", "t", "h", "y"):
        if k == "y":
            text = f"0x{v:02x}"
        else:
            text = str(v)
        return f"{_KEYWORD_OF[k]} {text}" if annotate else text
    if k == "i":
        return str(v)
    if k == "u":
        return f"uint32 {v}" if annotate else str(v)
    if k == "d":
        return _fmt_double(v)
    if k == "s":
        return _quote(v)
    if k in ("o", "g"):
        return f"{_KEYWORD_OF[k]} {_quote(v)}" if annotate else _quote(v)
    if k == "v":
        return "<" + _print(parse_type(v.type), v.value, True) + ">"  # always annotated inside
    if k == "m":
        if v is None:
            return f"@{t.string} nothing" if annotate else "nothing"
        inner = _print(t.children[0], v, annotate)
        return f"just {inner}" if t.children[0].kind == "m" else inner
    if k == "a":
        child = t.children[0]
        if child.kind == "y":
            items = list(v)
            if items and items[-1] == 0 and 0 not in items[:-1] and all(32 <= c < 127 for c in items[:-1]):
                return "b" + _quote(bytes(items[:-1]).decode("ascii"))
            if not items:
                return "@ay []" if annotate else "[]"
            inner = ", ".join(f"0x{c:02x}" for c in items)
            return f"[byte {inner}]" if annotate else f"[{inner}]"
        if not v:
            empty = "{}" if child.kind == "{" else "[]"
            return f"@{t.string} {empty}" if annotate else empty
        # as g_variant_print: only the first element carries type annotations
        if child.kind == "{":
            parts = [
                f"{_print(child.children[0], kv[0], annotate and i == 0)}: "
                f"{_print(child.children[1], kv[1], annotate and i == 0)}"
                for i, kv in enumerate(v)
            ]
            return "{" + ", ".join(parts) + "}"
        return "[" + ", ".join(_print(child, e, annotate and i == 0) for i, e in enumerate(v)) + "]"
    if k == "{":
        return "{" + _print(t.children[0], v[0], annotate) + ", " + _print(t.children[1], v[1], annotate) + "}"
    # tuple
    parts = [_print(c, e, annotate) for c, e in zip(t.children, v, strict=True)]
    if len(parts) == 1:
        return "(" + parts[0] + ",)"
    return "(" + ", ".join(parts) + ")"


class _TextParser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise GVariantError(f"expected {ch!r} at position {self.i} in {self.s!r}")
        self.i += 1

    def word(self) -> str:
        self.ws()
        j = self.i
        while j < len(self.s) and (self.s[j].isalnum() or self.s[j] in "_+-."):
            j += 1
        return self.s[self.i : j]

    def string(self) -> str:
        q = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise GVariantError("unterminated string")
            ch = self.s[self.i]
            self.i += 1
            if ch == q:
                return "".join(out)
            if ch == "\\":
                e = self.s[self.i]
                self.i += 1
                if e == "u":
                    out.append(chr(int(self.s[self.i : self.i + 4], 16)))
                    self.i += 4
                elif e == "U":
                    out.append(chr(int(self.s[self.i : self.i + 8], 16)))
                    self.i += 8
                else:
                    out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "a": "\a",
                                "v": "\v"}.get(e, e))
            else:
                out.append(ch)

    def value(self, want: GType | None) -> tuple[GType, Any]:
        c = self.peek()
        if not c:
            raise GVariantError(f"unexpected end of GVariant text {self.s!r}")
        if c == "@":
            self.i += 1
            j = self.i
            depth = 0
            while j < len(self.s):
                ch = self.s[j]
                if ch in "({":
                    depth += 1
                elif ch in ")}":
                    depth -= 1
                if ch in "am({":
                    j += 1
                    continue
                j += 1
                if depth == 0:
                    break
            t: GType | None = parse_type(self.s[self.i : j])
            self.i = j
            return self.value(t)
        w = self.word()
        if w in _TYPE_KEYWORDS and not (want and want.kind in _STRINGS and w == "string"):
            self.i += len(w)
            return self.value(parse_type(_TYPE_KEYWORDS[w]))
        if w in ("true", "false"):
            self.i += len(w)
            return parse_type("b"), w == "true"
        if w == "nothing":
            self.i += len(w)
            if want is None or want.kind != "m":
                raise GVariantError("'nothing' needs a maybe type")
            return want, None
        if w == "just":
            self.i += len(w)
            inner_t = want.children[0] if want and want.kind == "m" else None
            t, v = self.value(inner_t)
            return (want or parse_type("m" + t.string)), v
        if c in "'\"":
            s = self.string()
            t = want if want is not None and want.kind in _STRINGS else parse_type("s")
            return t, s
        if c == "b" and self.i + 1 < len(self.s) and self.s[self.i + 1] in "'\"":
            self.i += 1
            s = self.string()
            return parse_type("ay"), s.encode("utf-8") + b"\0"
        if c == "<":
            self.i += 1
            t, v = self.value(None)
            self.expect(">")
            return parse_type("v"), Variant(t.string, v)
        if c == "[":
            self.i += 1
            child = want.children[0] if want is not None and want.kind == "a" else None
            items = []
            if self.peek() != "]":
                while True:
                    ct, cv = self.value(child)
                    if child is not None and ct.string != child.string:
                        raise GVariantError(f"array elements of types {child.string} and {ct.string} in {self.s!r}")
                    child = child or ct
                    items.append(cv)
                    if self.peek() == ",":
                        self.i += 1
                        continue
                    break
            self.expect("]")
            if child is None:
                raise GVariantError("cannot infer the type of an empty array")
            if child.kind == "y":
                return parse_type("ay"), bytes(items)
            return parse_type("a" + child.string), items
        if c == "(":
            self.i += 1
            kids = list(want.children) if want is not None and want.kind == "(" else None
            ts: list[GType] = []
            vs: list[Any] = []
            if self.peek() != ")":
                while True:
                    ct, cv = self.value(kids[len(ts)] if kids and len(ts) < len(kids) else None)
                    ts.append(ct)
                    vs.append(cv)
                    if self.peek() == ",":
                        self.i += 1
                        if self.peek() == ")":
                            break
                        continue
                    break
            self.expect(")")
            return parse_type("(" + "".join(x.string for x in ts) + ")"), tuple(vs)
        if c == "{":
            self.i += 1
            entries = []
            kt: GType | None = None
            vt: GType | None = None
            if want is not None and want.kind == "a" and want.children[0].kind == "{":
                kt, vt = want.children[0].children
            if self.peek() != "}":
                while True:
                    kt2, kv = self.value(kt)
                    self.expect(":")
                    vt2, vv = self.value(vt)
                    kt, vt = kt or kt2, vt or vt2
                    entries.append((kv, vv))
                    if self.peek() == ",":
                        self.i += 1
                        continue
                    break
            self.expect("}")
            if kt is None or vt is None:
                raise GVariantError("cannot infer the type of an empty dictionary")
            return parse_type("a{" + kt.string + vt.string + "}"), entries
        # number
        if w:
            self.i += len(w)
            t = want
            is_float = (any(ch in w for ch in ".eE") and not w.lower().startswith("0x")) or w in ("inf", "nan", "-inf")
            if t is None:
                t = parse_type("d" if is_float else "i")
            if t.kind == "d":
                return t, float(w)
            if t.kind in _INT_FORMATS:
                try:
                    n = int(w, 0)
                except ValueError as e:
                    raise GVariantError(f"invalid number {w!r}") from e
                _ser(t, n)  # range check
                return t, n
            raise GVariantError(f"number {w!r} where a {t.string} was expected")
        raise GVariantError(f"cannot parse GVariant text {self.s!r} at position {self.i}")


def parse_text(text: str, type_string: str | None = None) -> Variant:
    """Parse GVariant text format (``uint64 42``, ``'foo'``, ``['a', 'b']``...)."""
    p = _TextParser(text)
    try:
        t, v = p.value(parse_type(type_string) if type_string else None)
    except (IndexError, ValueError, RecursionError) as e:
        if isinstance(e, GVariantError):
            raise
        raise GVariantError(f"cannot parse GVariant text {text!r}") from None
    if type_string and t.string != type_string:
        raise GVariantError(f"GVariant text {text!r} is of type {t.string}, not {type_string}")
    p.ws()
    if p.i != len(p.s):
        raise GVariantError(f"trailing text in {text!r}")
    return Variant(t.string, v)


def byteswap(type_string: str, value: Any) -> Any:
    """Return *value* with every multi-byte number byte-swapped (g_variant_byteswap)."""
    return deserialize(type_string, _swap_bytes(parse_type(type_string), serialize(type_string, value)))


def _swap_bytes(t: GType, data: bytes) -> bytes:
    # Re-encode with swapped numbers by walking the parsed value.
    value = _de(t, data, 0, len(data))
    return _ser(t, _swap_value(t, value))


def _swap_value(t: GType, v: Any) -> Any:
    k = t.kind
    if k in _INT_FORMATS and t.fixed and t.fixed > 1:
        fmt = _INT_FORMATS[k]
        return struct.unpack(">" + fmt[1], struct.pack(fmt, v))[0]
    if k == "d":
        return struct.unpack(">d", struct.pack("<d", v))[0]
    if k == "v":
        return Variant(v.type, _swap_value(parse_type(v.type), v.value))
    if k == "m":
        return None if v is None else _swap_value(t.children[0], v)
    if k == "a":
        if t.children[0].kind == "y":
            return v
        return [_swap_value(t.children[0], e) for e in v]
    if k in "({":
        return tuple(_swap_value(c, e) for c, e in zip(t.children, v, strict=True))
    return v
