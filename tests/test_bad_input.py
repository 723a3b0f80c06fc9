"""Bad input through the CLI: a clean ``error: ...`` naming what is wrong, exit 1, no traceback.

Each case damages a small repository in one way (a corrupted or truncated
object, a ref to a missing commit, garbage in a ref file or in the config) and
runs the commands that must read the damaged part.  The commands run through
the CLI entry point in-process (an unexpected exception fails the test, as a
traceback would); a few also run as real subprocesses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result
from test_commit_compat import pyrun

Run = Callable[..., Result]


@pytest.fixture
def repo(tmp_path: Path, py: Run) -> Path:
    r = tmp_path / "repo"
    py("init", f"--repo={r}", "--mode=archive")
    t = tmp_path / "tree"
    (t / "d" / "e").mkdir(parents=True)
    (t / "d" / "f").write_text("f\n")
    (t / "d" / "e" / "g").write_text("g\n")
    (t / "top").write_text("top\n")
    py(f"--repo={r}", "commit", "-b", "main", "-s", "one", "--add-metadata-string=foo=bar", t)
    return r


def _objects(repo: Path, ext: str) -> list[Path]:
    return sorted((repo / "objects").glob(f"*/*.{ext}"))


def _csum(p: Path) -> str:
    return p.parent.name + p.stem


def _expect_error(py: Run, repo: Path, args: list[str], *names: str, cwd: Path | None = None) -> Result:
    r = pyrun(f"--repo={repo}", *args, check=False, cwd=cwd)
    assert r.rc == 1, (args, r)
    assert "Traceback" not in r.err, (args, r.err)
    last = r.err.strip().splitlines()[-1] if r.err.strip() else ""
    assert last.startswith("error: "), (args, r.err)
    for n in names:
        assert n in r.err, (args, n, r.err)
    return r


def _subdir_tree(py: Run, repo: Path) -> Path:
    """The dirtree of /d (not the root, which commit --tree=ref reuses lazily)."""
    line = next(ln for ln in py(f"--repo={repo}", "ls", "-C", "main", "/d").out.splitlines() if ln.endswith(" /d"))
    csum = line.split()[4]
    return repo / "objects" / csum[:2] / f"{csum[2:]}.dirtree"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_dirtree(tmp_path: Path, py: Run, repo: Path, damage: str) -> None:
    path = _subdir_tree(py, repo)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\xff" * 40, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    csum = _csum(path)
    _expect_error(py, repo, ["ls", "-R", "main"], csum)
    _expect_error(py, repo, ["checkout", "main", str(tmp_path / "co")], csum)
    _expect_error(py, repo, ["commit", "-b", "n", "--tree=ref=main", "--owner-uid=5"], csum)
    _expect_error(py, repo, ["commit", "-b", "n", "--tree=ref=main", "--bootable"])
    _expect_error(py, repo, ["fsck"], csum)
    assert not (repo / "refs" / "heads" / "n").exists()


def test_corrupted_content_object(tmp_path: Path, py: Run, repo: Path) -> None:
    for p in _objects(repo, "filez"):
        data = bytearray(p.read_bytes())
        data[-1] ^= 0xFF
        p.write_bytes(bytes(data))
    _expect_error(py, repo, ["fsck"])
    _expect_error(py, repo, ["checkout", "main", str(tmp_path / "co")], "Corrupted content object")
    for p in _objects(repo, "filez"):
        p.write_bytes(b"\x00\x00\x00\xff" + b"\0" * 8)
    r = _expect_error(py, repo, ["checkout", "main", str(tmp_path / "co2")], "Corrupted content object")
    assert any(_csum(p) in r.err for p in _objects(repo, "filez"))
    # the same through a real subprocess
    r = py(f"--repo={repo}", "checkout", "main", str(tmp_path / "co3"), check=False)
    assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_commit(tmp_path: Path, py: Run, repo: Path, damage: str) -> None:
    (path,) = _objects(repo, "commit")
    data = path.read_bytes()
    path.write_bytes(b"\x01\x02garbage" if damage == "garbage" else data[:30])
    csum = _csum(path)
    for args in (["log", "main"], ["show", "main"], ["ls", "main"], ["checkout", "main", str(tmp_path / "co")],
                 ["commit", "-b", "x", "--tree=ref=main"], ["commit", "-b", "main", "--keep-metadata=foo",
                                                             str(tmp_path / "tree")],
                 ["commit", "-b", "y", "--base=main", str(tmp_path / "tree")]):
        _expect_error(py, repo, args, csum)
    _expect_error(py, repo, ["fsck"], csum)


def test_ref_to_missing_commit(tmp_path: Path, py: Run, repo: Path) -> None:
    missing = "ab" * 32
    (repo / "refs" / "heads" / "main").write_text(missing + "\n")
    assert py(f"--repo={repo}", "rev-parse", "main").out.strip() == missing
    for args in (["log", "main"], ["show", "main"], ["ls", "main"], ["checkout", "main", str(tmp_path / "co")],
                 ["commit", "-b", "x", "--tree=ref=main"], ["commit", "-b", "y", "--base=main", str(tmp_path / "tree")],
                 ["commit", "-b", "main", "--keep-metadata=foo", str(tmp_path / "tree")]):
        _expect_error(py, repo, args, missing)
    _expect_error(py, repo, ["fsck"], missing)


@pytest.mark.parametrize("content", ["garbage\n", "", "ab" * 31 + "\n", "../../etc/passwd\n", "\xff\xfe"])
def test_garbage_ref_file(tmp_path: Path, py: Run, repo: Path, content: str) -> None:
    (repo / "refs" / "heads" / "main").write_bytes(content.encode("utf-8", "surrogateescape")
                                                  if content != "\xff\xfe" else b"\xff\xfe")
    for args in (["rev-parse", "main"], ["log", "main"], ["commit", "-b", "main", str(tmp_path / "tree")],
                 ["commit", "-b", "x", "--tree=ref=main"]):
        _expect_error(py, repo, args, "main")


@pytest.mark.parametrize(
    "config",
    [b"garbage", b"[core]\nrepo_version=1\nmode=nonsense\n", b"[core]\nmode=bare\n", b"\xff\xfe[core",
     b"[core\nrepo_version=1\n", b"", b"[core]\nrepo_version=2\nmode=bare\n"],
)
def test_garbage_config(tmp_path: Path, py: Run, repo: Path, config: bytes) -> None:
    (repo / "config").write_bytes(config)
    r = py(f"--repo={repo}", "rev-parse", "main", check=False)  # subprocess too
    assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err
    for args in (["rev-parse", "main"], ["commit", "-b", "x", str(tmp_path / "tree")], ["refs"], ["log", "main"]):
        r = _expect_error(py, repo, args)
        assert "config" in r.err or "mode" in r.err or "version" in r.err, r.err


def test_missing_repo_and_bad_args(tmp_path: Path, py: Run, repo: Path) -> None:
    _expect_error(py, tmp_path / "nope", ["log", "main"], "nope")
    _expect_error(py, repo, ["commit", "-b", "x", str(tmp_path / "no-such-dir")], "no-such-dir")
    _expect_error(py, repo, ["commit", "-b", "x", "--parent=nothex", str(tmp_path / "tree")])
    _expect_error(py, repo, ["commit", "-b", "/bad", str(tmp_path / "tree")])
    _expect_error(py, repo, ["commit", "-b", "a//b", str(tmp_path / "tree")])
    _expect_error(py, repo, ["commit", "-b", "x", "--add-metadata=k=[1, 'a']", str(tmp_path / "tree")])
    _expect_error(py, repo, ["commit", "-b", "x", "--add-metadata-string=novalue", str(tmp_path / "tree")])
    _expect_error(py, repo, ["commit", "-b", "x", "--timestamp=not a date", str(tmp_path / "tree")])
    _expect_error(py, repo, ["commit", "-b", "x", "--tree=bogus=1"], "bogus")
    _expect_error(py, repo, ["commit", "-b", "x", f"--statoverride={tmp_path / 'none'}", str(tmp_path / "tree")])
    so = tmp_path / "so"
    so.write_text("nospace\n")
    _expect_error(py, repo, ["commit", "-b", "x", f"--statoverride={so}", str(tmp_path / "tree")])
    assert not (repo / "refs" / "heads" / "x").exists()


@pytest.mark.parametrize("name", ["..", ".", "a/../../escape", ""])
def test_hostile_names_in_dirtree(tmp_path: Path, py: Run, repo: Path, name: str) -> None:
    """A dirtree naming '..' (or a path) is refused before anything is written outside the target."""
    import stat as stat_

    from pyostree.store import refs
    from pyostree.store.objects import Commit, DirMeta, DirTree, FileInfo
    from pyostree.store.repo import Repo

    r = Repo.open(str(repo))
    with r.transaction():
        content = b"escaped\n"
        fc = r.write_content(FileInfo(stat_.S_IFREG | 0o644, 0, 0, len(content)), content)
        dm = r.write_dirmeta(DirMeta(0, 0, stat_.S_IFDIR | 0o755))
        inner = r.write_dirtree(DirTree([(name, fc)], []))
        root = r.write_dirtree(DirTree([], [("sub", inner, dm)]))
        csum = r.write_commit(Commit([], None, [], "evil", "", 0, root, dm))
        refs.set_ref(r, None, "evil", csum)
    r.close()
    target = tmp_path / "deep" / "co"
    target.parent.mkdir()
    _expect_error(py, repo, ["checkout", "evil", str(target)], "filename")
    _expect_error(py, repo, ["ls", "-R", "evil"], "filename")
    _expect_error(py, repo, ["commit", "-b", "n", "--tree=ref=evil", "--owner-uid=1"], "filename")
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escape").exists()
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) in ([], ["co"])
