"""fsck: pyostree and the real ostree agree on clean and corrupted repositories."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conftest import needs_root
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store.fsck import FsckOptions, fsck_repo, traverse_commit
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo
from pyostree.store.verify import verify_object

MODES = ["bare", "archive", "bare-user", "bare-user-only"]


def _objpath(repo: Path, csum: str, ext: str) -> Path:
    return repo / "objects" / csum[:2] / f"{csum[2:]}.{ext}"


def _file_ext(repo: Path) -> str:
    return "filez" if "archive" in (repo / "config").read_text() else "file"


def _first_file_checksum(repo: Path) -> str:
    ext = _file_ext(repo)
    for p in sorted((repo / "objects").glob(f"*/*.{ext}")):
        if not p.is_symlink() and p.stat().st_size > 0:
            return p.parent.name + p.name.split(".")[0]
    raise AssertionError("no file object")


@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_py_fsck_accepts_repo_written_by_ostree(tmp_path, c, py, sample_tree, mode):
    repo = tmp_path / "repo"
    c(f"--repo={repo}", "init", f"--mode={mode}")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x")
    r = py(f"--repo={repo}", "fsck")
    assert "object fsck of 1 commits completed successfully - no errors found." in r.out
    assert r.out.startswith("Validating refs...\n")


@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_real_fsck_accepts_repo_written_by_pyostree(tmp_path, c, py, sample_tree, mode):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", f"--mode={mode}")
    py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x")
    py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "y")
    assert c(f"--repo={repo}", "fsck").rc == 0
    r = py(f"--repo={repo}", "fsck", "-q")
    assert r.out.endswith("object fsck of 2 commits completed successfully - no errors found.\n")
    assert r.out.splitlines()[0].startswith("fsck objects (1/")
    # same lines as the real ostree prints
    assert r.out == c(f"--repo={repo}", "fsck", "-q").out


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_corrupted_content_named_like_ostree(tmp_path, c, py, sample_tree, mode):
    repo = tmp_path / "repo"
    c(f"--repo={repo}", "init", f"--mode={mode}")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x")
    csum = _first_file_checksum(repo)
    p = _objpath(repo, csum, _file_ext(repo))
    if mode == "archive":  # trailing bytes after the deflate stream go unnoticed, as in ostree
        p.unlink()
        p.write_bytes(b"whoops\n")
    else:
        with open(p, "ab") as f:
            f.write(b"corrupted")
    for run in (c, py):
        r = run(f"--repo={repo}", "fsck", check=False)
        assert r.rc == 1
        assert f"fsck content object {csum}: " in r.err
        assert r.err.startswith("error: In commits ")
        assert "Traceback" not in r.err


def test_delete_marks_commit_partial_then_pull_repairs(tmp_path, py, sample_tree):
    src = tmp_path / "src"
    repo = tmp_path / "repo"
    py(f"--repo={src}", "init", "--mode=archive")
    rev = py(f"--repo={src}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x").out.strip()
    py(f"--repo={repo}", "init", "--mode=archive")
    py(f"--repo={repo}", "pull-local", str(src))
    csum = _first_file_checksum(repo)
    p = _objpath(repo, csum, "filez")
    p.unlink()
    p.write_bytes(b"whoops\n")
    r = py(f"--repo={repo}", "fsck", "--delete", check=False)
    assert r.rc == 1
    assert f"Marking commit as partial: {rev}" in r.err
    assert not p.exists()
    assert (repo / "state" / f"{rev}.commitpartial").read_bytes() == b"f"
    r = py(f"--repo={repo}", "fsck", check=False)
    assert r.rc == 1 and "error: 1 partial commits from fsck-detected corruption" in r.err
    py(f"--repo={repo}", "pull-local", str(src))
    assert p.exists()
    assert not (repo / "state" / f"{rev}.commitpartial").exists()
    assert py(f"--repo={repo}", "fsck").rc == 0


def test_missing_object_and_missing_commit(tmp_path, py, sample_tree):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", "--mode=bare-user")
    rev = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x").out.strip()
    csum = _first_file_checksum(repo)
    _objpath(repo, csum, "file").unlink()
    r = py(f"--repo={repo}", "fsck", "-q", check=False)
    assert r.rc == 1
    assert f"Object missing in commits {rev}: {csum}.file" in r.err
    assert f"Marking commit as partial: {rev}" in r.err
    _objpath(repo, rev, "commit").unlink()
    r = py(f"--repo={repo}", "fsck", "-q", check=False)
    assert r.rc == 1
    assert f"error: Loading commit for ref main: No such metadata object {rev}.commit" in r.err


def test_truncated_dirtree_and_empty_commit(tmp_path, c, py, sample_tree):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", "--mode=archive")
    rev = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x").out.strip()
    with Repo.open(str(repo)) as r:
        root = r.load_commit(rev).root_contents
    p = _objpath(repo, root, "dirtree")
    data = p.read_bytes()
    p.chmod(0o644)
    p.write_bytes(data[: len(data) // 2])
    for run in (c, py):
        res = run(f"--repo={repo}", "fsck", "-q", check=False)
        assert res.rc == 1 and root in res.err and "Traceback" not in res.err
    p.write_bytes(data)
    _objpath(repo, rev, "commit").write_bytes(b"")
    res = py(f"--repo={repo}", "fsck", "-q", check=False)
    assert res.rc == 1
    assert "Corrupted commit object; checksum expected" in res.err


def test_non_normal_form_and_path_traversal_detected(tmp_path):
    repo_path = tmp_path / "repo"
    r = Repo.create(str(repo_path))
    # a dirtree naming "../afile": checksum fine, structure not
    fcsum = "a" * 64
    bad = gvariant.serialize(obj.DIRTREE_TYPE, ([("../afile", bytes.fromhex(fcsum))], []))
    csum = hashlib.sha256(bad).hexdigest()
    # non-normal form: a dirmeta with trailing garbage padding (valid sha, invalid variant)
    nonnormal = obj.DirMeta(0, 0, 0o40755).serialize() + b"\0"
    ncsum = hashlib.sha256(nonnormal).hexdigest()
    for c_, d, ext in ((csum, bad, "dirtree"), (ncsum, nonnormal, "dirmeta")):
        os.makedirs(repo_path / "objects" / c_[:2], exist_ok=True)
        _objpath(repo_path, c_, ext).write_bytes(d)
    with pytest.raises(Exception) as ei:
        verify_object(r, ObjectType.DIR_TREE, csum)
    assert "Invalid / in filename ../afile" in str(ei.value) and f"{csum}.dirtree" in str(ei.value)
    with pytest.raises(Exception) as ei:
        verify_object(r, ObjectType.DIR_META, ncsum)
    assert "Not normal form" in str(ei.value) or "Doesn't match" in str(ei.value)
    r.close()


def test_traverse_and_library_api(tmp_path, py, sample_tree):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", "--mode=bare-user")
    py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x")
    rev = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "y").out.strip()
    with Repo.open(str(repo)) as r:
        reach: set[tuple[str, ObjectType]] = set()
        traverse_commit(r, rev, 0, reach)
        assert sum(1 for _, t in reach if t is ObjectType.COMMIT) == 1
        reach_all: set[tuple[str, ObjectType]] = set()
        traverse_commit(r, rev, -1, reach_all)
        assert sum(1 for _, t in reach_all if t is ObjectType.COMMIT) == 2
        assert set(r.iter_objects()) == reach_all
        import io

        out, err = io.StringIO(), io.StringIO()
        assert fsck_repo(r, FsckOptions(quiet=True), out, err) == 2
        assert err.getvalue() == ""


def test_add_tombstones(tmp_path, py, sample_tree):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", "--mode=archive")
    first = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x").out.strip()
    second = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "y").out.strip()
    _objpath(repo, first, "commit").unlink()
    r = py(f"--repo={repo}", "fsck", "--add-tombstones")
    assert f"Adding tombstone for commit {second}" in r.out
    assert "tombstone-commits=true" in (repo / "config").read_text()
    assert _objpath(repo, second, "tombstone-commit").exists()
