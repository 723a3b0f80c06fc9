"""Errors name what and where: the entry, object, path and attribute, as ostree's do."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree, needs_root

pytestmark = needs_ostree
Run = Callable[..., Result]


def _tar(path: Path, pax: dict[str, str]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo("./")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        t.addfile(d)
        ti = tarfile.TarInfo("./file")
        ti.size = 3
        ti.pax_headers = pax
        t.addfile(ti, io.BytesIO(b"hi\n"))
    return path


@needs_root
@pytest.mark.parametrize("mode,xattr", [("bare", "user.big"), ("bare-user", "user.ostreemeta")])
def test_70k_pax_xattr_names_entry_object_and_attribute(py: Run, c: Run, tmp_path: Path, mode: str,
                                                        xattr: str) -> None:
    tar = _tar(tmp_path / "t.tar", {"SCHILY.xattr.user.big": "v" * 70000})
    for tool, name in ((py, "ours"), (c, "theirs")):
        repo = tmp_path / name
        tool("init", f"--repo={repo}", f"--mode={mode}")
        r = tool(f"--repo={repo}", "commit", "-b", "main", f"--tree=tar={tar}", check=False)
        assert r.rc == 1 and f"fsetxattr({xattr}): Argument list too long" in r.err, r
        if tool is py:
            assert "Archive entry './file'" in r.err and "Writing content object " in r.err, r.err
            assert "Traceback" not in r.err
            c(f"--repo={repo}", "fsck")


def test_xattr_name_with_nul_in_tar(py: Run, c: Run, tmp_path: Path) -> None:
    tar = _tar(tmp_path / "t.tar", {"SCHILY.xattr.user.a\0b": "v"})
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    r = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=tar={tar}", check=False)
    assert r.rc == 1, r
    assert r.err == "error: Archive entry './file': Invalid xattr name b'user.a\\x00b' (empty or with a NUL byte)\n"
    # the real ostree (libarchive) refuses it too, without naming the entry
    c("init", f"--repo={tmp_path / 'theirs'}", "--mode=archive")
    assert "Invalid pax extended attributes" in c(f"--repo={tmp_path / 'theirs'}", "commit", "-b", "main",
                                                 f"--tree=tar={tar}", check=False).err


@needs_root
def test_checkout_of_hostile_xattr_name_names_path_and_attribute(py: Run, tmp_path: Path) -> None:
    """A dirmeta whose xattr name has a NUL inside (only a hostile repo has one)."""
    from pyostree.store import gvariant
    from pyostree.store import objects as obj
    from pyostree.store.repo import Repo, RepoMode

    path = tmp_path / "repo"
    repo = Repo.create(str(path), RepoMode.ARCHIVE)
    with repo.transaction():
        bad = gvariant.serialize(obj.DIRMETA_TYPE, (obj._be32(0), obj._be32(0), obj._be32(0o40755),
                                                    [(b"user.a\0b\0", b"v")]))
        bad_meta = repo.write_metadata(obj.ObjectType.DIR_META, bad)
        good_meta = repo.write_dirmeta(obj.DirMeta(0, 0, 0o40755))
        sub = repo.write_dirtree(obj.DirTree())
        root = repo.write_dirtree(obj.DirTree([], [("sub", sub, bad_meta)]))
        commit = repo.write_commit(obj.Commit([], None, [], "s", "", 0, root, good_meta))
    repo.close()
    r = py(f"--repo={path}", "checkout", commit, str(tmp_path / "co"), check=False)
    assert r.rc == 1, r
    assert "/sub" in r.err and "user.a" in r.err and "NUL" in r.err and "ValueError" not in r.err, r.err
