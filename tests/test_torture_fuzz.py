"""Seeded fuzzing of every parser that reads untrusted bytes: 0 tracebacks (only OstreeError, or
the codec's documented GVariantError for the bare codec), 0 hangs.

Inputs are random bytes and mutations (bit flips, truncations, insertions, splices) of valid
samples written by pyostree's own serializers and by the real ostree.  ``make torture``
(PYOSTREE_TORTURE=1) runs 10,000 inputs per parser; ``make test`` a slice.  Seeded by
PYOSTREE_TORTURE_SEED (hypothesis' derandomize), so a failure replays.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from conftest import REAL_OSTREE, needs_ostree
from pyostree.errors import OstreeError
from pyostree.store import gvariant
from pyostree.store import objects as obj
from torture import EXAMPLES, SEED

pytestmark = [pytest.mark.torture]

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=list(HealthCheck))
CODEC_ERRORS = (OstreeError, gvariant.GVariantError)


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    b = bytearray(data)
    for kind, pos, val in ops:
        if not b:
            b.append(val & 0xFF)
            continue
        p = pos % len(b)
        if kind == 0:
            b[p] ^= 1 << (val % 8)
        elif kind == 1:
            b[p] = val & 0xFF
        elif kind == 2:
            del b[p:]
        elif kind == 3:
            b[p:p] = bytes([val & 0xFF]) * (val % 9 + 1)
        elif kind == 4:
            del b[p:p + val % 16 + 1]
        else:
            b[p:p + 4] = (val * 0x01000193 & 0xFFFFFFFF).to_bytes(4, "little")  # a wild offset/length
    return bytes(b)


def inputs(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    ops = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1 << 20), st.integers(0, 1 << 32)),
                   min_size=1, max_size=6)
    mutated = st.builds(_mutate, st.sampled_from(samples), ops)
    return st.one_of(mutated, mutated, mutated, st.binary(max_size=600))


def _only(errors: tuple[type[BaseException], ...], fn: Callable[[], Any]) -> None:
    try:
        fn()
    except errors:
        pass


# ---------------------------------------------------------------------------
# valid samples


def _commit() -> bytes:
    md = [("version", gvariant.Variant("s", "1")), ("ostree.ref-binding", gvariant.Variant("as", ["a", "b"]))]
    return obj.Commit(md, "ab" * 32, [], "subject", "body", 1600000000, "cd" * 32, "ef" * 32).serialize()


def _dirtree() -> bytes:
    return obj.DirTree([("a", "11" * 32), ("bb", "22" * 32)], [("d", "33" * 32, "44" * 32)]).serialize()


def _dirmeta() -> bytes:
    return obj.DirMeta(0, 0, 0o40755, [(b"user.x\0", b"v"), (b"security.selinux\0", b"ctx")]).serialize()


def _headers() -> list[bytes]:
    reg = obj.FileInfo(0o100644, 1, 2, 42, "", [(b"user.a\0", b"1")])
    lnk = obj.FileInfo(0o120777, 0, 0, 0, "target/x", [])
    out = [obj.zlib_file_header(reg) + zlib.compress(b"x" * 42)[2:-4], obj.zlib_file_header(lnk),
           obj.file_header(reg), obj.file_header(lnk)]
    return out


SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"


def _summary() -> bytes:
    refs = [("main", (123, bytes(range(32)), [("ostree.commit.timestamp", gvariant.Variant("t", 5))])),
            ("other", (7, bytes(32), []))]
    md = [("ostree.summary.last-modified", gvariant.Variant("t", 1)),
          ("ostree.static-deltas", gvariant.Variant("a{sv}", []))]
    return gvariant.serialize(SUMMARY_TYPE, (refs, md))


@pytest.fixture(scope="module")
def real_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Objects, a summary and a static delta written by the real ostree (when it is here)."""
    out: dict[str, list[bytes]] = {"commit": [_commit()], "dirtree": [_dirtree()], "dirmeta": [_dirmeta()],
                                   "summary": [_summary()], "superblock": [], "part": []}
    if REAL_OSTREE is None:
        return out
    d = tmp_path_factory.mktemp("fuzzsamples")
    tree = d / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("hello\n" * 50)
    repo = d / "repo"
    ostree = [REAL_OSTREE, f"--repo={repo}"]
    subprocess.run([REAL_OSTREE, "init", f"--repo={repo}", "--mode=archive"], check=True)
    for i in range(2):
        (tree / f"g{i}").write_bytes(bytes(range(256)) * (i + 3))
        subprocess.run([*ostree, "commit", "-b", "main", f"--tree=dir={tree}"], check=True, capture_output=True)
    subprocess.run([*ostree, "static-delta", "generate", "--min-fallback-size=0", "main"], check=True,
                   capture_output=True)
    subprocess.run([*ostree, "summary", "-u"], check=True)
    for p in (repo / "objects").glob("*/*"):
        kind = p.suffix[1:]
        out.setdefault(kind, []).append(p.read_bytes())
    for p in (repo / "deltas").glob("*/*/*"):
        out["superblock" if p.name == "superblock" else "part"].append(p.read_bytes())
    out["summary"].append((repo / "summary").read_bytes())
    return out


# ---------------------------------------------------------------------------
# GVariant codec and object formats

GV_TYPES = ["s", "ay", "as", "a{sv}", "v", "(tuuuusa(ayay))", "(uuuusa(ayay))", obj.COMMIT_TYPE,
            obj.DIRTREE_TYPE, obj.DIRMETA_TYPE, SUMMARY_TYPE, "mav", "(ybt)", "a(sayay)", "a{s(tt)}"]


@given(data=inputs([_commit(), _dirtree(), _dirmeta(), _summary(), *_headers()]),
       type_string=st.sampled_from(GV_TYPES))
@FUZZ
@seed(SEED)
def test_fuzz_gvariant(data: bytes, type_string: str) -> None:
    def go() -> None:
        value = gvariant.deserialize(type_string, data)
        gvariant.is_normal_form(type_string, data)
        gvariant.print_value(type_string, value)
        gvariant.byteswap(type_string, value)
    _only(CODEC_ERRORS, go)


@given(text=st.one_of(st.text(max_size=80), st.sampled_from([
    "{'a': <1>}", "@a{sv} {}", "[<(1, 'x')>]", "('s', [byte 0x01], {'k': <@mv nothing>})", "<<<<<1>>>>>"])),
    type_string=st.sampled_from([None, "a{sv}", "v", "as", "(sv)", "mi"]))
@FUZZ
@seed(SEED)
def test_fuzz_gvariant_text(text: str, type_string: str | None) -> None:
    _only(CODEC_ERRORS, lambda: gvariant.parse_text(text, type_string))


def _metadata_parsers(kind: str, data: bytes) -> None:
    from pyostree.store.verify import validate_metadata_structure

    ot = obj.ObjectType(kind)
    parse = {"commit": obj.Commit.parse, "dirtree": obj.DirTree.parse, "dirmeta": obj.DirMeta.parse}[kind]
    _only(CODEC_ERRORS, lambda: parse(data))
    _only(CODEC_ERRORS, lambda: validate_metadata_structure(ot, data))


@pytest.mark.parametrize("kind", ["commit", "dirtree", "dirmeta"])
def test_fuzz_metadata_objects(kind: str, real_samples: dict[str, list[bytes]]) -> None:
    @given(data=inputs(real_samples[kind]))
    @FUZZ
    @seed(SEED)
    def run(data: bytes) -> None:
        _metadata_parsers(kind, data)
    run()


def test_fuzz_file_headers(real_samples: dict[str, list[bytes]]) -> None:
    from pyostree.tree.checkout_write import _archive_header

    samples = _headers() + real_samples.get("filez", [])

    @given(data=inputs(samples))
    @FUZZ
    @seed(SEED)
    def run(data: bytes) -> None:
        def zlib_header() -> None:
            _hlen, variant = obj.parse_lenprefixed_header(data, "fuzz")
            obj.parse_zlib_file_header(variant, "fuzz")

        def plain_header() -> None:
            _hlen, variant = obj.parse_lenprefixed_header(data, "fuzz")
            obj.parse_file_header(variant, "fuzz")

        _only((OstreeError,), zlib_header)
        _only((OstreeError,), plain_header)
        _only((OstreeError,), lambda: _archive_header(data, "fuzz"))
        _only((OstreeError,), lambda: obj.filemeta_parse(data, "fuzz"))
    run()


def test_fuzz_filez_objects_in_a_repo(tmp_path: Path) -> None:
    """Whole archive objects through the repo's reader and fsck's verifier (header, deflate)."""
    from pyostree.store.repo import Repo, RepoMode
    from pyostree.store.verify import verify_object

    repo = Repo.create(str(tmp_path / "repo"), RepoMode.ARCHIVE)
    with repo.transaction():
        csum = repo.write_content(obj.FileInfo(0o100644, 0, 0, 300), b"abc" * 100)
    path = tmp_path / "repo" / obj.object_relpath(csum, obj.ObjectType.FILE, archive=True)
    good = path.read_bytes()

    @given(data=inputs([good]))
    @settings(parent=FUZZ, max_examples=max(EXAMPLES // 10, 50))
    @seed(SEED)
    def run(data: bytes) -> None:
        path.write_bytes(data)
        repo._meta_cache.clear()
        _only((OstreeError,), lambda: verify_object(repo, obj.ObjectType.FILE, csum))
    run()


# ---------------------------------------------------------------------------
# summaries, static deltas


def test_fuzz_summary(real_samples: dict[str, list[bytes]]) -> None:
    from pyostree.remote.pull import parse_summary_refs
    from pyostree.remote.summary import format_summary

    @given(data=inputs(real_samples["summary"]))
    @FUZZ
    @seed(SEED)
    def run(data: bytes) -> None:
        _only((OstreeError,), lambda: parse_summary_refs(data, "fuzz"))
        _only((OstreeError,), lambda: format_summary(data))
    run()


@needs_ostree
def test_fuzz_delta_superblock_and_parts(real_samples: dict[str, list[bytes]]) -> None:
    from pyostree.remote.deltas.apply import _execute
    from pyostree.remote.deltas.format import decode_part, parse_superblock

    assert real_samples["superblock"] and real_samples["part"]

    @given(data=inputs(real_samples["superblock"]))
    @FUZZ
    @seed(SEED)
    def superblocks(data: bytes) -> None:
        _only((OstreeError,), lambda: parse_superblock(data))
    superblocks()

    objects = [("ab" * 32, obj.ObjectType.FILE), ("cd" * 32, obj.ObjectType.DIR_TREE)]

    @given(data=inputs(real_samples["part"]))
    @FUZZ
    @seed(SEED)
    def parts(data: bytes) -> None:
        def go() -> None:
            payload = decode_part(data, None, "fuzz")
            _execute(None, objects, payload, "fuzz")
        _only((OstreeError,), go)
    parts()


# ---------------------------------------------------------------------------
# keyfiles, tar/pax, OCI


KEYFILE = b"""# a comment
[core]
repo_version=1
mode=archive-z2
zlib-level=3
min-free-space-percent=3

[remote "origin"]
url=http://example.com/repo
gpg-verify=false
branches=a;b;c;
x-escape=tab\\there\\nnewline\\\\
"""


@given(data=inputs([KEYFILE]))
@FUZZ
@seed(SEED)
def test_fuzz_keyfile(data: bytes) -> None:
    from pyostree.store.keyfile import KeyFile

    def go() -> None:
        kf = KeyFile.parse(data.decode("utf-8", "surrogateescape"), "fuzz")
        for g in kf.groups():
            for k in kf.keys(g):
                kf.get(g, k)
                _only((OstreeError,), lambda: kf.get_bool(g, k))  # noqa: B023
                _only((OstreeError,), lambda: kf.get_int(g, k))  # noqa: B023
                _only((OstreeError,), lambda: kf.get_list(g, k))  # noqa: B023
        kf.to_text() if hasattr(kf, "to_text") else None
    _only((OstreeError,), go)


def _tar_sample() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo("./d")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
        f = tarfile.TarInfo("./d/f")
        f.size = 5
        f.pax_headers = {"SCHILY.xattr.user.k": "v", "uid": "7"}
        t.addfile(f, io.BytesIO(b"hello"))
        s = tarfile.TarInfo("./d/s")
        s.type = tarfile.SYMTYPE
        s.linkname = "f" * 120  # a GNU/pax long link
        t.addfile(s)
        h = tarfile.TarInfo("./d/h")
        h.type = tarfile.LNKTYPE
        h.linkname = "./d/f"
        t.addfile(h)
    return buf.getvalue()


@given(data=inputs([_tar_sample()]))
@FUZZ
@seed(SEED)
def test_fuzz_tar_and_pax(data: bytes) -> None:
    from pyostree.tree.tarimport import archive_entries

    def go() -> None:
        for e in archive_entries(io.BytesIO(data)):
            r = getattr(e, "reader", None)
            if r is not None:
                r.read()
    _only((OstreeError,), go)


def test_fuzz_tar_into_a_repo(tmp_path: Path) -> None:
    """The whole import (entries, xattrs, ids, hardlinks) into a repo's tree."""
    from pyostree.store.repo import Repo, RepoMode
    from pyostree.tree.commit import MutableTree
    from pyostree.tree.tarimport import import_archive_to_mtree

    repo = Repo.create(str(tmp_path / "repo"), RepoMode.ARCHIVE)

    @given(data=inputs([_tar_sample()]))
    @settings(parent=FUZZ, max_examples=max(EXAMPLES // 10, 50))
    @seed(SEED)
    def run(data: bytes) -> None:
        with repo.transaction():
            _only((OstreeError,), lambda: import_archive_to_mtree(repo, io.BytesIO(data), MutableTree(),
                                                                  autocreate_parents=True))
    run()


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True),
                        st.text(max_size=20), st.sampled_from(["sha256:" + "a" * 64, "sha256:../x", "linux"]))
    return st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.sampled_from(
                                                         ["manifests", "digest", "size", "mediaType", "annotations",
                                                          "platform", "rootfs", "diff_ids", "layers", "config",
                                                          "org.opencontainers.image.ref.name", "os",
                                                          "architecture"]), c, max_size=5)), max_leaves=20)


OCI_INDEX = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": "sha256:" + "a" * 64, "size": 10,
                                                "annotations": {"org.opencontainers.image.ref.name": "t"}}]}
OCI_CONFIG = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                 "diff_ids": ["sha256:" + "b" * 64]}}


@given(value=st.one_of(_json_values(), st.just(OCI_INDEX), st.just(OCI_CONFIG)),
       raw=inputs([json.dumps(OCI_INDEX).encode(), json.dumps(OCI_CONFIG).encode()]),
       tag=st.sampled_from([None, "t", "x"]))
@FUZZ
@seed(SEED)
def test_fuzz_oci_manifests_and_configs(value: Any, raw: bytes, tag: str | None) -> None:
    from pyostree.oci.source import (
        Descriptor,
        ImageSource,
        _json,
        _load_diff_ids,
        _select_from_index,
    )

    src = ImageSource("oci")
    _only((OstreeError,), lambda: _select_from_index(src, value, tag, "fuzz"))
    _only((OstreeError,), lambda: Descriptor.parse(value, "fuzz"))
    for cfg in (raw, json.dumps(value, default=str).encode()):
        src.config_bytes = cfg
        _only((OstreeError,), lambda: _load_diff_ids(src))
    _only((OstreeError,), lambda: _json(raw, "fuzz"))
