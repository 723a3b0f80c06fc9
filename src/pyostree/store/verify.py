"""Verifying one object as libostree's ``ostree_repo_fsck_object`` does.

Content objects are re-hashed from their file header and content; metadata objects by the
SHA-256 of their bytes plus a normal-form and structure check.  The repository uses this to
re-hash an object it imports from an untrusted source, ``fsck`` for every object.
"""

from __future__ import annotations

import os
import stat

from pyostree.errors import NotFoundError, OstreeError
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.objects import ObjectType

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from pyostree.store.repo import Repo

_CHUNK = 1 << 20
_PERM_BITS = 0o7777


# ---------------------------------------------------------------------------
# one object


def _validate_perms(mode: int) -> None:
    if mode & ~(stat.S_IFMT(mode) | _PERM_BITS):
        raise OstreeError(f"Invalid mode {mode}; invalid bits in mode")


def _validate_csum_bytes(b: bytes) -> None:
    if len(b) != 32:
        raise OstreeError(f"Invalid checksum of length {len(b)} expected 32")


def _validate_filename(name: str) -> None:
    if name == ".":
        raise OstreeError("Invalid self-referential filename '.'")
    if name == "..":
        raise OstreeError("Invalid path uplink filename '..'")
    if "/" in name:
        raise OstreeError(f"Invalid / in filename {name}")
    if not name:
        raise OstreeError("Invalid empty filename")


def validate_metadata_structure(objtype: ObjectType, data: bytes) -> None:
    """Normal form, type and schema checks (``_ostree_validate_structureof_metadata``)."""
    vtype = obj.OBJECT_VARIANT_TYPES.get(objtype)
    if vtype is None or objtype in (ObjectType.COMMIT_META, ObjectType.TOMBSTONE_COMMIT):
        return
    if not gvariant.is_normal_form(vtype, data):
        raise OstreeError("Not normal form")
    value = gvariant.deserialize(vtype, data)
    if objtype is ObjectType.COMMIT:
        md, parent, _rel, _subj, _body, _ts, contents, meta = value
        for key, _v in md:
            if not key:
                raise OstreeError("Empty metadata key")
        if len(parent) > 0:
            _validate_csum_bytes(bytes(parent))
        _validate_csum_bytes(bytes(contents))
        _validate_csum_bytes(bytes(meta))
    elif objtype is ObjectType.DIR_TREE:
        files, dirs = value
        for name, c in files:
            _validate_filename(name)
            _validate_csum_bytes(bytes(c))
        for name, tc, mc in dirs:
            _validate_filename(name)
            _validate_csum_bytes(bytes(tc))
            _validate_csum_bytes(bytes(mc))
    elif objtype is ObjectType.DIR_META:
        mode = obj._be32(value[2])
        if not stat.S_ISDIR(mode):
            raise OstreeError(f"Invalid directory metadata mode {mode}; not a directory")
        _validate_perms(mode)


def verify_metadata_bytes(objtype: ObjectType, checksum: str, data: bytes) -> None:
    """Check that *data* is a valid metadata object named *checksum*."""
    actual = obj.sha256(data).hexdigest()
    if actual != checksum:
        raise OstreeError(
            f"Corrupted {objtype.value} object; checksum expected='{checksum}' actual='{actual}'")
    try:
        validate_metadata_structure(objtype, data)
    except gvariant.GVariantError as e:
        raise OstreeError(f"{checksum}.{objtype.value}: {e}") from None
    except OstreeError as e:
        raise OstreeError(f"{checksum}.{objtype.value}: {e}") from None


def content_checksum_of(repo: Repo, checksum: str) -> str:
    """Recompute the checksum of stored content object *checksum*."""
    co = repo.load_file(checksum)
    info = co.info
    mode = info.mode
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OstreeError(f"Invalid file metadata mode {mode}; not a valid file type")
    _validate_perms(mode)
    h = obj.sha256(obj.file_header(info))
    if info.is_regular:
        n = 0
        with co.open() as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                h.update(chunk)
        if repo.is_archive and n != info.size:
            raise OstreeError(f"Corrupted file object; size {n} does not match header size {info.size}")
    return h.hexdigest()


def verify_object(repo: Repo, objtype: ObjectType, checksum: str) -> None:
    """Re-hash one object; raise :class:`OstreeError` naming it when it is corrupt.

    A missing object raises :class:`NotFoundError`.
    """
    if objtype.is_meta:
        prefix = f"fsck {checksum}.{objtype.value}"
        try:
            data = repo.load_metadata(objtype, checksum)
        except NotFoundError:
            raise
        except OstreeError as e:
            raise OstreeError(f"{prefix}: {e}", errno=e.errno) from None
        try:
            verify_metadata_bytes(objtype, checksum, data)
        except OstreeError as e:
            raise OstreeError(f"{prefix}: {e}") from None
        return
    prefix = f"fsck content object {checksum}"
    try:
        actual = content_checksum_of(repo, checksum)
    except NotFoundError:
        raise
    except OstreeError as e:
        raise OstreeError(f"{prefix}: {e}", errno=e.errno) from None
    except OSError as e:
        raise OstreeError(f"{prefix}: {os.strerror(e.errno or 0)}") from None
    if actual != checksum:
        raise OstreeError(
            f"{prefix}: Corrupted file object; checksum expected='{checksum}' actual='{actual}'")


