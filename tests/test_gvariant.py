"""GVariant codec: property round trips, strict parsing, normal form, text format.

The byte-level agreement with libostree is checked in test_objects.py (every
object of a real ``ostree commit`` re-serializes to the same bytes); here we
check the codec's own laws over generated types and values.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyostree.store import gvariant as gv
from pyostree.store.gvariant import GVariantError, Variant

BASIC = "bynqiuxthdsog"
FIXED_BASIC = "bynqiuxthd"
INT_RANGES = {
    "y": (0, 0xFF), "n": (-(1 << 15), (1 << 15) - 1), "q": (0, 0xFFFF),
    "i": (-(1 << 31), (1 << 31) - 1), "u": (0, 0xFFFFFFFF), "h": (-(1 << 31), (1 << 31) - 1),
    "x": (-(1 << 63), (1 << 63) - 1), "t": (0, (1 << 64) - 1),
}

# -- strategies ------------------------------------------------------------


def _types(max_depth: int = 4) -> st.SearchStrategy[str]:
    basic = st.sampled_from(list(BASIC + "v"))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        # "mm..." is left out: Python's None cannot tell Nothing from Just(Nothing).
        return st.one_of(
            inner.map(lambda t: "a" + t),
            inner.filter(lambda t: not t.startswith("m")).map(lambda t: "m" + t),
            st.lists(inner, min_size=0, max_size=4).map(lambda ts: "(" + "".join(ts) + ")"),
            st.tuples(st.sampled_from(list(BASIC)), inner).map(lambda kv: "a{" + kv[0] + kv[1] + "}"),
        )

    return st.recursive(basic, extend, max_leaves=8)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20)
_path = st.lists(st.text(alphabet="abcXYZ019_", min_size=1, max_size=5), max_size=3).map(
    lambda parts: "/" + "/".join(parts))
_signature = st.sampled_from(["", "s", "a{sv}", "(ii)", "ay"])


def _value(data: st.DataObject, t: str, nan: bool = False, depth: int = 0) -> Any:
    gt = gv.parse_type(t)
    k = gt.kind
    if k == "b":
        return data.draw(st.booleans())
    if k in INT_RANGES:
        lo, hi = INT_RANGES[k]
        return data.draw(st.integers(lo, hi))
    if k == "d":
        return data.draw(st.floats(allow_nan=nan))
    if k == "s":
        return data.draw(_text)
    if k == "o":
        return data.draw(_path)
    if k == "g":
        return data.draw(_signature)
    if k == "v":
        inner = data.draw(st.sampled_from(["s", "i", "as", "(yv)" if depth < 2 else "t", "ay", "a{sv}" if depth < 2 else "b"]))
        return Variant(inner, _value(data, inner, nan, depth + 1))
    if k == "m":
        if data.draw(st.booleans()):
            return None
        return _value(data, gt.children[0].string, nan, depth)
    if k == "a":
        child = gt.children[0]
        if child.kind == "y":
            return data.draw(st.binary(max_size=40))
        n = data.draw(st.integers(0, 4))
        return [_value(data, child.string, nan, depth) for _ in range(n)]
    return tuple(_value(data, c.string, nan, depth) for c in gt.children)


# -- round trips -----------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_types(), st.data())
def test_round_trip_generated_types(t: str, data: st.DataObject) -> None:
    value = _value(data, t)
    blob = gv.serialize(t, value)
    assert gv.deserialize(t, blob) == value
    assert gv.is_normal_form(t, blob)
    fixed = gv.parse_type(t).fixed
    if fixed is not None:
        assert len(blob) == fixed


@settings(max_examples=100, deadline=None)
@given(_types(), st.data())
def test_round_trip_bytes_with_nan(t: str, data: st.DataObject) -> None:
    value = _value(data, t, nan=True)
    blob = gv.serialize(t, value)
    assert gv.serialize(t, gv.deserialize(t, blob)) == blob


@pytest.mark.parametrize(
    ("n_items", "item_len", "width"),
    [(3, 10, 1), (40, 10, 2), (300, 250, 4)],
)
def test_framing_offsets_widths(n_items: int, item_len: int, width: int) -> None:
    """Arrays big enough for 1-, 2- and 4-byte offsets, in arrays and in tuples."""
    items = [str(i).zfill(item_len - 1) for i in range(n_items)]
    blob = gv.serialize("as", items)
    body = n_items * item_len
    assert len(blob) == body + n_items * width
    assert int.from_bytes(blob[-width:], "little") == body
    assert gv.deserialize("as", blob) == items
    assert gv.is_normal_form("as", blob)
    tup = ("x" * body, "y")
    tblob = gv.serialize("(ss)", tup)
    assert len(tblob) == body + 1 + 2 + width
    assert gv.deserialize("(ss)", tblob) == tup


def test_framing_offset_width_8_computation() -> None:
    """8-byte offsets (containers over 4 GiB) cannot be built in a test; check the rule."""
    assert gv._offset_width_for_size(0xFFFFFFFF) == 4
    assert gv._offset_width_for_size(0x100000000) == 8
    assert gv._offset_width_for_body(0xFFFFFFFF - 7, 2) == 8
    assert gv._offset_width_for_body(0xFFFFFFFF - 8, 2) == 4
    assert gv._offset_width_for_body(0xFFFF - 4, 2) == 2
    assert gv._offset_width_for_body(0xFF - 1, 1) == 1
    assert gv._offset_width_for_body(0xFF, 1) == 2


def test_offset_boundary_exact() -> None:
    """Around the 255-byte boundary the width must grow exactly when GLib's does."""
    for total in range(240, 270):
        s = "a" * (total - 2)
        blob = gv.serialize("as", [s])
        assert gv.deserialize("as", blob) == [s]
        body = total - 1
        assert len(blob) == body + (1 if body + 1 <= 0xFF else 2)


def test_known_encodings() -> None:
    assert gv.serialize("s", "hi") == b"hi\0"
    assert gv.serialize("(ss)", ("a", "b")) == b"a\0b\0\x02"
    assert gv.serialize("as", ["a", "bc"]) == b"a\0bc\0\x02\x05"
    assert gv.serialize("(yu)", (1, 2)) == b"\x01\0\0\0\x02\0\0\0"
    assert gv.serialize("mi", None) == b""
    assert gv.serialize("mi", 5) == b"\x05\0\0\0"
    assert gv.serialize("ms", "") == b"\0\0"
    assert gv.serialize("v", Variant("u", 1)) == b"\x01\0\0\0\0u"
    assert gv.serialize("a{sv}", [("k", Variant("b", True))]) == b"k\0\0\0\0\0\0\0\x01\0b\x02\x0c"
    assert gv.serialize("()", ()) == b"\0"
    assert gv.serialize("ad", [1.5]) == struct.pack("<d", 1.5)


# -- strict parsing ------------------------------------------------------------

OSTREE_TYPES = [
    "(a{sv}aya(say)sstayay)", "(a(say)a(sayay))", "(uuua(ayay))", "(uuuusa(ayay))",
    "(tuuuusa(ayay))", "a{sv}", "(a(s(taya{sv}))a{sv})", "v", "as", "aay", "a(ayay)",
]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(OSTREE_TYPES), st.binary(max_size=200))
def test_fuzz_garbage_never_crashes(t: str, blob: bytes) -> None:
    try:
        value = gv.deserialize(t, blob)
    except GVariantError:
        return
    # what parses must serialize again (maybe to a different, normal form)
    again = gv.serialize(t, value)
    assert gv.deserialize(t, again) == value or _has_nan(value)


def _has_nan(v: Any) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, Variant):
        return _has_nan(v.value)
    if isinstance(v, list | tuple):
        return any(_has_nan(e) for e in v)
    return False


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_truncated_and_flipped_real_values(data: st.DataObject) -> None:
    t = "(a{sv}aya(say)sstayay)"
    value = _value(data, t)
    blob = gv.serialize(t, value)
    cut = data.draw(st.integers(0, max(0, len(blob) - 1)))
    try:
        gv.deserialize(t, blob[:cut])
    except GVariantError:
        pass
    if blob:
        pos = data.draw(st.integers(0, len(blob) - 1))
        flipped = blob[:pos] + bytes([blob[pos] ^ data.draw(st.integers(1, 255))]) + blob[pos + 1:]
        try:
            gv.deserialize(t, flipped)
        except GVariantError:
            pass


@pytest.mark.parametrize(
    ("t", "blob"),
    [
        ("s", b"abc"),  # no NUL
        ("s", b"a\0b\0"),  # embedded NUL
        ("s", b"\xff\0"),  # bad UTF-8
        ("b", b"\x02"),  # boolean that is neither 0 nor 1
        ("u", b"\x01\x02"),  # wrong fixed size
        ("as", b"a\0\x09"),  # offset beyond the body
        ("as", b"ab\0\x01\x00"),  # out-of-order offsets
        ("(ss)", b"a\0b\0\x09"),  # tuple offset out of bounds
        ("(yu)", b"\x01\x01\0\0\x02\0\0\0"),  # non-zero padding
        ("v", b"\x01\0\0\0\0z"),  # bad variant type
        ("v", b""),  # empty variant
        ("v", b"\0" + b"a" * 300 + b"y"),  # type nested too deeply
        ("v", b"\0v" * 3000),  # variants nested too deeply
        ("ms", b"a"),  # maybe without trailing NUL
        ("o", b"not/a/path\0"),  # invalid object path
        ("o", b"/trailing/\0"),
        ("g", b"(ii\0"),  # invalid signature
        ("g", b"mi\0"),  # D-Bus signatures have no maybes
        ("ay", None),
    ],
)
def test_strict_rejects(t: str, blob: bytes | None) -> None:
    if blob is None:
        with pytest.raises(GVariantError):
            gv.parse_type("a")
        return
    with pytest.raises(GVariantError):
        gv.deserialize(t, blob)


@pytest.mark.parametrize(
    ("t", "blob"),
    [
        ("as", b"a\0\0\x02\x03"),  # two-element array with an empty... then wrong? (valid but we check normal)
        ("(ss)", b"a\0\0b\0\x03"),  # extra byte between members
        ("mu", b"\x01\0\0\0"),  # fine: normal
    ],
)
def test_is_normal_form_examples(t: str, blob: bytes) -> None:
    try:
        v = gv.deserialize(t, blob)
    except GVariantError:
        assert not gv.is_normal_form(t, blob)
        return
    assert gv.is_normal_form(t, blob) == (gv.serialize(t, v) == blob)


def test_is_normal_form_catches_non_normal() -> None:
    # 2-byte offsets where 1-byte ones suffice
    assert not gv.is_normal_form("as", b"a\0\x02\x00")
    # an array of 0 elements must be empty
    assert not gv.is_normal_form("as", b"\x00")
    # padding that is not zero is rejected outright
    assert not gv.is_normal_form("(yt)", b"\x01\x07" + b"\0" * 6 + b"\0" * 8)
    assert gv.is_normal_form("(yt)", b"\x01" + b"\0" * 7 + b"\0" * 8)
    assert not gv.is_normal_form("(a{sv}aya(say)sstayay)", b"")
    assert gv.is_normal_form("a{sv}", gv.serialize("a{sv}", [("a", Variant("s", "b"))]))


# -- text format -------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "value", "text"),
    [
        ("s", "hello", "'hello'"),
        ("s", "it's", '"it\'s"'),
        ("as", ["a", "b"], "['a', 'b']"),
        ("as", [], "@as []"),
        ("t", 42, "uint64 42"),
        ("u", 7, "uint32 7"),
        ("i", -3, "-3"),
        ("b", True, "true"),
        ("b", False, "false"),
        ("v", Variant("s", "x"), "<'x'>"),
        ("v", Variant("v", Variant("t", 1)), "<<uint64 1>>"),
        ("a{sv}", [("a", Variant("i", 1))], "{'a': <1>}"),
        ("(su)", ("a", 1), "('a', uint32 1)"),
        ("ay", b"abc\0", "b'abc'"),
        ("d", 1.5, "1.5"),
    ],
)
def test_print_value(t: str, value: Any, text: str) -> None:
    assert gv.print_value(t, value) == text
    parsed = gv.parse_text(text, t)
    assert parsed.type == t
    assert parsed.value == value


@pytest.mark.parametrize(
    ("text", "t", "value"),
    [
        ("'foo'", "s", "foo"),
        ('"foo"', "s", "foo"),
        ("uint64 42", "t", 42),
        ("int64 -2", "x", -2),
        ("byte 0x10", "y", 16),
        ("true", "b", True),
        ("['a', 'b']", "as", ["a", "b"]),
        ("<'x'>", "v", Variant("s", "x")),
        ("42", "i", 42),
        ("1.0", "d", 1.0),
        ("@as []", "as", []),
        ("{'k': <uint32 3>}", "a{sv}", [("k", Variant("u", 3))]),
        ("(1, 'x')", "(is)", (1, "x")),
    ],
)
def test_parse_text_infers_types(text: str, t: str, value: Any) -> None:
    v = gv.parse_text(text)
    assert v.type == t
    assert v.value == value


@pytest.mark.parametrize("text", ["'unterminated", "[1, 'a']", "uint8 3", "{", "", "[]", "300000000000000000000"])
def test_parse_text_errors(text: str) -> None:
    with pytest.raises(GVariantError):
        gv.parse_text(text)


@pytest.mark.ostree
def test_text_matches_ostree_show(tmp_path: Any, c: Any, py: Any) -> None:
    """What ``ostree show --print-metadata-key`` prints, our printer prints too."""
    repo = tmp_path / "repo"
    c("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("x")
    entries = {
        "str": "'hello world'",
        "quote": "\"it's\"",
        "strv": "['a', 'b', 'c']",
        "u64": "uint64 1234567890123",
        "i32": "-17",
        "yes": "true",
        "no": "false",
        "nested": "<<'deep'>>",
        "dict": "{'k': <uint32 5>, 'l': <'m'>}",
        "tuple": "('a', uint32 1, [byte 0x01, 0x02])",
        "dbl": "2.5",
    }
    args = [f"--add-metadata={k}={v}" for k, v in entries.items()]
    c(f"--repo={repo}", "commit", "-b", "m", "--timestamp=2020-01-01", *args, str(tree))
    from pyostree.store.repo import Repo

    r = Repo.open(str(repo))
    commit = r.load_commit(r.resolve_rev("m") or "")
    for key, text in entries.items():
        shown = c(f"--repo={repo}", "show", "m", f"--print-metadata-key={key}").out.strip()
        v = commit.get_metadata(key)
        assert v is not None
        # show byte-swaps metadata from big endian before printing (unless -B)
        assert gv.print_value(v.type, gv.byteswap(v.type, v.value)) == shown, key
        raw = c(f"--repo={repo}", "show", "m", "-B", f"--print-metadata-key={key}").out.strip()
        assert gv.print_value(v.type, v.value) == raw, key
        # our parser reads both what the user typed and what ostree printed, to the same value
        assert gv.parse_text(text).value == v.value
        assert gv.parse_text(raw, v.type).value == v.value
    r.close()


@pytest.mark.ostree
def test_string_quoting_matches_ostree(tmp_path: Any, c: Any) -> None:
    repo = tmp_path / "repo"
    c("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "t"
    tree.mkdir()
    values = ["plain", "it's", 'say "hi"', "both ' and \"", "tab\there", "nl\nx", "bell\a\v\f\b\r",
              "esc\x1b\x7f", "zwj\u200dx", "snow ☃ 🎉", "back\\slash", "\u0085nel", ""]
    args = [f"--add-metadata-string=k{i}={v}" for i, v in enumerate(values)]
    c(f"--repo={repo}", "commit", "-b", "m", *args, str(tree))
    for i, v in enumerate(values):
        shown = c(f"--repo={repo}", "show", "m", "-B", f"--print-metadata-key=k{i}").out
        assert shown == gv.print_value("s", v) + "\n", (v, shown)
        assert gv.parse_text(shown.rstrip("\n")).value == v


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["aay", "as", "a(ays)", "(ayayay)", "a{sv}", "(asay)"]),
    st.integers(1, 400),
    st.integers(0, 600),
    st.data(),
)
def test_round_trip_large_containers(t: str, n: int, size: int, data: st.DataObject) -> None:
    """Containers of up to ~240 KB: 1-, 2- and 4-byte framing offsets, exercised by hypothesis."""
    blob_of = lambda i: bytes([i % 251]) * (size + i % 7)  # noqa: E731
    str_of = lambda i: "s" * (size + i % 5)  # noqa: E731
    value: Any
    if t == "aay":
        value = [blob_of(i) for i in range(n)]
    elif t == "as":
        value = [str_of(i) for i in range(n)]
    elif t == "a(ays)":
        value = [(blob_of(i), str_of(i)) for i in range(n)]
    elif t == "(ayayay)":
        value = (blob_of(1) * n, blob_of(2), blob_of(3) * n)
    elif t == "a{sv}":
        value = [(str(i), Variant("ay", blob_of(i))) for i in range(n)]
    else:
        value = ([str_of(i) for i in range(n)], blob_of(n))
    blob = gv.serialize(t, value)
    assert gv.deserialize(t, blob) == value
    assert gv.is_normal_form(t, blob)
    if len(blob) > 8:
        cut = data.draw(st.integers(1, len(blob) - 1))
        try:
            truncated = gv.deserialize(t, blob[:cut])
        except GVariantError:
            pass
        else:  # a prefix may parse, but never as the same value
            assert truncated != value
