"""Hostile input and hostile destinations: clear errors, nothing outside the destination changes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree, needs_root
from pyostree.store import gvariant
from pyostree.store.objects import DIRTREE_TYPE, Commit, DirMeta, FileInfo
from pyostree.store.repo import Repo, RepoMode

pytestmark = [needs_root, needs_ostree]
Run = Callable[..., Result]


def _fingerprint(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = b""
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime_ns, data)
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    o = tmp_path / "outside"
    (o / "sub").mkdir(parents=True)
    (o / "precious").write_text("do not touch\n")
    (o / "sub" / "file").write_text("nested\n")
    (o / "cow").write_text("outside cow\n")
    return o


def _repo_with(c: Run, tmp_path: Path, tree: Path, branch: str = "b") -> Path:
    repo = tmp_path / "repo"
    if not repo.exists():
        c("init", f"--repo={repo}", "--mode=bare")
    c(f"--repo={repo}", "commit", "-b", branch, f"--tree=dir={tree}")
    return repo


def test_union_does_not_follow_existing_dir_symlink(py: Run, c: Run, tmp_path: Path, outside: Path) -> None:
    t = tmp_path / "t"
    (t / "baz").mkdir(parents=True)
    (t / "baz" / "cow").write_text("moo\n")
    (t / "baz" / "new").write_text("new\n")
    repo = _repo_with(c, tmp_path, t)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "baz")
    before = _fingerprint(outside)
    for flags in (["--union"], ["--union-add"], ["-H", "--union-identical"], ["--union", "--whiteouts"]):
        r = py(f"--repo={repo}", "checkout", *flags, "b", dest, check=False)
        assert r.rc == 1 and "symlink" in r.err and "Traceback" not in r.err, (flags, r)
        assert _fingerprint(outside) == before
    assert (dest / "baz").is_symlink()


def test_union_replaces_file_symlink_without_following(py: Run, c: Run, tmp_path: Path,
                                                       outside: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    (t / "cow").write_text("moo\n")
    (t / "empty").touch()
    os.symlink("x", t / "link")
    repo = _repo_with(c, tmp_path, t)
    before = _fingerprint(outside)
    for flags in (["--union"], ["-C", "--union"], ["-U", "--union"]):
        dest = tmp_path / ("dest" + "".join(flags))
        dest.mkdir()
        for n in ("cow", "empty", "link"):
            os.symlink(outside / "cow", dest / n)
        py(f"--repo={repo}", "checkout", *flags, "b", dest)
        assert (dest / "cow").read_text() == "moo\n" and not (dest / "cow").is_symlink()
        assert not (dest / "empty").is_symlink()
        assert os.readlink(dest / "link") == "x"
        assert _fingerprint(outside) == before


@pytest.mark.parametrize("marker,flag", [
    (".wh..", "--whiteouts"),
    (".wh...", "--whiteouts"),
    (".ostree-wh..", "--process-passthrough-whiteouts"),
    (".ostree-wh...", "--process-passthrough-whiteouts"),
])
def test_whiteout_names_stay_in_their_directory(py: Run, c: Run, tmp_path: Path, marker: str,
                                                flag: str) -> None:
    t = tmp_path / "t"
    (t / "layer" / "sub").mkdir(parents=True)
    (t / "layer" / "sub" / marker).touch()
    (t / "keep").write_text("keep\n")
    repo = _repo_with(c, tmp_path, t)
    dest = tmp_path / "dest"
    py(f"--repo={repo}", "checkout", "b", dest)  # plain checkout: the marker is just a file
    assert (dest / "layer" / "sub" / marker).is_file()
    before = _fingerprint(dest)
    r = py(f"--repo={repo}", "checkout", "--union", flag, "b", dest, check=False)
    assert r.rc == 1 and "Invalid" in r.err and "Traceback" not in r.err, r
    after = _fingerprint(dest)
    assert (dest / "keep").read_text() == "keep\n" and (dest / "layer" / "sub").is_dir()
    assert {k for k in before} == {k for k in after}


def test_oci_whiteout_of_symlink_removes_only_the_link(py: Run, c: Run, tmp_path: Path,
                                                       outside: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    (t / ".wh.escape").touch()
    repo = _repo_with(c, tmp_path, t)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "escape")
    before = _fingerprint(outside)
    py(f"--repo={repo}", "checkout", "--union", "--whiteouts", "b", dest)
    assert not (dest / "escape").exists() and not (dest / "escape").is_symlink()
    assert _fingerprint(outside) == before


def _hostile_commit(repo_path: Path, files: list[tuple[str, str]], dirs: list[tuple[str, str, str]]) -> str:
    """Write a commit whose root dirtree has the given (unvalidated) entries."""
    with Repo.open(str(repo_path)) as repo, repo.transaction():
        content = repo.write_content(FileInfo(0o100644, 0, 0, 5), b"evil\n")
        meta = repo.write_dirmeta(DirMeta(0, 0, 0o40755))
        empty = repo.write_metadata(
            __import__("pyostree.store.objects", fromlist=["ObjectType"]).ObjectType.DIR_TREE,
            gvariant.serialize(DIRTREE_TYPE, ([], [])))
        raw = gvariant.serialize(DIRTREE_TYPE, (
            [(n, bytes.fromhex(content if c == "C" else c)) for n, c in files],
            [(n, bytes.fromhex(empty if t == "E" else t), bytes.fromhex(meta)) for n, t, _ in dirs],
        ))
        from pyostree.store.objects import ObjectType

        tree = repo.write_metadata(ObjectType.DIR_TREE, raw)
        commit = Commit([], None, [], "hostile", "", 0, tree, meta)
        return repo.write_commit(commit)


@pytest.mark.parametrize("files,dirs", [
    ([("../escaped", "C")], []),
    ([("a/b", "C")], []),
    ([("..", "C")], []),
    ([], [("..", "E", "")]),
    ([], [("../escaped-dir", "E", "")]),
    ([("", "C")], []),
])
def test_hostile_dirtree_names(py: Run, tmp_path: Path, files: list[tuple[str, str]],
                               dirs: list[tuple[str, str, str]]) -> None:
    repo = tmp_path / "repo"
    Repo.create(str(repo), RepoMode.BARE).close()
    commit = _hostile_commit(repo, files, dirs)
    work = tmp_path / "work"
    (work / "dest-parent").mkdir(parents=True)
    before = _fingerprint(tmp_path / "work")
    for flags in ([], ["-C"], ["-U"]):
        r = py(f"--repo={repo}", "checkout", *flags, commit, work / "dest-parent" / "dest", check=False)
        assert r.rc == 1 and "Invalid" in r.err and "Traceback" not in r.err, r
        assert not (work / "dest-parent" / "escaped").exists()
        assert not (work / "escaped").exists() and not (work / "escaped-dir").exists()
        assert set(_fingerprint(tmp_path / "work")) <= set(before) | {"dest-parent/dest"}


def test_corrupt_dirtree_is_a_clear_error(py: Run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    Repo.create(str(repo), RepoMode.BARE).close()
    commit = _hostile_commit(repo, [("ok", "C")], [])
    # truncate the root dirtree object in place
    with Repo.open(str(repo)) as r:
        root = r.load_commit(commit).root_contents
    p = repo / "objects" / root[:2] / f"{root[2:]}.dirtree"
    data = p.read_bytes()
    p.chmod(0o644)
    p.write_bytes(data[: len(data) // 2])
    r2 = py(f"--repo={repo}", "checkout", commit, tmp_path / "dest", check=False)
    assert r2.rc == 1 and r2.err.startswith("error: ") and "Traceback" not in r2.err, r2
    assert hashlib.sha256(data).hexdigest() == root
