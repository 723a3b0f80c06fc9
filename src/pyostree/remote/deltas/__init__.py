"""Static deltas (``ostree static-delta``), byte-format compatible with libostree.

A delta from commit FROM (or from nothing, "from scratch") to commit TO lives
in ``deltas/`` under a name built from the modified base64 (``/`` -> ``_``, no
padding) of the binary checksums::

    deltas/FF/FFFF...-TTTT...   (FROM-TO: split after FROM's first 2 chars)
    deltas/TT/TTTT...           (from scratch: split after TO's first 2 chars)

The directory holds ``superblock`` and the parts ``0``, ``1``, ...

superblock, GVariant ``(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))``:
  metadata (``ostree.endianness``: ``y`` 'l'/'B', inline parts keyed by
  their relative path, the target's detached metadata under
  ``deltas/.../commitmeta``), timestamp (big-endian), FROM (empty for from
  scratch), TO, the TO commit object itself, an empty dependency array, the
  part headers ``(version, sha256 of the part file, part size, uncompressed
  size of its objects, concatenated (objtype byte + 32-byte checksum))``
  and the fallback objects ``(objtype, checksum, compressed, uncompressed)``.
  The integers of headers and fallbacks are in the byte order named by
  ``ostree.endianness`` (host order when written by ostree).  A signed
  superblock is ``(taya{sv})`` starting with the magic ``OSTSGNDT``.

part file, GVariant ``(yay)``: a compression byte (0: none, ``x``: xz) and
the (compressed) payload ``(a(uuu)aa(ayay)ayay)``: (uid, gid, mode) triples in
big-endian, xattr sets, a data blob and the operations, each an opcode
followed by LEB128 varints:

====  ======================  ==============================================
``S`` open-splice-and-close   metadata: length, offset; content: mode index,
                              xattr index, size, offset
``o`` open                    mode index, xattr index, size
``w`` write                   length, offset (in the blob or the read source)
``r`` set-read-source         offset of a 32-byte checksum in the blob
``R`` unset-read-source
``c`` close
``B`` bspatch                 offset, length of a bsdiff stream in the blob
====  ======================  ==============================================

Each operation that closes an object consumes the next entry of the part's
object list.  We generate whole objects only (``S``); applying understands
every opcode, including ostree's rollsum (``o/w/r/R/c``) and bsdiff (``B``).
"""


from __future__ import annotations

from pyostree.remote.deltas.apply import apply_offline, pull_from_repo, show
from pyostree.remote.deltas.format import (
    DELTAPART_VERSION,
    FALLBACK_TYPE,
    META_ENTRY_TYPE,
    OBJTYPE_CSUM_LEN,
    OP_BSPATCH,
    OP_CLOSE,
    OP_OPEN,
    OP_OPEN_SPLICE_AND_CLOSE,
    OP_SET_READ_SOURCE,
    OP_UNSET_READ_SOURCE,
    OP_WRITE,
    PART_PAYLOAD_TYPE,
    SIGNED_MAGIC,
    SIGNED_TYPE,
    SUPERBLOCK_TYPE,
    TYPE_CHECKING,
    Fallback,
    ObjectName,
    PartHeader,
    PartPayload,
    Superblock,
    b64_to_checksum,
    checksum_to_b64,
    decode_part,
    delete,
    delta_name,
    delta_relpath,
    encode_part,
    exists,
    index_relpath,
    list_delta_indexes,
    list_deltas,
    parse_delta_name,
    parse_superblock,
    read_varuint,
    reindex,
)
from pyostree.remote.deltas.generate import GenerateOptions, GenerateStats, generate, make_bsdiff

__all__ = [
    "DELTAPART_VERSION",
    "FALLBACK_TYPE",
    "META_ENTRY_TYPE",
    "OBJTYPE_CSUM_LEN",
    "OP_BSPATCH",
    "OP_CLOSE",
    "OP_OPEN",
    "OP_OPEN_SPLICE_AND_CLOSE",
    "OP_SET_READ_SOURCE",
    "OP_UNSET_READ_SOURCE",
    "OP_WRITE",
    "PART_PAYLOAD_TYPE",
    "SIGNED_MAGIC",
    "SIGNED_TYPE",
    "SUPERBLOCK_TYPE",
    "TYPE_CHECKING",
    "Fallback",
    "GenerateOptions",
    "GenerateStats",
    "ObjectName",
    "PartHeader",
    "PartPayload",
    "Superblock",
    "apply_offline",
    "b64_to_checksum",
    "checksum_to_b64",
    "decode_part",
    "delete",
    "delta_name",
    "delta_relpath",
    "encode_part",
    "exists",
    "generate",
    "index_relpath",
    "list_delta_indexes",
    "list_deltas",
    "make_bsdiff",
    "parse_delta_name",
    "parse_superblock",
    "pull_from_repo",
    "read_varuint",
    "reindex",
    "show",
]
