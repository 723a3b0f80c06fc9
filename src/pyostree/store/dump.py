"""Text renderings of objects as ``ostree log`` / ``ostree show`` print them (ot-dump.c).

Numbers in ostree metadata are stored big-endian; ostree prints variants after
a ``g_variant_byteswap`` on little-endian hosts (``--raw``, metadata keys), and
the unswapped form with ``-B``.  The same happens here.
"""

from __future__ import annotations

import sys

from pyostree.store import gvariant
from pyostree.store.objects import COMMIT_TYPE, Commit, sha256
from pyostree.store.timeutil import format_commit_date

_LITTLE = sys.byteorder == "little"


def dump_variant(type_string: str, value: object, *, byteswap: bool = True) -> str:
    """``g_variant_print(v, TRUE)``, byte-swapped first on little-endian hosts (ot_dump_variant)."""
    if byteswap and _LITTLE:
        value = gvariant.byteswap(type_string, value)
    return gvariant.print_value(type_string, value, True)


def commit_content_checksum(commit: Commit) -> str:
    """``ostree_commit_get_content_checksum``: SHA-256 of root dirtree + dirmeta checksums."""
    h = sha256(bytes.fromhex(commit.root_contents))
    h.update(bytes.fromhex(commit.root_meta))
    return h.hexdigest()


def _indented(text: str) -> str:
    out = []
    pos = 0
    while True:
        nl = text.find("\n", pos)
        if nl >= 0:
            out.append("    " + text[pos:nl + 1])
            pos = nl + 1
        else:
            if pos < len(text):
                out.append("    " + text[pos:] + "\n")
            break
    return "".join(out)


def format_commit_body(commit: Commit) -> str:
    """What ``dump_commit`` prints after the ``commit CSUM`` line."""
    out = []
    if commit.parent:
        out.append(f"Parent:  {commit.parent}\n")
    out.append(f"ContentChecksum:  {commit_content_checksum(commit)}\n")
    date = format_commit_date(commit.timestamp)
    out.append(f"Date:  {date}\n")
    version = commit.get_metadata("version")
    if version is not None and version.type == "s":
        out.append(f"Version: {version.value}\n")
    if commit.subject:
        out.append("\n" + _indented(commit.subject))
    else:
        out.append("(no subject)\n")
    if commit.body:
        out.append("\n" + _indented(commit.body))
    out.append("\n")
    return "".join(out)


def format_object(objtype: str, checksum: str, type_string: str, data: bytes, *,
                  raw: bool = False, no_byteswap: bool = False) -> str:
    """``ot_dump_object``: header line, then the variant (``--raw``/``-B``) or the commit summary."""
    out = [f"{objtype} {checksum}\n"]
    value = gvariant.deserialize(type_string, data)
    if no_byteswap:
        out.append(gvariant.print_value(type_string, value, True) + "\n")
    elif raw:
        out.append(dump_variant(type_string, value) + "\n")
        return "".join(out)
    if objtype == "commit" and type_string == COMMIT_TYPE:
        out.append(format_commit_body(Commit.parse(data)))
    return "".join(out)


def format_size(n: int) -> str:
    """``g_format_size``: SI units with one decimal (``1.2\xa0kB``, a no-break space), bytes below 1000."""
    if n < 1000:
        return "1 byte" if n == 1 else f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB"):
        value /= 1000.0
        if value < 1000.0 or unit == "EB":
            return f"{value:.1f}\xa0{unit}"
    return f"{n} bytes"
