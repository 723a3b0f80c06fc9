"""``pyostree checkout`` against the real ``ostree checkout``: same trees for every repo mode and flag.

Each test commits a generated tree with the real ostree, checks it out with
both implementations using the same flags, and compares the two trees
entry by entry (type, mode, owner, xattrs, content, symlink target, device
numbers, and which repository object each file is hardlinked to).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, make_sample_tree, needs_ostree, needs_root

pytestmark = [needs_root, needs_ostree]

MODES = ["bare", "bare-user", "bare-user-only", "archive"]
Run = Callable[..., Result]


# ---------------------------------------------------------------------------
# tree comparison


def _object_inodes(repo: Path) -> dict[tuple[int, int], str]:
    """(dev, ino) -> object name, for loose content objects and the uncompressed cache."""
    out: dict[tuple[int, int], str] = {}
    for sub in ("objects", "uncompressed-objects-cache"):
        base = repo / sub
        if not base.is_dir():
            continue
        for d in os.scandir(base):
            if not d.is_dir(follow_symlinks=False):
                continue
            for e in os.scandir(d.path):
                if e.name.endswith(".file"):
                    st = e.stat(follow_symlinks=False)
                    out[(st.st_dev, st.st_ino)] = f"{sub}/{d.name}/{e.name}"
    return out


def snapshot(root: Path, repo: Path | None = None, *, mtimes: bool = False) -> dict[str, Any]:
    """Everything checkout is responsible for, per path relative to *root*."""
    objs = _object_inodes(repo) if repo is not None else {}
    inode_group: dict[tuple[int, int], str] = {}
    snap: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [".", *sorted(dirnames + filenames)] if dirpath == str(root) else sorted(dirnames + filenames):
            p = os.path.join(dirpath, name) if name != "." else dirpath
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            try:
                names = sorted(os.listxattr(p, follow_symlinks=False))
                xattrs = {n: os.getxattr(p, n, follow_symlinks=False) for n in names
                          if not n.startswith("security.")}
            except OSError:
                xattrs = {}
            entry: dict[str, Any] = {
                "mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "xattrs": xattrs,
            }
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
                key = (st.st_dev, st.st_ino)
                entry["object"] = objs.get(key)
                # hardlinks inside the tree: name the first path of the inode
                entry["link_group"] = inode_group.setdefault(key, rel)
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if mtimes:
                entry["mtime_is_0"] = st.st_mtime == 0
            snap[rel] = entry
    return snap


def assert_same_tree(a: Path, b: Path, repo: Path | None = None, *, mtimes: bool = True) -> None:
    sa, sb = snapshot(a, repo, mtimes=mtimes), snapshot(b, repo, mtimes=mtimes)
    assert sorted(sa) == sorted(sb), "different paths"
    diffs = {k: (sa[k], sb[k]) for k in sa if sa[k] != sb[k]}
    assert not diffs, f"entries differ (pyostree, ostree): {diffs}"


# ---------------------------------------------------------------------------
# fixtures


def make_rich_tree(root: Path, mode: str) -> Path:
    """sample_tree plus owners, setuid/sticky, xattrs, unreadable and empty files, non-ASCII."""
    make_sample_tree(root)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "sgid-dir").mkdir()
    (root / "sgid-dir").chmod(0o2775)
    (root / "sgid-dir" / "f").write_text("in sgid dir\n")
    (root / "worldwritable").mkdir()
    (root / "worldwritable").chmod(0o777)
    owned = root / "owned"
    owned.write_text("owned by someone else\n")
    os.chown(owned, 1234, 5678)
    os.chown(root / "baz" / "alink", 4321, 8765, follow_symlinks=False)
    (root / "another-empty").write_bytes(b"")
    (root / "unreadable").write_text("secret\n")
    (root / "unreadable").chmod(0o200)
    (root / "dup-a").write_text("same content\n")
    (root / "dup-b").write_text("same content\n")
    (root / "ünïcødé-dir").mkdir()
    (root / "ünïcødé-dir" / "日本語").write_text("こんにちは\n")
    if mode != "bare-user-only":
        suid = root / "setuid"
        suid.write_text("#!/bin/sh\n")
        suid.chmod(0o4755)
        os.setxattr(root / "baz" / "cow", "user.checkout-test", b"moo-xattr")
        os.setxattr(root / "baz", "trusted.dirattr", b"dir-xattr")
    return root


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """One repo per mode holding the rich tree as ref ``main``; values: (repo, commit)."""
    import shutil
    import subprocess

    ostree = shutil.which("ostree")
    assert ostree
    base = tmp_path_factory.mktemp("co-repos")
    out: dict[str, tuple[Path, str]] = {}
    for mode in MODES:
        tree = make_rich_tree(base / f"tree-{mode}", mode)
        repo = base / f"repo-{mode}"
        subprocess.run([ostree, "init", f"--repo={repo}", f"--mode={mode}"], check=True)
        cp = subprocess.run([ostree, f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}"],
                            check=True, capture_output=True, text=True)
        out[mode] = (repo, cp.stdout.strip())
    return out


def both(py: Run, c: Run, repo: Path, dest_dir: Path, *args: str) -> tuple[Result, Result, Path, Path]:
    """Run the same checkout with pyostree and ostree into dest_dir/{py,c}."""
    dp, dc = dest_dir / "py", dest_dir / "c"
    rp = py(f"--repo={repo}", "checkout", *args, dp, check=False)
    rc = c(f"--repo={repo}", "checkout", *args, dc, check=False)
    return rp, rc, dp, dc


CASES: list[tuple[str, list[str]]] = [
    ("bare", []), ("bare", ["-U"]), ("bare", ["-C"]), ("bare", ["-H"]), ("bare", ["-U", "-H"]),
    ("bare", ["-M"]), ("bare", ["-z"]), ("bare", ["--subpath=/baz"]), ("bare", ["--subpath=baz/cow"]),
    ("bare", ["-U", "--subpath=/sticky"]), ("bare", ["--fsync=false"]),
    ("bare-user", []), ("bare-user", ["-U"]), ("bare-user", ["-U", "-H"]), ("bare-user", ["-H"]),
    ("bare-user", ["-U", "-M", "-H"]), ("bare-user", ["-U", "-C"]),
    ("bare-user-only", []), ("bare-user-only", ["-H"]), ("bare-user-only", ["-U", "-C"]),
    ("archive", []), ("archive", ["-U"]), ("archive", ["--disable-cache", "-U"]),
    ("archive", ["-C", "--subpath=/baz"]),
]


@pytest.mark.parametrize("mode,flags", CASES, ids=[f"{m}:{' '.join(f) or 'default'}" for m, f in CASES])
def test_same_tree_as_ostree(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]],
                             mode: str, flags: list[str]) -> None:
    repo, commit = repos[mode]
    rp, rc, dp, dc = both(py, c, repo, tmp_path, *flags, commit)
    assert rp.rc == rc.rc, (rp, rc)
    if rc.rc != 0:
        assert rp.err.startswith("error: ")
        return
    # -C checkouts and archive copies get the current time as mtime, as in ostree
    assert_same_tree(dp, dc, repo, mtimes="-C" not in flags)


def test_hardlink_and_mtime_rules(py: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare"]
    dest = tmp_path / "co"
    py(f"--repo={repo}", "checkout", commit, dest)
    assert os.stat(dest / "firstfile").st_nlink > 1
    assert os.stat(dest / "empty").st_nlink == 1  # zero-sized files are always copied
    assert os.stat(dest / "empty").st_size == 0
    assert os.stat(dest / "another-empty").st_nlink == 1
    for p in (dest, dest / "baz", dest / "baz" / "deeper", dest / "firstfile"):
        assert os.stat(p).st_mtime == 0
    assert stat.S_IMODE(os.stat(dest / "sticky").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(dest / "setuid").st_mode) == 0o4755
    assert os.stat(dest / "owned").st_uid == 1234
    assert os.getxattr(dest / "baz" / "cow", "user.checkout-test") == b"moo-xattr"
    assert os.getxattr(dest / "baz", "trusted.dirattr") == b"dir-xattr"


def test_user_mode_strips_setuid_and_copies_unreadable(py: Run, tmp_path: Path,
                                                        repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare-user"]
    dest = tmp_path / "co"
    py(f"--repo={repo}", "checkout", "-U", "-H", commit, dest)
    st = os.stat(dest / "unreadable")
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_nlink == 1
    assert os.stat(dest / "firstfile").st_nlink > 1
    assert stat.S_IMODE(os.stat(dest / "setuid").st_mode) & 0o6000 == 0


@pytest.mark.parametrize("mode,args,msg", [
    ("bare-user", ["-H"], "User repository mode requires user checkout mode to hardlink"),
    ("bare", ["-U", "-H"], "Bare repository mode cannot hardlink in user checkout mode"),
    ("bare", ["--union-identical"], "--union-identical requires --require-hardlinks"),
    ("bare", ["-H", "-C"], "Cannot specify both --require-hardlinks and --force-copy"),
    ("bare", ["--union", "--union-add"], "Cannot specify both --union and --union-add"),
    ("bare", ["--subpath=/enoent"], "No such file or directory: /enoent"),
    ("bare", ["--subpath=/baz/cow/x"], "Not a directory"),
])
def test_errors_like_ostree(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]],
                            mode: str, args: list[str], msg: str) -> None:
    repo, commit = repos[mode]
    rp, rc, _dp, _ = both(py, c, repo, tmp_path, *args, commit)
    assert rc.rc == 1 and msg in rc.err
    assert rp.rc == 1 and msg in rp.err, rp
    assert rp.err.count("\n") == 1 or "Usage" in rp.err


def test_existing_destination(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare"]
    (tmp_path / "py").mkdir()
    (tmp_path / "c").mkdir()
    rp, rc, _, _ = both(py, c, repo, tmp_path, commit)
    assert rc.rc == rp.rc == 1
    assert "File exists" in rp.err and "File exists" in rc.err


def test_allow_noent(py: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare"]
    r = py(f"--repo={repo}", "checkout", "--allow-noent", "--subpath=/enoent", commit, tmp_path / "x")
    assert r.rc == 0 and not (tmp_path / "x").exists()
    # like ostree, -H selects the other code path, where --allow-noent is ignored
    r = py(f"--repo={repo}", "checkout", "-H", "--allow-noent", "--subpath=/enoent", commit,
           tmp_path / "x", check=False)
    assert r.rc == 1 and "No such file or directory" in r.err


def test_subpath_file_into_cwd(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare"]
    for who, run in (("py", py), ("c", c)):
        d = tmp_path / who
        d.mkdir()
        run(f"--repo={repo}", "checkout", "--subpath=/baz/cow", commit, ".", cwd=d)
        assert (d / "cow").read_text() == "moo\n"
    assert_same_tree(tmp_path / "py", tmp_path / "c", repo, mtimes=False)


@pytest.mark.parametrize("mode", ["bare", "bare-user"])
def test_union_modes(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]], mode: str) -> None:
    repo, commit = repos[mode]
    u = ["-U"] if mode != "bare" else []
    results = []
    for who, run in (("py", py), ("c", c)):
        dest = tmp_path / who
        run(f"--repo={repo}", "checkout", *u, commit, dest)
        (dest / "firstfile").unlink()
        (dest / "firstfile").write_text("local edit\n")
        (dest / "extra").write_text("mine\n")
        run(f"--repo={repo}", "checkout", *u, "--union-add", commit, dest)
        assert (dest / "firstfile").read_text() == "local edit\n"
        run(f"--repo={repo}", "checkout", *u, "--union", commit, dest)
        assert (dest / "firstfile").read_text() == "first\n"
        assert (dest / "extra").read_text() == "mine\n"
        # in user mode the copied unreadable file (0200 -> 0600) is not identical: ostree fails too
        r = run(f"--repo={repo}", "checkout", *u, "-H", "--union-identical", commit, dest, check=False)
        results.append((r.rc, r.err.replace("pyostree", "ostree")))
    assert results[0] == results[1]
    assert_same_tree(tmp_path / "py", tmp_path / "c", repo)


def test_union_identical_conflict(py: Run, c: Run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    c("init", f"--repo={repo}", "--mode=bare-user")
    for n, content in ((1, "one"), (2, "two")):
        t = tmp_path / f"t{n}"
        (t / "usr").mkdir(parents=True)
        (t / "usr" / "f").write_text(content)
        (t / "usr" / "empty").write_text("" if n == 1 else "x")
        os.symlink(f"target{n}", t / "usr" / "l")
        c(f"--repo={repo}", "commit", "-b", f"p{n}", f"--tree=dir={t}")
    for who, run in (("py", py), ("c", c)):
        dest = tmp_path / who
        run(f"--repo={repo}", "checkout", "-U", "-H", "--union-identical", "p1", dest)
        run(f"--repo={repo}", "checkout", "-U", "-H", "--union-identical", "p1", dest)
        r = run(f"--repo={repo}", "checkout", "-U", "-H", "--union-identical", "p2", dest, check=False)
        assert r.rc == 1 and "File exists" in r.err, r
        (dest / "usr" / "f").write_text("changed in place")
    assert_same_tree(tmp_path / "py", tmp_path / "c", repo, mtimes=False)


def test_archive_uncompressed_cache(py: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    import shutil

    src, commit = repos["archive"]
    repo = tmp_path / "repo"
    shutil.copytree(src, repo, symlinks=True)
    cache = repo / "uncompressed-objects-cache"
    shutil.rmtree(cache, ignore_errors=True)
    py(f"--repo={repo}", "checkout", "-U", "--disable-cache", commit, tmp_path / "a")
    assert not cache.exists() or not any(cache.iterdir())
    py(f"--repo={repo}", "checkout", "-U", commit, tmp_path / "b")
    cached = list(cache.glob("*/*.file"))
    assert cached
    assert os.stat(tmp_path / "b" / "firstfile").st_nlink == 2
    assert os.stat(tmp_path / "b" / "empty").st_nlink == 1
    assert stat.S_IMODE(os.stat(tmp_path / "b" / "baz" / "cowro").st_mode) == 0o600
    sa = snapshot(tmp_path / "a")
    sb = snapshot(tmp_path / "b")
    assert {k: v.get("sha256") for k, v in sa.items()} == {k: v.get("sha256") for k, v in sb.items()}


def test_parent_repo(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    parent, commit = repos["bare"]
    shadow = tmp_path / "shadow"
    c("init", f"--repo={shadow}", "--mode=bare")
    c(f"--repo={shadow}", "config", "set", "core.parent", str(parent))
    rp, rc, dp, dc = both(py, c, shadow, tmp_path, commit)
    assert rp.rc == rc.rc == 0, (rp, rc)
    assert_same_tree(dp, dc, parent)
    assert os.stat(dp / "firstfile").st_nlink > 1


def test_skip_list(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare"]
    skip = tmp_path / "skip.txt"
    skip.write_text("/baz/cow\n/baz/deeper/\n/sticky\n/nön-äscii ☃\n")
    rp, rc, dp, dc = both(py, c, repo, tmp_path, f"--skip-list={skip}", commit)
    assert rp.rc == rc.rc == 0
    assert not (dp / "baz" / "cow").exists() and not (dp / "baz" / "deeper").exists()
    assert (dp / "sticky").is_dir()  # directories match only with a trailing '/', as in ostree
    assert_same_tree(dp, dc, repo)


def test_from_file_and_stdin(py: Run, c: Run, tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    repo, commit = repos["bare"]
    spec = f"{commit}\0/baz\0main\0/ünïcødé-dir\0".encode()
    (tmp_path / "spec").write_bytes(spec)
    for who, run in (("py", py), ("c", c)):
        dest = tmp_path / who
        dest.mkdir()
        run(f"--repo={repo}", "checkout", "--union", f"--from-file={tmp_path / 'spec'}", dest)
    assert_same_tree(tmp_path / "py", tmp_path / "c", repo)
    d2 = tmp_path / "stdin"
    d2.mkdir()
    py(f"--repo={repo}", "checkout", "--union", "--from-stdin", d2, input=spec.decode())
    assert (d2 / "cow").read_text() == "moo\n" and (d2 / "日本語").exists()


def test_library_api(tmp_path: Path, repos: dict[str, tuple[Path, str]]) -> None:
    from pyostree.store.repo import Repo
    from pyostree.tree.checkout import CheckoutMode, CheckoutOptions, OverwriteMode, checkout_tree

    repo_path, commit = repos["bare-user-only"]
    with Repo.open(str(repo_path)) as repo:
        dest = tmp_path / "lib"
        assert checkout_tree(repo, commit, str(dest), CheckoutOptions(subpath="/baz"))
        assert (dest / "cow").read_text() == "moo\n"
        # bare-user-only always checks out in user mode: hardlinks, no chown needed
        assert os.stat(dest / "cow").st_nlink > 1
        opts = CheckoutOptions(mode=CheckoutMode.USER, overwrite=OverwriteMode.UNION_FILES,
                               filter=lambda path, mode: not path.endswith("/cow"))
        assert checkout_tree(repo, commit, str(tmp_path / "lib2"), opts)
        assert not (tmp_path / "lib2" / "baz" / "cow").exists()
        assert (tmp_path / "lib2" / "baz" / "cowro").exists()
        assert not checkout_tree(repo, commit, str(tmp_path / "nope"),
                                 CheckoutOptions(subpath="/missing", allow_noent=True))


# ---------------------------------------------------------------------------
# the fast readers agree with the strict parsers


@pytest.mark.parametrize("nfiles,namelen", [(0, 1), (1, 1), (3, 200), (300, 40), (2000, 60)])
def test_fast_dirtree_reader_matches_strict_parser(nfiles: int, namelen: int) -> None:
    from pyostree.store.objects import DirTree
    from pyostree.tree.checkout import _fast_dirtree

    csum = hashlib.sha256(b"x").hexdigest()
    files = sorted((f"{i:05d}" + "f" * namelen, csum) for i in range(nfiles))
    dirs = sorted((f"{i:04d}" + "ü" * namelen, csum, csum) for i in range(nfiles // 3 + 1))
    data = DirTree(files, dirs).serialize()
    parsed = DirTree.parse(data)
    assert _fast_dirtree(data) == (parsed.files, parsed.dirs)
    # names that must never be used are left to the strict parser (which rejects them)
    for bad in ("..", ".", "a/b"):
        raw = DirTree([(bad, csum)], []).serialize()
        assert _fast_dirtree(raw) is None
    assert _fast_dirtree(data[:-1]) is None or len(data) < 2


@pytest.mark.parametrize("info", [
    ("reg", 0o100644, 0, 0, 5, "", []),
    ("reg-owned", 0o104755, 1234, 5678, 1 << 33, "", []),
    ("symlink", 0o120777, 0, 0, 0, "../some/target", []),
    ("xattrs", 0o100600, 1, 2, 3, "", [(b"user.a\0", b"v"), (b"trusted.b\0", b"\0\1")]),
    ("long-target", 0o120777, 0, 0, 0, "t" * 300, []),
], ids=lambda i: i[0])
def test_fast_archive_header_matches_strict_parser(info: tuple[Any, ...]) -> None:
    from pyostree.store import objects as obj
    from pyostree.tree.checkout_write import _archive_header

    fi = obj.FileInfo(*info[1:])
    head = obj.zlib_file_header(fi) + b"payload"
    got, hlen = _archive_header(head, "test")
    hl, variant = obj.parse_lenprefixed_header(head, "test")
    assert (got, hlen) == (obj.parse_zlib_file_header(variant, "test"), hl)
    assert head[hlen:] == b"payload"
