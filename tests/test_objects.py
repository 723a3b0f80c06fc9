"""Object formats: every object the real ostree writes parses and re-serializes byte for byte."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, make_sample_tree, needs_root
from pyostree.errors import OstreeError
from pyostree.store import gvariant as gv
from pyostree.store import objects as obj
from pyostree.store.objects import Commit, DirMeta, DirTree, FileInfo

Run = Callable[..., Result]
MODES = ["bare", "bare-user", "bare-user-only", "archive"]


def _real_repo(tmp_path: Path, c: Run, mode: str) -> Path:
    tree = make_sample_tree(tmp_path / "tree")
    if mode != "bare-user-only":
        os.setxattr(tree / "firstfile", "user.test", b"value\0with nul")
        os.setxattr(tree / "baz", "user.dir", b"d")
    repo = tmp_path / "repo"
    c("init", f"--repo={repo}", f"--mode={mode}")
    extra = ["--canonical-permissions"] if mode == "bare-user-only" else []
    c(f"--repo={repo}", "commit", "-b", "main", "-s", "subj", "-m", "body\nlines",
      "--add-metadata-string=version=1.0", "--add-metadata=num=uint64 7",
      "--add-detached-metadata-string=sig=abc", "--timestamp=2021-02-03T04:05:06Z", *extra, str(tree))
    c(f"--repo={repo}", "commit", "-b", "main", "-s", "second", "--timestamp=2021-02-04", *extra, str(tree))
    return repo


@pytest.mark.ostree
@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_metadata_objects_round_trip_bytes(tmp_path: Path, c: Run, mode: str) -> None:
    repo = _real_repo(tmp_path, c, mode)
    counts = {"commit": 0, "dirtree": 0, "dirmeta": 0, "commitmeta": 0}
    for path in sorted((repo / "objects").glob("*/*")):
        ext = path.suffix[1:]
        if ext not in counts:
            continue
        data = path.read_bytes()
        csum = path.parent.name + path.stem
        counts[ext] += 1
        if ext == "commit":
            c_ = Commit.parse(data)
            assert c_.serialize() == data
            assert hashlib.sha256(data).hexdigest() == csum
        elif ext == "dirtree":
            assert DirTree.parse(data).serialize() == data
            assert hashlib.sha256(data).hexdigest() == csum
        elif ext == "dirmeta":
            assert DirMeta.parse(data).serialize() == data
            assert hashlib.sha256(data).hexdigest() == csum
        else:
            md = gv.deserialize(obj.METADATA_TYPE, data)
            assert gv.serialize(obj.METADATA_TYPE, md) == data
        assert gv.is_normal_form(obj.OBJECT_VARIANT_TYPES[obj.ObjectType(ext)], data)
    assert counts["commit"] == 2 and counts["dirtree"] >= 3 and counts["dirmeta"] >= 1
    assert counts["commitmeta"] == 1


@pytest.mark.ostree
@needs_root
def test_commit_fields(tmp_path: Path, c: Run) -> None:
    repo = _real_repo(tmp_path, c, "archive")
    head = c(f"--repo={repo}", "rev-parse", "main").out.strip()
    parent = c(f"--repo={repo}", "rev-parse", "main^").out.strip()
    data = (repo / "objects" / head[:2] / f"{head[2:]}.commit").read_bytes()
    cm = Commit.parse(data)
    assert cm.parent == parent and cm.subject == "second" and cm.body == ""
    pdata = (repo / "objects" / parent[:2] / f"{parent[2:]}.commit").read_bytes()
    pc = Commit.parse(pdata)
    assert pc.parent is None and pc.subject == "subj" and pc.body == "body\nlines"
    assert pc.timestamp == 1612325106
    assert obj.metadata_lookup(pc.metadata, "version") == "1.0"
    assert obj.metadata_lookup(pc.metadata, "num") == 7  # --add-metadata stores numbers as typed
    assert obj.metadata_lookup(pc.metadata, "ostree.ref-binding") == ["main"]


@pytest.mark.ostree
@needs_root
def test_archive_file_headers_round_trip(tmp_path: Path, c: Run) -> None:
    repo = _real_repo(tmp_path, c, "archive")
    n = 0
    for path in (repo / "objects").glob("*/*.filez"):
        data = path.read_bytes()
        hlen, variant = obj.parse_lenprefixed_header(data, "x")
        info = obj.parse_zlib_file_header(variant, "x")
        assert obj.zlib_file_header(info) == data[:hlen]
        import zlib

        content = zlib.decompress(data[hlen:], -15) if info.is_regular else b""
        assert len(content) == info.size
        assert obj.content_checksum(info, content) == path.parent.name + path.stem
        n += 1
    assert n >= 8


@pytest.mark.ostree
@needs_root
def test_bare_user_ostreemeta_round_trip(tmp_path: Path, c: Run) -> None:
    repo = _real_repo(tmp_path, c, "bare-user")
    n = 0
    for path in (repo / "objects").glob("*/*.file"):
        meta = os.getxattr(path, "user.ostreemeta")
        uid, gid, mode, xattrs = obj.filemeta_parse(meta, "x")
        assert obj.filemeta_serialize(uid, gid, mode, xattrs) == meta
        if stat.S_ISLNK(mode):
            target = path.read_bytes()
            info = FileInfo(mode, uid, gid, 0, target.rstrip(b"\0").decode(), xattrs)
            content = b""
        else:
            content = path.read_bytes()
            info = FileInfo(mode, uid, gid, len(content), "", xattrs)
        assert obj.content_checksum(info, content) == path.parent.name + path.stem
        n += 1
    assert n >= 8


def test_object_relpath_and_checksums() -> None:
    csum = "ab" + "0" * 62
    assert obj.object_relpath(csum, obj.ObjectType.FILE) == f"objects/ab/{'0' * 62}.file"
    assert obj.object_relpath(csum, obj.ObjectType.FILE, archive=True).endswith(".filez")
    assert obj.checksum_to_bytes(csum) == bytes.fromhex(csum)
    for bad in ("", "g" * 64, "A" * 64, "ab"):
        with pytest.raises(OstreeError):
            obj.validate_checksum(bad)
    with pytest.raises(OstreeError):
        obj.checksum_from_bytes(b"\0" * 31)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../../etc"])
def test_dirtree_rejects_hostile_names(name: str) -> None:
    data = gv.serialize(obj.DIRTREE_TYPE, ([(name, b"\1" * 32)], []))
    with pytest.raises(OstreeError):
        DirTree.parse(data)


def test_file_header_rejects_bad_modes() -> None:
    for mode in (stat.S_IFCHR | 0o644, stat.S_IFDIR | 0o755, stat.S_IFIFO | 0o644):
        variant = gv.serialize(obj.FILE_HEADER_TYPE, (0, 0, obj._be32(mode), 0, "", []))
        with pytest.raises(OstreeError):
            obj.parse_file_header(variant, "test object")
    variant = gv.serialize(obj.FILE_HEADER_TYPE, (0, 0, obj._be32(stat.S_IFREG | 0o644), 5, "", []))
    with pytest.raises(OstreeError, match="rdev"):
        obj.parse_file_header(variant, "test object")


def test_truncated_objects_raise_ostree_or_gvariant_error() -> None:
    cm = Commit([("k", gv.Variant("s", "v"))], None, [], "s", "b", 5, "a" * 64, "b" * 64).serialize()
    for cut in range(len(cm)):
        with pytest.raises((OstreeError, gv.GVariantError)):
            Commit.parse(cm[:cut])
    dt = DirTree([("f", "c" * 64)], [("d", "a" * 64, "b" * 64)]).serialize()
    for cut in range(len(dt)):
        with pytest.raises((OstreeError, gv.GVariantError)):
            DirTree.parse(dt[:cut])
    header = obj.file_header(FileInfo(stat.S_IFREG | 0o644, 0, 0, 3))
    for cut in range(8):
        with pytest.raises(OstreeError):
            obj.parse_lenprefixed_header(header[:cut], "x")


def test_xattr_normalization() -> None:
    xs = obj.normalize_xattrs([(b"user.b", b"2"), (b"user.a\0", b"1")])
    assert xs == [(b"user.a\0", b"1"), (b"user.b\0", b"2")]
    assert obj.xattr_name(b"user.a\0") == b"user.a"
