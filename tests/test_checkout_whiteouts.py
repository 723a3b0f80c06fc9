"""Whiteouts on checkout: OCI ``.wh.`` processing and overlayfs passthrough (``.ostree-wh.NAME``)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import Result, needs_ostree, needs_overlayfs, needs_root
from test_checkout import assert_same_tree, snapshot

pytestmark = [needs_root, needs_ostree]
Run = Callable[..., Result]


def _commit(c: Run, repo: Path, branch: str, tree: Path) -> None:
    c(f"--repo={repo}", "commit", "-b", branch, f"--tree=dir={tree}")


@pytest.fixture
def repo(c: Run, tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    c("init", f"--repo={r}", "--mode=bare")
    return r


# ---------------------------------------------------------------------------
# OCI / aufs whiteouts


def _oci_layers(c: Run, repo: Path, tmp: Path) -> None:
    base = tmp / "base"
    (base / "baz" / "another").mkdir(parents=True)
    (base / "baz" / "cow").write_text("moo\n")
    (base / "baz" / "another" / "y").write_text("y\n")
    (base / "deeper" / "sub").mkdir(parents=True)
    (base / "deeper" / "sub" / "f").write_text("f\n")
    (base / "firstfile").write_text("first\n")
    _commit(c, repo, "base", base)
    ov = tmp / "overlay"
    (ov / "baz" / "another").mkdir(parents=True)
    (ov / "baz" / ".wh.cow").touch()
    (ov / ".wh.deeper").touch()
    (ov / "baz" / "another" / ".wh..wh..opq").touch()
    (ov / "baz" / "another" / "new-in-opaque").write_text("n\n")
    (ov / "anewdir").mkdir()
    (ov / "anewdir" / "blah").touch()
    (ov / "anewfile").touch()
    _commit(c, repo, "overlay", ov)
    conv = tmp / "convert"
    conv.mkdir()
    (conv / "baz").write_text("baz to file\n")
    os.symlink("anewfile", conv / "anewdir")
    _commit(c, repo, "convert", conv)


def test_oci_whiteouts_like_ostree(py: Run, c: Run, repo: Path, tmp_path: Path) -> None:
    _oci_layers(c, repo, tmp_path)
    for who, run in (("py", py), ("c", c)):
        dest = tmp_path / f"co-{who}"
        for branch in ("base", "overlay"):
            run(f"--repo={repo}", "checkout", "--union", "--whiteouts", branch, dest)
        assert not (dest / "baz" / "cow").exists()
        assert not (dest / "baz" / ".wh.cow").exists()
        assert not (dest / "deeper").exists()
        assert not (dest / "baz" / "another" / "y").exists()
        assert (dest / "baz" / "another" / "new-in-opaque").exists()
        assert (dest / "anewdir" / "blah").exists()
    assert_same_tree(tmp_path / "co-py", tmp_path / "co-c", repo)
    # replacing directories with a file and a symlink
    for who, run in (("py", py), ("c", c)):
        dest = tmp_path / f"conv-{who}"
        for branch in ("base", "overlay", "convert"):
            run(f"--repo={repo}", "checkout", "--union", "--whiteouts", branch, dest)
        assert (dest / "baz").is_file() and (dest / "anewdir").is_symlink()
    assert_same_tree(tmp_path / "conv-py", tmp_path / "conv-c", repo)


def test_whiteouts_not_processed_by_default(py: Run, c: Run, repo: Path, tmp_path: Path) -> None:
    _oci_layers(c, repo, tmp_path)
    for who, run in (("py", py), ("c", c)):
        dest = tmp_path / f"co-{who}"
        for branch in ("base", "overlay"):
            run(f"--repo={repo}", "checkout", "--union", branch, dest)
        assert (dest / "baz" / ".wh.cow").exists() and (dest / "baz" / "cow").exists()
    assert_same_tree(tmp_path / "co-py", tmp_path / "co-c", repo)


# ---------------------------------------------------------------------------
# overlayfs passthrough whiteouts


def _passthrough_tree(root: Path) -> Path:
    wd = root / "whiteouts"
    wd.mkdir(parents=True)
    (wd / ".ostree-wh.ro").touch()
    (wd / ".ostree-wh.ro").chmod(0o400)
    (wd / ".ostree-wh.open").touch()
    (wd / ".ostree-wh.open").chmod(0o777)
    (wd / ".ostree-wh.owned").touch()
    os.chown(wd / ".ostree-wh.owned", 1234, 5678)
    (wd / ".ostree-wh.owned").chmod(0o640)
    (wd / "regular").write_text("stays\n")
    os.symlink("somewhere", wd / ".ostree-wh.link")  # symlinks are never whiteouts
    (root / "top-level").write_text("top\n")
    return root


@pytest.fixture
def wrepo(c: Run, repo: Path, tmp_path: Path) -> Path:
    _commit(c, repo, "wh", _passthrough_tree(tmp_path / "wtree"))
    return repo


def _is_whiteout(p: Path) -> bool:
    st = os.lstat(p)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_passthrough_devices(py: Run, c: Run, wrepo: Path, tmp_path: Path) -> None:
    rp = py(f"--repo={wrepo}", "checkout", "--process-passthrough-whiteouts", "wh", tmp_path / "py")
    c(f"--repo={wrepo}", "checkout", "--process-passthrough-whiteouts", "wh", tmp_path / "c")
    assert rp.rc == 0
    wd = tmp_path / "py" / "whiteouts"
    for name in ("ro", "open", "owned"):
        assert _is_whiteout(wd / name), name
        assert not (wd / f".ostree-wh.{name}").exists()
    assert stat.S_IMODE(os.lstat(wd / "ro").st_mode) == 0o400
    assert stat.S_IMODE(os.lstat(wd / "open").st_mode) == 0o777  # not masked by umask 022
    st = os.lstat(wd / "owned")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o640)
    assert (wd / ".ostree-wh.link").is_symlink()
    assert (wd / "regular").read_text() == "stays\n"
    assert_same_tree(tmp_path / "py", tmp_path / "c", wrepo)


def test_passthrough_user_mode(py: Run, c: Run, wrepo: Path, tmp_path: Path) -> None:
    py(f"--repo={wrepo}", "checkout", "-U", "--process-passthrough-whiteouts", "wh", tmp_path / "py")
    c(f"--repo={wrepo}", "checkout", "-U", "--process-passthrough-whiteouts", "wh", tmp_path / "c")
    wd = tmp_path / "py" / "whiteouts"
    assert all(_is_whiteout(wd / n) for n in ("ro", "open", "owned"))
    # pyostree always applies the stored mode; ostree skips the chmod in user mode, so
    # its 0777 device comes out as 0755 under umask 022 (documented difference)
    assert stat.S_IMODE(os.lstat(wd / "open").st_mode) == 0o777
    assert stat.S_IMODE(os.lstat(tmp_path / "c" / "whiteouts" / "open").st_mode) == 0o755
    assert os.lstat(wd / "owned").st_uid == os.getuid()
    sp, sc = snapshot(tmp_path / "py"), snapshot(tmp_path / "c")
    sp.pop("whiteouts/open")
    sc.pop("whiteouts/open")
    assert sp == sc


def test_passthrough_off_by_default(py: Run, wrepo: Path, tmp_path: Path) -> None:
    py(f"--repo={wrepo}", "checkout", "wh", tmp_path / "co")
    wd = tmp_path / "co" / "whiteouts"
    assert (wd / ".ostree-wh.ro").is_file() and not (wd / "ro").exists()


def test_passthrough_overwrite_modes(py: Run, wrepo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "co"
    py(f"--repo={wrepo}", "checkout", "--subpath=/whiteouts", "wh", dest)
    (dest / "ro").write_text("a regular file where the whiteout goes\n")
    r = py(f"--repo={wrepo}", "checkout", "--union-add", "--process-passthrough-whiteouts",
           "--subpath=/whiteouts", "wh", dest)
    assert r.rc == 0 and (dest / "ro").is_file()  # kept
    assert _is_whiteout(dest / "open")  # added
    r = py(f"--repo={wrepo}", "checkout", "-H", "--union-identical", "--process-passthrough-whiteouts",
           "--subpath=/whiteouts", "wh", dest, check=False)
    assert r.rc == 1 and "existing destination file /ro is not a whiteout device" in r.err, r
    r = py(f"--repo={wrepo}", "checkout", "--union", "--process-passthrough-whiteouts",
           "--subpath=/whiteouts", "wh", dest)
    assert _is_whiteout(dest / "ro") and stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o400
    # now identical: accepted
    py(f"--repo={wrepo}", "checkout", "-H", "--union-identical", "--process-passthrough-whiteouts",
       "--subpath=/whiteouts", "wh", dest)
    os.chmod(dest / "open", 0o700)
    r = py(f"--repo={wrepo}", "checkout", "-H", "--union-identical", "--process-passthrough-whiteouts",
           "--subpath=/whiteouts", "wh", dest, check=False)
    assert r.rc == 1 and "/open does not match mode 777" in r.err, r
    os.chmod(dest / "open", 0o777)
    os.chown(dest / "owned", 1, 1)
    r = py(f"--repo={wrepo}", "checkout", "-H", "--union-identical", "--process-passthrough-whiteouts",
           "--subpath=/whiteouts", "wh", dest, check=False)
    assert r.rc == 1 and "/owned does not match gid 5678" in r.err, r
    # default mode: an existing name is an error
    r = py(f"--repo={wrepo}", "checkout", "--process-passthrough-whiteouts", "--subpath=/whiteouts",
           "wh", tmp_path / "fresh")
    r = py(f"--repo={wrepo}", "checkout", "--union-add", "--subpath=/whiteouts", "wh", tmp_path / "fresh")
    (tmp_path / "fresh" / "ro").unlink()
    (tmp_path / "fresh" / "ro").touch()
    for d in ("open",):
        (tmp_path / "fresh" / d).unlink()
    r = py(f"--repo={wrepo}", "checkout", "--process-passthrough-whiteouts", "--subpath=/whiteouts",
           "wh", tmp_path / "fresh", check=False)
    assert r.rc == 1 and "File exists" in r.err


def test_passthrough_user_xattr_is_a_clear_error(py: Run, c: Run, repo: Path, tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    (t / ".ostree-wh.x").touch()
    os.setxattr(t / ".ostree-wh.x", "user.note", b"v")
    _commit(c, repo, "x", t)
    r = py(f"--repo={repo}", "checkout", "--process-passthrough-whiteouts", "x", tmp_path / "co",
           check=False)
    assert r.rc == 1 and "user.note" in r.err and "/x" in r.err, r
    assert "Traceback" not in r.err
    # in user mode xattrs are not applied, so it works
    py(f"--repo={repo}", "checkout", "-U", "--process-passthrough-whiteouts", "x", tmp_path / "co-u")
    assert _is_whiteout(tmp_path / "co-u" / "x")


def test_passthrough_empty_name(py: Run, c: Run, repo: Path, tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    (t / ".ostree-wh.").touch()
    _commit(c, repo, "e", t)
    r = py(f"--repo={repo}", "checkout", "--process-passthrough-whiteouts", "e", tmp_path / "co",
           check=False)
    assert r.rc == 1 and "Invalid empty overlayfs whiteout" in r.err


@contextmanager
def _overlay(lowers: list[Path], mnt: Path) -> Iterator[Path]:
    mnt.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=" + ":".join(map(str, lowers)), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@needs_overlayfs
@pytest.mark.parametrize("impl", ["py", "c"])
def test_overlayfs_hides_whited_out_names(py: Run, c: Run, wrepo: Path, tmp_path: Path, impl: str) -> None:
    run = py if impl == "py" else c
    lower = tmp_path / "lower" / "whiteouts"
    lower.mkdir(parents=True)
    for name in ("ro", "open", "owned", "visible"):
        (lower / name).write_text(f"lower {name}\n")
    layer = tmp_path / "layer"
    run(f"--repo={wrepo}", "checkout", "--process-passthrough-whiteouts", "wh", layer)
    with _overlay([layer, tmp_path / "lower"], tmp_path / "mnt") as mnt:
        names = sorted(os.listdir(mnt / "whiteouts"))
        assert names == [".ostree-wh.link", "regular", "visible"]
        assert (mnt / "whiteouts" / "visible").read_text() == "lower visible\n"
        assert not (mnt / "whiteouts" / "ro").exists()
        assert (mnt / "top-level").read_text() == "top\n"
