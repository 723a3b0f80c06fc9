"""composefs images mounted by the real kernel (EROFS loop mount + overlayfs data-only lower layer)
against the hardlink checkout of the same commit."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_overlayfs, needs_root
from pyostree.composefs.mount import mount_composefs, unmount
from test_checkout import make_rich_tree

pytestmark = [needs_root, needs_overlayfs]


def entries(root: Path) -> dict[str, dict[str, Any]]:
    """What a composefs mount must reproduce of a checkout, per path (inode numbers aside)."""
    out: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        names = sorted(dirnames + filenames)
        if dirpath == str(root):
            names = [".", *names]
        for name in names:
            p = dirpath if name == "." else os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except FileNotFoundError:  # listed by readdir, not found by lookup (overlayfs)
                out[os.path.relpath(p, root)] = {"readdir_only": True}
                continue
            xattrs = {n: os.getxattr(p, n, follow_symlinks=False)
                      for n in sorted(os.listxattr(p, follow_symlinks=False)) if not n.startswith("security.")}
            e: dict[str, Any] = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "xattrs": xattrs}
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    e["sha256"] = hashlib.sha256(f.read()).hexdigest()
                e["size"] = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[os.path.relpath(p, root)] = e
    return out


def assert_same(a: Path, b: Path) -> None:
    ea, eb = entries(a), entries(b)
    assert sorted(ea) == sorted(eb)
    diffs = {k: (ea[k], eb[k]) for k in ea if ea[k] != eb[k]}
    assert not diffs


@contextmanager
def mounted(image: Path, objects: Path, mnt: Path) -> Iterator[Path]:
    mnt.mkdir(exist_ok=True)
    mount_composefs(str(image), str(objects), str(mnt))
    try:
        yield mnt
    finally:
        unmount(str(mnt))


def make_composefs_tree(root: Path, mode: str) -> Path:
    make_rich_tree(root, mode)
    for d in ("usr", "etc", "boot", "var", "sysroot"):  # the image adds them when missing
        (root / d).mkdir(exist_ok=True)
    deep = root / "usr"
    for i in range(40):
        deep = deep / f"level-{i}"
    deep.mkdir(parents=True)
    (deep / "bottom").write_text("deep\n")
    big = root / "usr" / "bigdir"
    big.mkdir()
    for i in range(3000):  # directory entries over many EROFS blocks
        (big / f"entry-with-a-longish-name-{i:05d}").write_text(f"{i % 7}\n")
    os.symlink("x" * 3000, root / "usr" / "longlink")
    os.symlink("ünï/cødé", root / "usr" / "ünï-link")
    (root / "usr" / "blocks").write_bytes(os.urandom(3 * 4096 + 5))
    (root / "usr" / "hardlink-a").write_text("linked\n")
    os.link(root / "usr" / "hardlink-a", root / "usr" / "hardlink-b")
    if mode != "bare-user-only":
        os.setxattr(root / "usr" / "blocks", "user.shared", b"same")
        os.setxattr(root / "usr" / "hardlink-a", "user.shared", b"same")
        os.setxattr(root / "etc", "trusted.overlay.opaque", b"y")  # escaped in the image
        os.setxattr(root / "usr" / "bigdir", "user.big", b"v" * 2000)
    return root


@pytest.mark.parametrize("mode", ["bare", "bare-user", "bare-user-only"])
def test_mount_equals_hardlink_checkout(py, tmp_path: Path, mode: str) -> None:
    repo = tmp_path / "repo"
    py("--repo", repo, "init", f"--mode={mode}")
    tree = make_composefs_tree(tmp_path / "tree", mode)
    args = ["--canonical-permissions"] if mode == "bare-user-only" else []
    commit = py("--repo", repo, "commit", *args, "-b", "main", "--generate-composefs-metadata", tree).out.strip()
    co = tmp_path / "co"
    py("--repo", repo, "checkout", "-U" if mode != "bare" else "-H", "main", co)
    image = tmp_path / "main.cfs"
    py("--repo", repo, "checkout", "--composefs", "main", image)
    with mounted(image, repo / "objects", tmp_path / "mnt") as mnt:
        if mode == "bare":
            assert_same(co, mnt)
        else:
            # a -U checkout is owned by the caller and has no xattrs: compare with the commit's
            # own listing for those, and the contents with the checkout
            ea, eb = entries(co), entries(mnt)
            assert sorted(ea) == sorted(eb)
            for k in ea:
                for field in ("sha256", "size", "target"):
                    assert ea[k].get(field) == eb[k].get(field), k
                assert stat.S_IFMT(int(ea[k]["mode"], 8)) == stat.S_IFMT(int(eb[k]["mode"], 8)), k
            ls = py("--repo", repo, "ls", "-R", "main").out
            for line in ls.splitlines():
                mode_s, uid, gid, _size, path = line.split(None, 4)
                path = path.split(" -> ")[0]
                rel = "." if path == "/" else path.lstrip("/")
                assert eb[rel]["uid"] == int(uid) and eb[rel]["gid"] == int(gid), rel
                assert oct(stat.S_IMODE(int(eb[rel]["mode"], 8))) == oct(int(mode_s[1:], 8) & 0o7777), rel
        # each path of a hardlinked pair is its own inode in the image (as in ostree's images),
        # reading the same object
        a, b = os.stat(mnt / "usr/hardlink-a"), os.stat(mnt / "usr/hardlink-b")
        assert (mnt / "usr/hardlink-a").read_bytes() == (mnt / "usr/hardlink-b").read_bytes()
        assert a.st_size == b.st_size
    # the digest recorded at commit time is the image's fs-verity digest
    digest = py("--repo", repo, "show", "--print-hex", "--print-metadata-key", "ostree.composefs.digest.v0",
                commit).out.strip()
    fsv = subprocess.run(["fsverity", "digest", "--compact", str(image)], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert digest == fsv


def test_bad_mount_input_is_an_error(tmp_path: Path) -> None:
    from pyostree.errors import OstreeError

    (tmp_path / "mnt").mkdir()
    (tmp_path / "junk.cfs").write_bytes(b"not an image" * 1000)
    (tmp_path / "objects").mkdir()
    with pytest.raises(OstreeError, match="Mounting composefs image"):
        mount_composefs(str(tmp_path / "junk.cfs"), str(tmp_path / "objects"), str(tmp_path / "mnt"))
    with pytest.raises(OstreeError, match="not a regular file"):
        mount_composefs(str(tmp_path / "nope.cfs"), str(tmp_path / "objects"), str(tmp_path / "mnt"))
    assert not os.path.ismount(tmp_path / "mnt")


def test_100k_file_tree_image_mounts(py, tmp_path: Path) -> None:
    """A 100 000-file commit (100 directories of 1000, 1000 distinct objects) as an image, mounted."""
    from pyostree.store.objects import DirMeta, DirTree, FileInfo
    from pyostree.store.repo import Repo, RepoMode
    from pyostree.tree.commit import write_commit

    repo = Repo.create(str(tmp_path / "repo"), RepoMode.BARE)
    repo.disable_fsync = True
    with repo.transaction():
        objs = [repo.write_content(FileInfo(stat.S_IFREG | 0o644, 0, 0, len(b), "", []), b)
                for b in (b"content %d\n" % i for i in range(1000))]
        meta = repo.write_dirmeta(DirMeta(0, 0, stat.S_IFDIR | 0o755))
        subdirs = []
        for d in range(100):
            files = [(f"file-{i:04d}", objs[(d + i) % 1000]) for i in range(1000)]
            subdirs.append((f"dir-{d:03d}", repo.write_dirtree(DirTree(files, [])), meta))
        root = repo.write_dirtree(DirTree([], subdirs))
        commit = write_commit(repo, parent=None, subject="100k", body="", metadata=[], root_contents=root,
                              root_meta=meta, timestamp=0)
    repo.close()
    image = tmp_path / "big.cfs"
    py("--repo", tmp_path / "repo", "checkout", "--composefs", commit, image)
    with mounted(image, tmp_path / "repo" / "objects", tmp_path / "mnt") as mnt:
        n = 0
        for d in sorted(os.listdir(mnt)):
            if d.startswith("dir-"):
                names = os.listdir(mnt / d)
                assert len(names) == 1000
                n += len(names)
        assert n == 100_000
        assert (mnt / "dir-042" / "file-0999").read_bytes() == b"content %d\n" % ((42 + 999) % 1000)
        assert (mnt / "dir-099" / "file-0000").read_bytes() == b"content 99\n"
        assert stat.S_IMODE((mnt / "dir-007" / "file-0123").stat().st_mode) == 0o644
