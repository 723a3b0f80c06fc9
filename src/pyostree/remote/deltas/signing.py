"""Signed delta superblocks (``static-delta generate --sign``, ``verify``, ``apply-offline`` with keys).

As libostree: a signed superblock is the GVariant ``(taya{sv})`` of the
magic ``OSTSGNDT`` (a big-endian ``t``), the unsigned superblock's bytes and
a dictionary holding, under the engine's key (``ostree.sign.ed25519``,
``ostree.sign.dummy``), an ``aay`` of signatures over those bytes, one per key.
"""

from __future__ import annotations

from pyostree.errors import OstreeError
from pyostree.remote.deltas.format import (
    SIGNED_MAGIC,
    SIGNED_TYPE,
    _raw_array,
    _raw_sv_entry,
    _raw_tuple,
)
from pyostree.store import gvariant

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from pyostree.remote.sign import SignEngine


def sign_superblock(superblock: bytes, sign_type: str, keys: list[str]) -> bytes:
    """The signed form of *superblock*: one signature per secret key in *keys*."""
    from pyostree.remote.sign import get_engine

    engine = get_engine(sign_type)
    sigs: list[bytes] = []
    for key in keys:
        engine.set_sk(key)
        sigs.append(engine.sign(superblock))
    entry = _raw_sv_entry(engine.metadata_key, "aay", gvariant.serialize("aay", sigs))
    return _raw_tuple([("t", SIGNED_MAGIC), ("ay", superblock), ("a{sv}", _raw_array([entry], 8))])


def _signed_parts(data: bytes) -> tuple[bytes, list[tuple[str, gvariant.Variant]]] | None:
    """(inner superblock, signature dictionary) of a signed superblock, None if not signed."""
    if data[:8] != SIGNED_MAGIC:
        return None
    try:
        _magic, inner, sigs = gvariant.deserialize(SIGNED_TYPE, data)
    except ValueError:
        return None
    if not any(k.startswith("ostree.sign.") for k, _v in sigs):
        return None
    return bytes(inner), list(sigs)


def is_signed(data: bytes) -> bool:
    return _signed_parts(data) is not None


def verify(data: bytes, engine: SignEngine) -> str:
    """Check a superblock's signatures with *engine*; the success message, or OstreeError."""
    parts = _signed_parts(data)
    if parts is None:
        raise OstreeError("no signatures in static-delta")
    inner, sigs = parts
    for k, v in sigs:
        if k == engine.metadata_key and v.type == "aay":
            return engine.verify(inner, [bytes(s) for s in v.value])
    raise OstreeError(f"no signature for '{engine.metadata_key}' in static-delta superblock")


def load_engine(sign_type: str, key_ids: list[str], keys_file: str | None, keys_dir: str | None,
                optional: bool) -> SignEngine | None:
    """The verifying engine ostree's ``verify``/``apply-offline`` build: the public keys
    given, else (or also, with ``--keys-file``) those of the file or of the system
    directories.  With *optional*, a failure to load system keys means no engine."""
    from pyostree.remote.sign import get_engine

    try:
        engine = get_engine(sign_type)
    except OstreeError:
        raise OstreeError(f"Signing type {sign_type} is not supported") from None
    for key in key_ids:
        engine.add_pk(key)
    if not key_ids or keys_file:
        try:
            engine.load_pk(filename=keys_file, basedir=keys_dir)
        except OstreeError:
            if optional and keys_file is None and keys_dir is None:
                return None
            raise
    return engine
