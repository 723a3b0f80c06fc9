"""commit --tree=tar=: same trees as the real ostree; hostile archives are refused."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import needs_root


def _build_inputs(tmp_path: Path) -> Path:
    foo = tmp_path / "foo"
    (foo / "usr/bin").mkdir(parents=True)
    (foo / "usr/lib").mkdir()
    (foo / "usr/local/bin").mkdir(parents=True)
    (foo / "usr/bin/foo").write_text("contents\n")
    (foo / "usr/bin/foo0").write_text("foo0\n")
    os.link(foo / "usr/bin/foo", foo / "usr/bin/bar")
    os.link(foo / "usr/bin/foo0", foo / "usr/local/bin/baz0")
    os.symlink("foo", foo / "usr/bin/sl")
    os.link(foo / "usr/bin/sl", foo / "usr/local/bin/slhl", follow_symlinks=False)
    (foo / "usr/bin/setuidme").write_text("setuidme\n")
    (foo / "usr/bin/skipme").write_text("skipme\n")
    lib = foo / "usr/lib/libfoo.so"
    lib.write_text("a library\n")
    os.setxattr(lib, "user.foo", b"bar\x00\xff")
    subprocess.run(["tar", "-czf", str(tmp_path / "foo.tar.gz"), "."], cwd=foo, check=True)
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--format=pax", "-cf", str(tmp_path / "foox.tar"),
                    "."], cwd=foo, check=True)
    names = subprocess.run(["find", "."], cwd=foo, check=True, capture_output=True).stdout
    subprocess.run(["cpio", "-o", "-H", "newc", "-O", str(tmp_path / "foo.cpio")], cwd=foo, input=names,
                   check=True, capture_output=True)
    (tmp_path / "so.txt").write_text("2048 /usr/bin/setuidme\n")
    (tmp_path / "sk.txt").write_text("/usr/bin/skipme\n")
    subprocess.run(["tar", "-cf", str(tmp_path / "empty.tar"), "-T", "/dev/null"], check=True)
    return tmp_path


ARGS = [
    ["--statoverride=so.txt", "--skip-list=sk.txt"],
    ["--tar-autocreate-parents", "--owner-uid=7", "--tar-pathname-filter=^,foo/"],
    ["--tar-autocreate-parents", "--tar-pathname-filter=/bin/,/sbin/"],
    ["--tar-autocreate-parents", "--owner-gid=9", "--no-xattrs"],
]


@needs_root
@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_same_tree_as_ostree(tmp_path, c, py, mode):
    d = _build_inputs(tmp_path)
    cr, pr = d / "c", d / "p"
    c(f"--repo={cr}", "init", f"--mode={mode}")
    py(f"--repo={pr}", "init", f"--mode={mode}")
    for archive in ("foo.tar.gz", "foox.tar", "foo.cpio", "empty.tar"):
        for args in ARGS:
            if archive == "empty.tar" and "--tar-autocreate-parents" not in args:
                continue
            a = c(f"--repo={cr}", "commit", "--orphan", *args, f"--tree=tar={archive}",
                  "--timestamp=2020-01-01 00:00:00 +0000", cwd=d).out
            b = py(f"--repo={pr}", "commit", "--orphan", *args, f"--tree=tar={archive}",
                   "--timestamp=2020-01-01 00:00:00 +0000", cwd=d).out
            assert a == b, (archive, args)
    assert c(f"--repo={pr}", "fsck", "-q").rc == 0


def test_stdin_and_missing_parent(tmp_path, py):
    d = _build_inputs(tmp_path)
    repo = d / "r"
    py(f"--repo={repo}", "init", "--mode=archive")
    data = (d / "foo.tar.gz").read_bytes()
    a = subprocess.run(["python", "-m", "pyostree", f"--repo={repo}", "commit", "--orphan",
                        "--tree=tar=-", "--timestamp=2020-01-01 00:00:00 +0000"], input=data,
                       capture_output=True, check=True).stdout
    b = py(f"--repo={repo}", "commit", "--orphan", f"--tree=tar={d / 'foo.tar.gz'}",
           "--timestamp=2020-01-01 00:00:00 +0000").out
    assert a.decode() == b
    sub = d / "partial.tar"
    subprocess.run(["tar", "-cf", str(sub), "usr/bin/foo"], cwd=d / "foo", check=True)
    r = py(f"--repo={repo}", "commit", "--orphan", f"--tree=tar={sub}", check=False)
    assert r.rc == 1 and "No such file or directory: usr" in r.err


def _tar_with(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(data[m.name]) if m.name in data else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.size = size
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti


@pytest.mark.parametrize("members", [
    [_member("../evil", size=1)],
    [_member("a/../../evil", size=1)],
    [_member("ok", size=1), _member("link", tarfile.LNKTYPE, "../../etc/passwd")],
    [_member("dev", tarfile.CHRTYPE)],
], ids=["dotdot", "nested-dotdot", "hardlink-out", "device"])
def test_hostile_archives_refused(tmp_path, py, members):
    repo = tmp_path / "r"
    py(f"--repo={repo}", "init", "--mode=archive")
    arc = tmp_path / "bad.tar"
    arc.write_bytes(_tar_with(members, {m.name: b"x" for m in members if m.size}))
    before = sorted(p.name for p in tmp_path.iterdir())
    r = py(f"--repo={repo}", "commit", "-b", "x", "--tar-autocreate-parents", f"--tree=tar={arc}", check=False)
    assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (repo / "refs/heads/x").exists()


def test_absolute_names_are_made_relative(tmp_path, py, c):
    repo = tmp_path / "r"
    py(f"--repo={repo}", "init", "--mode=archive")
    arc = tmp_path / "abs.tar"
    arc.write_bytes(_tar_with([_member("/abs/file", size=2), _member("/../up", size=2)],
                              {"/abs/file": b"hi", "/../up": b"yo"}))
    py(f"--repo={repo}", "commit", "-b", "x", "--tar-autocreate-parents", f"--tree=tar={arc}")
    out = c(f"--repo={repo}", "ls", "-R", "x").out
    assert "/abs/file" in out and "/up" in out


def test_non_utf8_names_and_targets_refused(tmp_path, py):
    repo = tmp_path / "r"
    py(f"--repo={repo}", "init", "--mode=archive")
    for i, ti in enumerate([_member("caf\udce9", size=1), _member("l", tarfile.SYMTYPE, "caf\udce9")]):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tf:
            tf.addfile(ti, io.BytesIO(b"x") if ti.size else None)
        arc = tmp_path / f"n{i}.tar"
        arc.write_bytes(buf.getvalue())
        r = py(f"--repo={repo}", "commit", "-b", "x", f"--tree=tar={arc}", check=False)
        assert r.rc == 1 and "Invalid UTF-8" in r.err and "Traceback" not in r.err
