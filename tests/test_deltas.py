"""Static deltas: pyostree's deltas are accepted by the real ostree and vice versa."""

from __future__ import annotations

import filecmp
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree
from pyostree.remote import deltas
from pyostree.remote.deltas.apply import _bspatch as bspatch
from pyostree.store import objects as obj
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo

pytestmark = needs_ostree

Run = Callable[..., Result]


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)

    def walk(d: filecmp.dircmp[str]) -> bool:
        if d.left_only or d.right_only or d.funny_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(d.left, d.right, d.common_files, shallow=False)
        if mismatch or errors:
            return False
        return all(walk(s) for s in d.subdirs.values())
    return walk(cmp)


def _two_commits(c: Run, tmp: Path, mode: str = "archive") -> tuple[Path, str, str]:
    repo = tmp / "repo"
    c("init", f"--repo={repo}", f"--mode={mode}")
    t = tmp / "t"
    (t / "sub").mkdir(parents=True)
    rng = random.Random(7)
    big = bytes(rng.getrandbits(8) for _ in range(300_000))
    (t / "a").write_text("hello\n")
    (t / "sub" / "big").write_bytes(big)
    (t / "sub" / "other").write_bytes(bytes(rng.getrandbits(8) for _ in range(60_000)))
    (t / "link").symlink_to("a")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={t}", "-m", "one")
    old = c(f"--repo={repo}", "rev-parse", "main").out.strip()
    (t / "a").write_text("hello again\n")
    mod = bytearray(big)
    mod[150_000:150_000] = b"inserted" * 500
    (t / "sub" / "big").write_bytes(bytes(mod))
    other = bytearray((t / "sub" / "other").read_bytes())
    other[10] ^= 0xFF
    (t / "sub" / "other").write_bytes(bytes(other))
    (t / "sub" / "new").write_text("new file\n")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={t}", "-m", "two")
    new = c(f"--repo={repo}", "rev-parse", "main").out.strip()
    return repo, old, new


def _checkout_equal(c: Run, r1: Path, r2: Path, rev: str, tmp: Path) -> bool:
    c(f"--repo={r1}", "checkout", "-U", rev, tmp / "co1")
    c(f"--repo={r2}", "checkout", "-U", rev, tmp / "co2")
    return _same_tree(tmp / "co1", tmp / "co2")


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_pyostree_delta_applied_by_ostree(py: Run, c: Run, tmp_path: Path, mode: str) -> None:
    repo, old, new = _two_commits(c, tmp_path)
    name = f"{old}-{new}"
    if mode == "archive":
        # ostree runs open/bspatch operations only into bare repositories, so
        # its own FROM-TO deltas of modified files cannot go into an archive
        # repo, with or without --disable-bsdiff (rollsum also opens): ours
        # use rollsum for exactly the files ostree's do, and a from-scratch
        # delta (whole objects only) is what an archive client can take
        r_ostree = c(f"--repo={repo}", "static-delta", "generate", "--disable-bsdiff", "main")
        r_ours = py(f"--repo={repo}", "static-delta", "generate", "--disable-bsdiff", "main")
        assert "rollsum=1 objects, 294124 bytes" in r_ostree.err
        assert "rollsum=1 objects, 294124 bytes" in r_ours.err
        py(f"--repo={repo}", "static-delta", "generate", "--empty", "main")
        dst = tmp_path / "dst"
        c("init", f"--repo={dst}", f"--mode={mode}")
        c(f"--repo={dst}", "static-delta", "apply-offline", repo / deltas.delta_relpath(None, new))
        assert "no errors found" in c(f"--repo={dst}", "fsck").out
        assert _checkout_equal(c, repo, dst, new, tmp_path)
        return
    out = py(f"--repo={repo}", "static-delta", "generate", "main").out
    assert f"  From: {old}\n  To:   {new}\n" in out
    # ostree reads our superblock and parts and prints the same as we do
    cshow = c(f"--repo={repo}", "static-delta", "show", name).out
    pshow = py(f"--repo={repo}", "static-delta", "show", name).out
    assert cshow == pshow
    assert "Endianness: little" in cshow
    assert "bspatch=0" not in cshow
    dst = tmp_path / "dst"
    c("init", f"--repo={dst}", f"--mode={mode}")
    c(f"--repo={dst}", "pull-local", repo, old)
    c(f"--repo={dst}", "static-delta", "apply-offline", repo / deltas.delta_relpath(old, new))
    assert "no errors found" in c(f"--repo={dst}", "fsck").out
    assert _checkout_equal(c, repo, dst, new, tmp_path)


def test_scratch_and_inline_delta_applied_by_ostree(py: Run, c: Run, tmp_path: Path) -> None:
    repo, _old, new = _two_commits(c, tmp_path)
    py(f"--repo={repo}", "static-delta", "generate", "--empty", "--inline", "--max-chunk-size=0", "main")
    rel = deltas.delta_relpath(None, new)
    assert sorted(p.name for p in (repo / rel).iterdir()) == ["superblock"]  # parts are inline
    # (ostree's own show cannot read inline parts; ours can)
    assert "From <scratch>" in py(f"--repo={repo}", "static-delta", "show", new).out
    dst = tmp_path / "dst"
    c("init", f"--repo={dst}", "--mode=bare-user")
    c(f"--repo={dst}", "static-delta", "apply-offline", repo / rel / "superblock")
    assert "no errors found" in c(f"--repo={dst}", "fsck").out
    assert _checkout_equal(c, repo, dst, new, tmp_path)


@pytest.mark.parametrize("extra", [[], ["--disable-bsdiff"], ["--max-bsdiff-size=10000"]])
def test_ostree_delta_applied_by_pyostree(py: Run, c: Run, tmp_path: Path, extra: list[str]) -> None:
    """ostree's rollsum (o/w/r/R/c) and bsdiff (B) operations are applied too."""
    repo, old, new = _two_commits(c, tmp_path, mode="bare-user")
    c(f"--repo={repo}", "static-delta", "generate", *extra, "main")
    name = f"{old}-{new}"
    assert py(f"--repo={repo}", "static-delta", "show", name).out == \
        c(f"--repo={repo}", "static-delta", "show", name).out
    dst = tmp_path / "dst"
    py("init", f"--repo={dst}", "--mode=archive")
    py(f"--repo={dst}", "pull-local", repo, old)
    py(f"--repo={dst}", "static-delta", "apply-offline", repo / deltas.delta_relpath(old, new))
    assert "no errors found" in c(f"--repo={dst}", "fsck").out
    assert _checkout_equal(c, repo, dst, new, tmp_path)


def test_list_and_delete_match_ostree(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _two_commits(c, tmp_path)
    assert py(f"--repo={repo}", "static-delta", "list").out == "(No static deltas)\n"
    assert c(f"--repo={repo}", "static-delta", "list").out == "(No static deltas)\n"
    py(f"--repo={repo}", "static-delta", "generate", "main")
    c(f"--repo={repo}", "static-delta", "generate", "--empty", "main")
    assert sorted(py(f"--repo={repo}", "static-delta", "list").out.split()) == \
        sorted(c(f"--repo={repo}", "static-delta", "list").out.split()) == sorted([f"{old}-{new}", new])
    py(f"--repo={repo}", "static-delta", "delete", new)
    assert c(f"--repo={repo}", "static-delta", "list").out == f"{old}-{new}\n"
    r = py(f"--repo={repo}", "static-delta", "delete", new, check=False)
    assert r.rc == 1 and r.err == f"error: Can't find delta {new}\n"
    r = py(f"--repo={repo}", "static-delta", "show", "GARBAGE", check=False)
    assert "Invalid rev GARBAGE" in r.err
    out = py(f"--repo={repo}", "static-delta", "generate", "--if-not-exists", "main").out
    assert out == f"Delta {old}-{new} already exists.\n"


def test_corrupted_part_is_rejected_without_writes(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _two_commits(c, tmp_path)
    py(f"--repo={repo}", "static-delta", "generate", "main")
    ddir = repo / deltas.delta_relpath(old, new)
    part = ddir / "0"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    dst = tmp_path / "dst"
    py("init", f"--repo={dst}", "--mode=archive")
    py(f"--repo={dst}", "pull-local", repo, old)
    before = sorted(p.relative_to(dst) for p in (dst / "objects").rglob("*"))
    r = py(f"--repo={dst}", "static-delta", "apply-offline", ddir, check=False)
    assert r.rc == 1
    assert str(ddir) in r.err and "Checksum mismatch in static delta part" in r.err
    assert "Traceback" not in r.err
    assert sorted(p.relative_to(dst) for p in (dst / "objects").rglob("*")) == before
    # the real ostree rejects it as well
    assert c(f"--repo={dst}", "static-delta", "apply-offline", ddir, check=False).rc == 1


def test_library_roundtrip_superblock(c: Run, tmp_path: Path) -> None:
    repo_path, old, new = _two_commits(c, tmp_path)
    c(f"--repo={repo_path}", "static-delta", "generate", "--swap-endianness", "main")
    with Repo.open(str(repo_path)) as repo:
        assert deltas.list_deltas(repo) == [f"{old}-{new}"]
        sb = deltas.parse_superblock((repo_path / deltas.delta_relpath(old, new, "superblock")).read_bytes())
        assert sb.from_ == old and sb.to == new and sb.endianness == "big"
        assert sb.commit == repo.load_metadata(ObjectType.COMMIT, new)
        assert all(p.size == (repo_path / deltas.delta_relpath(old, new, str(i))).stat().st_size
                   for i, p in enumerate(sb.parts))
    for n in (0, 1, 127, 128, 300, 1 << 40):
        assert deltas.read_varuint(obj.varuint64(n), 0) == (n, len(obj.varuint64(n)))


def test_pull_local_require_static_deltas(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _two_commits(c, tmp_path)
    dst = tmp_path / "dst"
    py("init", f"--repo={dst}", "--mode=bare-user")
    py(f"--repo={dst}", "pull-local", repo, old)
    r = py(f"--repo={dst}", "pull-local", "--require-static-deltas", repo, "main", check=False)
    assert r.rc == 1 and f"Static deltas required, but none found for main to {new}" in r.err
    py(f"--repo={repo}", "static-delta", "generate", "main")
    py(f"--repo={repo}", "summary", "-u")  # writes delta-indexes/ as ostree does
    assert py(f"--repo={repo}", "static-delta", "indexes").out == f"{new}\n"
    py(f"--repo={dst}", "pull-local", "--require-static-deltas", repo, "main")
    assert py(f"--repo={dst}", "rev-parse", "main").out.strip() == new
    assert "no errors found" in c(f"--repo={dst}", "fsck").out
    assert _checkout_equal(c, repo, dst, new, tmp_path)


def test_prune_static_deltas_only(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _two_commits(c, tmp_path)
    py(f"--repo={repo}", "static-delta", "generate", "main")
    py(f"--repo={repo}", "static-delta", "generate", "--empty", "main")
    py(f"--repo={repo}", "static-delta", "generate", "--empty", old)
    r = py(f"--repo={repo}", "prune", "--static-deltas-only", check=False)
    assert r.rc == 1 and "--static-deltas-only requires --delete-commit" in r.err
    py(f"--repo={repo}", "prune", "--static-deltas-only", f"--delete-commit={new}")
    assert c(f"--repo={repo}", "static-delta", "list").out == f"{old}\n"
    assert c(f"--repo={repo}", "rev-parse", "main").out.strip() == new  # commits untouched


def test_bsdiff_streams_roundtrip() -> None:
    rng = random.Random(5)
    for _ in range(100):
        a = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
        b = bytearray(a)
        kind = rng.randint(0, 3)
        if kind == 0:
            b[0:0] = b"aheader\n"
        elif kind == 1:
            b += bytes(40)
        elif kind == 2 and b:
            b[rng.randrange(len(b))] ^= 0x55
        else:
            b = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 60)))
        assert bspatch(a, len(b), deltas.make_bsdiff(a, bytes(b))) == bytes(b)


def test_bad_superblocks_are_clear_errors(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _two_commits(c, tmp_path)
    py(f"--repo={repo}", "static-delta", "generate", "main")
    sb = repo / deltas.delta_relpath(old, new, "superblock")
    data = sb.read_bytes()
    for bad in (data[: len(data) // 3], b"", b"OSTSGNDT" + data[8:40]):
        sb.write_bytes(bad)
        for cmd in (["show", f"{old}-{new}"], ["apply-offline", str(sb.parent)]):
            r = py(f"--repo={repo}", "static-delta", *cmd, check=False)
            assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err, r
