"""The repository ``summary`` file: ``(a(s(taya{sv}))a{sv})``, as ostree_repo_regenerate_summary writes it.

Byte compatibility with ostree matters (clients compare summaries and their
signatures), so the dictionaries are emitted in the order GLib's
``GVariantDict`` produces -- GHashTable iteration order (:func:`ghash_order`).
Refs are sorted with ``strcmp``; remote refs are left out; refs with a
collection ID other than the repository's own go into
``ostree.summary.collection-map``.
"""

from __future__ import annotations

import datetime as _dt
import os
import time

from pyostree.errors import OstreeError, os_error
from pyostree.remote.remotes import list_collection_refs
from pyostree.store import gvariant
from pyostree.store.gvariant import Variant
from pyostree.store.objects import Commit, ObjectType, _be64
from pyostree.store.reflist import list_refs_ext
from pyostree.tree.bootable import ghash_order

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from typing import Any

    from pyostree.store.repo import Repo

SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"
REFS_TYPE = "a(s(taya{sv}))"
METADATA_REF = "ostree-metadata"

KEY_LAST_MODIFIED = "ostree.summary.last-modified"
KEY_EXPIRES = "ostree.summary.expires"
KEY_COLLECTION_ID = "ostree.summary.collection-id"
KEY_COLLECTION_MAP = "ostree.summary.collection-map"
KEY_MODE = "ostree.summary.mode"
KEY_TOMBSTONE_COMMITS = "ostree.summary.tombstone-commits"
KEY_INDEXED_DELTAS = "ostree.summary.indexed-deltas"
KEY_STATIC_DELTAS = "ostree.static-deltas"
KEY_COMMIT_TIMESTAMP = "ostree.commit.timestamp"
KEY_COMMIT_VERSION = "ostree.commit.version"

Metadata = list[tuple[str, Variant]]
RefEntry = tuple[str, tuple[int, bytes, Metadata]]


def dict_end(entries: Metadata) -> Metadata:
    """``g_variant_dict_end``: the last value per key, in GHashTable order."""
    values: dict[str, Variant] = {}
    order: list[str] = []
    for k, v in entries:
        if k not in values:
            order.append(k)
        values[k] = v
    return [(k, values[k]) for k in ghash_order(order)]


def _ref_entry(repo: Repo, ref: str, checksum: str) -> RefEntry:
    from pyostree.store.objects import COMMIT_TYPE

    data = repo.load_metadata(ObjectType.COMMIT, checksum)
    try:
        gvariant.deserialize(COMMIT_TYPE, data)
        commit = Commit.parse(data)
    except (ValueError, OstreeError) as e:
        raise OstreeError(f"Corrupted commit object {checksum}: {e}") from None
    md: Metadata = []
    ts = commit.timestamp
    if 0 <= ts <= 253402300799:  # g_date_time_new_from_unix_utc accepts up to year 9999
        md.append((KEY_COMMIT_TIMESTAMP, Variant("t", _be64(ts))))
    version = commit.get_metadata("version")
    if version is not None and version.type == "s":
        md.append((KEY_COMMIT_VERSION, Variant("s", version.value)))
    return (ref, (len(data), bytes.fromhex(checksum), dict_end(md)))


def _strcmp_key(s: str) -> bytes:
    return s.encode("utf-8")


def build_summary(repo: Repo, additional_metadata: Metadata | None = None,
                  now: int | None = None) -> bytes:
    """The serialized summary for the repository's current refs."""
    refs: list[RefEntry] = []
    main_cid = repo.collection_id
    if main_cid is None:
        all_refs = list_refs_ext(repo, None)
        for name in sorted(all_refs, key=_strcmp_key):
            if ":" in name:
                continue  # no remote refs in the summary
            refs.append(_ref_entry(repo, name, all_refs[name]))
    md: Metadata = list(additional_metadata or [])
    if not repo.config.get_bool("core", "no-deltas-in-summary", False):
        deltas = _static_delta_digests(repo)
        if deltas:
            md.append((KEY_STATIC_DELTAS, Variant("a{sv}", dict_end(deltas))))
    md.append((KEY_LAST_MODIFIED, Variant("t", _be64(int(time.time()) if now is None else now))))
    md.append((KEY_MODE, Variant("s", repo.config.get("core", "mode", "bare") or "bare")))
    md.append((KEY_TOMBSTONE_COMMITS, Variant("b", repo.config.get_bool("core", "tombstone-commits", False))))
    md.append((KEY_INDEXED_DELTAS, Variant("b", True)))
    by_cid: dict[str, dict[str, str]] = {}
    for (cid, name), csum in list_collection_refs(repo).items():
        by_cid.setdefault(cid, {})[name] = csum
    cmap: list[tuple[str, list[RefEntry]]] = []
    for cid in sorted(by_cid, key=_strcmp_key):
        entries = [_ref_entry(repo, n, by_cid[cid][n]) for n in sorted(by_cid[cid], key=_strcmp_key)]
        if main_cid is not None and cid == main_cid:
            refs.extend(entries)
        else:
            cmap.append((cid, entries))
    if main_cid is not None:
        md.append((KEY_COLLECTION_ID, Variant("s", main_cid)))
    if any(entries for _, entries in cmap):
        md.append((KEY_COLLECTION_MAP, Variant("a{sa(s(taya{sv}))}", cmap)))
    return gvariant.serialize(SUMMARY_TYPE, (refs, dict_end(md)))


def _static_delta_digests(repo: Repo) -> Metadata:
    """Superblock digests of static deltas (``deltas/``), keyed by delta name."""
    import hashlib

    out: Metadata = []
    root = f"/proc/self/fd/{repo.dfd}/deltas"
    if not os.path.isdir(root):
        return out
    for prefix in sorted(os.listdir(root)):
        pdir = os.path.join(root, prefix)
        if len(prefix) != 2 or not os.path.isdir(pdir):
            continue
        for rest in sorted(os.listdir(pdir)):
            sb = os.path.join(pdir, rest, "superblock")
            if not os.path.isfile(sb):
                continue
            name = _delta_name_from_dir(prefix + rest)
            if name is None:
                continue
            with open(sb, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
            out.append((name, Variant("ay", digest)))
    return out


def _mbase64_to_hex(s: str) -> str | None:
    import base64

    try:
        raw = base64.b64decode(s.replace("_", "/") + "=", validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def _delta_name_from_dir(name: str) -> str | None:
    """``deltas/XX/REST`` (modified base64 checksums) -> ``FROM-TO`` or ``TO``."""
    if "-" in name:
        a, _, b = name.partition("-")
        fa, tb = _mbase64_to_hex(a), _mbase64_to_hex(b)
        return f"{fa}-{tb}" if fa and tb else None
    return _mbase64_to_hex(name)


def write_metadata_commit(repo: Repo, additional_metadata: Metadata | None) -> str:
    """With a collection ID, ``summary -u`` also commits an empty tree to ``ostree-metadata``."""
    from pyostree.store.objects import DirMeta, DirTree
    from pyostree.store.refs import write_ref
    from pyostree.tree.commit import write_commit

    cid = repo.collection_id
    assert cid is not None
    old = repo.resolve_rev(METADATA_REF, allow_noent=True)
    md: Metadata = list(additional_metadata or [])
    md.append(("ostree.collection-binding", Variant("s", cid)))
    md.append(("ostree.ref-binding", Variant("as", [METADATA_REF])))
    with repo.transaction():
        meta = repo.write_dirmeta(DirMeta(0, 0, 0o40755, []))
        tree = repo.write_dirtree(DirTree([], []))
        csum = write_commit(repo, parent=old, subject="", body="", metadata=dict_end(md),
                            root_contents=tree, root_meta=meta)
    write_ref(repo, None, METADATA_REF, csum)
    return csum


def regenerate_summary(repo: Repo, additional_metadata: Metadata | None = None) -> None:
    """``ostree summary -u``: write ``summary`` atomically and drop a stale ``summary.sig``."""
    from pyostree.store.files import write_file_atomic

    data = build_summary(repo, additional_metadata)
    from pyostree.remote.deltas import reindex  # as ostree: summary -u regenerates delta-indexes/

    reindex(repo)
    write_file_atomic(repo.path, "summary", data, fsync=not repo.disable_fsync, dir_fd=repo.dfd)
    try:
        os.unlink("summary.sig", dir_fd=repo.dfd)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise os_error(e, "unlinkat(summary.sig)") from None


# ---------------------------------------------------------------------------
# Viewing


def _iso8601_local(secs: int) -> str:
    try:
        d = _dt.datetime.fromtimestamp(secs, _dt.UTC).astimezone()
    except (OverflowError, OSError, ValueError):
        return "invalid"
    off = d.utcoffset() or _dt.timedelta(0)
    total = int(off.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    hh, rem = divmod(total, 3600)
    mm, ss = divmod(rem, 60)
    tz = f"{sign}{hh:02d}"
    if mm or ss:
        tz += f":{mm:02d}"
    if ss:
        tz += f":{ss:02d}"
    return d.strftime("%Y-%m-%dT%H:%M:%S") + tz


def _dump_refs(cid: str | None, refs: list[Any]) -> list[str]:
    from pyostree.store.dump import format_size

    out: list[str] = []
    for name, (size, csum, md) in refs:
        out.append(f"* {name}" if cid is None else f"* ({cid}, {name})")
        out.append(f"    Latest Commit ({format_size(size)}):")
        out.append(f"      {bytes(csum).hex()}" if len(csum) == 32 else
                   f"      Invalid checksum of length {len(csum)} expected 32")
        for k, v in md:
            if k == KEY_COMMIT_TIMESTAMP and v.type == "t":
                out.append(f"    Timestamp ({k}): {_iso8601_local(_be64(v.value))}")
            elif k == KEY_COMMIT_VERSION and v.type == "s":
                out.append(f"    Version ({k}): {v.value}")
            else:
                out.append(f"    {k}: {gvariant.print_value(v.type, v.value, False)}")
        out.append("")
    return out


_MODES = ("bare", "archive-z2", "archive", "bare-user", "bare-user-only", "bare-split-xattrs")


def format_summary(data: bytes, *, raw: bool = False) -> str:
    """``ostree summary --view`` (or ``--raw``) output for summary bytes."""
    from pyostree.store.dump import dump_variant

    try:
        refs, md = gvariant.deserialize(SUMMARY_TYPE, data)
    except gvariant.GVariantError as e:
        raise OstreeError(f"Invalid summary: {e}") from None
    if raw:
        return dump_variant(SUMMARY_TYPE, (refs, md)) + "\n"
    main_cid = None
    cmap = None
    for k, v in md:
        if k == KEY_COLLECTION_ID and v.type == "s":
            main_cid = v.value
        if k == KEY_COLLECTION_MAP and v.type == "a{sa(s(taya{sv}))}":
            cmap = v.value
    lines = _dump_refs(main_cid, refs)
    for cid, crefs in cmap or []:
        lines += _dump_refs(cid, crefs)
    for k, v in md:
        if k == KEY_STATIC_DELTAS:
            lines.append(f"Static Deltas ({k}): {gvariant.print_value(v.type, v.value, False)}")
        elif k == KEY_LAST_MODIFIED and v.type == "t":
            lines.append(f"Last-Modified ({k}): {_iso8601_local(_be64(v.value))}")
        elif k == KEY_EXPIRES and v.type == "t":
            lines.append(f"Expires ({k}): {_iso8601_local(_be64(v.value))}")
        elif k == KEY_COLLECTION_ID and v.type == "s":
            lines.append(f"Collection ID ({k}): {v.value}")
        elif k == KEY_COLLECTION_MAP:
            lines.append(f"Collection Map ({k}): (printed above)")
        elif k == KEY_MODE and v.type == "s":
            mode = v.value if v.value in _MODES else f"Invalid (‘{v.value}’)"  # noqa: RUF001
            lines.append(f"Repository Mode ({k}): {mode}")
        elif k == KEY_TOMBSTONE_COMMITS and v.type == "b":
            lines.append(f"Has Tombstone Commits ({k}): {'Yes' if v.value else 'No'}")
        else:
            lines.append(f"{k}: {gvariant.print_value(v.type, v.value, False)}")
    return "".join(line + "\n" for line in lines)


def read_summary(repo: Repo) -> bytes:
    try:
        fd = os.open("summary", os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd)
    except OSError as e:
        raise os_error(e, "opening summary") from None
    with os.fdopen(fd, "rb") as f:
        return f.read()

