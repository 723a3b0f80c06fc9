"""Stored objects are canonical: an archive ``.filez`` is a header and one whole raw-deflate
stream, nothing after it.  Repos are written by the real ostree, then doctored, then served by
a real HTTP server (Python's http.server on 127.0.0.1) or read locally."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, needs_ostree
from httpserve import StaticServer

pytestmark = needs_ostree
Run = Callable[..., Result]


def _ostree(*args: str | Path) -> str:
    assert REAL_OSTREE is not None
    return subprocess.run([REAL_OSTREE, *map(str, args)], capture_output=True, text=True, check=True).stdout


def _objects(repo: Path, ref: str) -> dict[str, str]:
    """path -> content checksum of every file of *ref*."""
    out = {}
    for line in _ostree(f"--repo={repo}", "ls", "-RC", ref).splitlines():
        f = line.split()
        if f[0][0] in "-l":
            out[f[5]] = f[4]
    return out


def _filez(repo: Path, csum: str) -> Path:
    return repo / "objects" / csum[:2] / f"{csum[2:]}.filez"


@pytest.fixture
def doctored(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "small").write_text("hello\n")
    os.symlink("small", tree / "link")
    (tree / "big").write_bytes(os.urandom(17 << 20))  # over the in-memory inflate threshold: spooled
    (tree / "empty").write_bytes(b"")
    repo = tmp_path / "srv" / "repo"
    repo.parent.mkdir()
    _ostree("init", f"--repo={repo}", "--mode=archive")
    _ostree(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}")
    _ostree(f"--repo={repo}", "summary", "-u")
    objs = _objects(repo, "main")
    return repo, objs


@pytest.mark.parametrize("path,garbage", [("/small", b"\0" * (1 << 20)), ("/link", b"x"),
                                          ("/big", b"trailing"), ("/empty", b"\x03\x00")],
                         ids=["small-1MB-zeros", "symlink", "big-spooled", "empty-second-stream"])
@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_http_pull_refuses_trailing_data(py: Run, c: Run, tmp_path: Path, doctored: tuple[Path, dict[str, str]],
                                         path: str, garbage: bytes, mode: str) -> None:
    src, objs = doctored
    with _filez(src, objs[path]).open("ab") as f:
        f.write(garbage)
    dest = tmp_path / "dest"
    py("init", f"--repo={dest}", f"--mode={mode}")
    with StaticServer(src.parent) as srv:
        py(f"--repo={dest}", "remote", "add", "--no-gpg-verify", "origin", f"{srv.url}/repo")
        r = py(f"--repo={dest}", "pull", "origin", "main", check=False)
    assert r.rc == 1, r
    csum = objs[path]
    # the object is named (as a checksum, or by its URL); a small object's garbage is already
    # refused by the fetcher's bound on a .filez body (its header says how big it can be)
    assert csum in r.err or f"objects/{csum[:2]}/{csum[2:]}.filez" in r.err, r.err
    assert "trailing data" in r.err or "exceeded maximum size" in r.err.lower(), r.err
    assert "Traceback" not in r.err
    assert not (dest / "refs" / "remotes" / "origin" / "main").exists()
    assert not _filez(dest, objs[path]).exists()
    # what did get stored is whole: both fscks pass on the destination
    py(f"--repo={dest}", "fsck")
    c(f"--repo={dest}", "fsck")


def test_http_pull_refuses_truncated_stream(py: Run, tmp_path: Path, doctored: tuple[Path, dict[str, str]]) -> None:
    src, objs = doctored
    p = _filez(src, objs["/small"])
    p.write_bytes(p.read_bytes()[:-3])
    dest = tmp_path / "dest"
    py("init", f"--repo={dest}", "--mode=archive")
    with StaticServer(src.parent) as srv:
        py(f"--repo={dest}", "remote", "add", "--no-gpg-verify", "origin", f"{srv.url}/repo")
        r = py(f"--repo={dest}", "pull", "origin", "main", check=False)
    assert r.rc == 1 and objs["/small"] in r.err and "Traceback" not in r.err, r


def test_clean_pull_still_byte_identical(py: Run, c: Run, tmp_path: Path,
                                         doctored: tuple[Path, dict[str, str]]) -> None:
    src, objs = doctored
    dest = tmp_path / "dest"
    py("init", f"--repo={dest}", "--mode=archive")
    with StaticServer(src.parent) as srv:
        py(f"--repo={dest}", "remote", "add", "--no-gpg-verify", "origin", f"{srv.url}/repo")
        py(f"--repo={dest}", "pull", "origin", "main")
    for csum in objs.values():
        assert _filez(dest, csum).read_bytes() == _filez(src, csum).read_bytes()
    c(f"--repo={dest}", "fsck")


def test_fsck_finds_trailing_data_real_ostree_does_not(py: Run, c: Run, tmp_path: Path,
                                                      doctored: tuple[Path, dict[str, str]]) -> None:
    src, objs = doctored
    for path in ("/big", "/small"):  # fsck stops at the first corrupt object, as ostree's
        with _filez(src, objs[path]).open("ab") as f:
            f.write(b"garbage" * 1000)
        r = py(f"--repo={src}", "fsck", check=False)
        assert r.rc == 1, r
        assert objs[path] in r.err and "trailing data" in r.err and "Traceback" not in r.err, r
        # libostree's reader stops at the end of the deflate stream: its fsck passes this repo
        assert c(f"--repo={src}", "fsck", check=False).rc == 0
        if path == "/big":
            _filez(src, objs[path]).write_bytes(_filez(src, objs[path]).read_bytes()[:-7000])
            py(f"--repo={src}", "fsck")
    # reading the object is refused too, naming it
    for args in (["cat", "main", "/small"], ["checkout", "main", str(tmp_path / "co")]):
        r = py(f"--repo={src}", *args, check=False)
        assert r.rc == 1 and "trailing data" in r.err and "Traceback" not in r.err, r


def test_pull_local_untrusted_refuses_trailing_data(py: Run, c: Run, tmp_path: Path,
                                                    doctored: tuple[Path, dict[str, str]]) -> None:
    src, objs = doctored
    with _filez(src, objs["/small"]).open("ab") as f:
        f.write(b"\1\2\3")
    for mode in ("archive", "bare-user"):
        dest = tmp_path / f"dest-{mode}"
        py("init", f"--repo={dest}", f"--mode={mode}")
        r = py(f"--repo={dest}", "pull-local", "--untrusted", str(src), "main", check=False)
        assert r.rc == 1 and objs["/small"] in r.err and "trailing data" in r.err, r
        assert not (dest / "refs" / "heads" / "main").exists()
        c(f"--repo={dest}", "fsck")
    # a trusted pull-local into another mode inflates the object, so it is refused too
    dest = tmp_path / "dest-bare-user-trusted"
    py("init", f"--repo={dest}", "--mode=bare-user")
    r = py(f"--repo={dest}", "pull-local", str(src), "main", check=False)
    assert r.rc == 1 and "trailing data" in r.err, r
    shutil.rmtree(dest)
