"""``commit`` compatibility: pyostree and the real ostree get the same commit checksum.

Each test commits the same generated tree with the same flags into a real
ostree repository and a pyostree repository of the same mode, compares the
printed checksums, and runs the real ``ostree fsck`` on pyostree's repository.
pyostree runs in-process here (``pyostree.cli.main.main``) to keep the file fast;
test_bad_input.py and test_write_safety.py run it as a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, needs_ostree, needs_root
from pyostree.cli.main import main as py_main

MODES = ["bare", "bare-user", "bare-user-only", "archive"]
pytestmark = [needs_ostree, needs_root]


# -- runners -------------------------------------------------------------------


@contextlib.contextmanager
def _cwd(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def pyrun(*args: str | os.PathLike[str], cwd: Path | None = None, check: bool = True) -> Result:
    """Run the pyostree CLI in this process."""
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", errors="surrogateescape", write_through=True)
    err = io.TextIOWrapper(err_b, encoding="utf-8", errors="backslashreplace", write_through=True)
    with _cwd(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = py_main([str(a) for a in args])
        out.flush()
        err.flush()
    res = Result(subprocess.CompletedProcess([], rc, out_b.getvalue().decode("utf-8", "replace"),
                                             err_b.getvalue().decode("utf-8", "replace")))
    if check and rc != 0:
        raise AssertionError(f"pyostree {' '.join(map(str, args))} failed: {res}")
    return res


def crun(*args: str | os.PathLike[str], cwd: Path | None = None, check: bool = True) -> Result:
    assert REAL_OSTREE is not None
    cp = subprocess.run([REAL_OSTREE, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                        errors="replace")
    res = Result(cp)
    if check and res.rc != 0:
        raise AssertionError(f"ostree {' '.join(map(str, args))} failed: {res}")
    return res


@dataclass
class Pair:
    """A real-ostree repo and a pyostree repo of the same mode."""

    mode: str
    c: Path
    py: Path

    def commit(self, *args: str | os.PathLike[str], cwd: Path | None = None) -> tuple[str, str]:
        a = crun(f"--repo={self.c}", "commit", *args, cwd=cwd).out.strip()
        b = pyrun(f"--repo={self.py}", "commit", *args, cwd=cwd).out.strip()
        return a, b

    def same(self, *args: str | os.PathLike[str], cwd: Path | None = None) -> str:
        a, b = self.commit(*args, cwd=cwd)
        assert a == b, f"{self.mode}: ostree {a} != pyostree {b} for {args}"
        return a

    def fsck(self) -> None:
        r = crun(f"--repo={self.py}", "fsck")
        assert "no errors found" in r.out, r

    def rev(self, ref: str) -> tuple[str, str]:
        return (crun(f"--repo={self.c}", "rev-parse", ref).out.strip(),
                crun(f"--repo={self.py}", "rev-parse", ref).out.strip())


def make_pair(tmp_path: Path, mode: str, name: str = "") -> Pair:
    c = tmp_path / f"c-repo{name}"
    p = tmp_path / f"py-repo{name}"
    crun("init", f"--repo={c}", f"--mode={mode}")
    pyrun("init", f"--repo={p}", f"--mode={mode}")
    return Pair(mode, c, p)


# -- generated trees -------------------------------------------------------------

NAMES = ["a", "b.txt", "nön-äscii", "日本語", "with space", "emoji-🎉", "x" * 200, ".hidden", "UPPER"]
FILE_MODES = [0o644, 0o600, 0o755, 0o700, 0o4755, 0o2755, 0o444, 0o640]
DIR_MODES = [0o755, 0o700, 0o1777, 0o2775, 0o750]


def gen_tree(root: Path, seed: int, *, xattrs: bool = True, owners: bool = True) -> Path:
    """A random tree: nested dirs, empty and large files, symlinks, special modes, xattrs."""
    rng = random.Random(seed)
    root.mkdir(parents=True)

    def fill(d: Path, depth: int) -> None:
        for name in rng.sample(NAMES, rng.randint(2, 5)):
            kind = rng.choice(["file", "file", "empty", "link", "dir" if depth < 3 else "file", "big"])
            p = d / name
            if kind == "dir":
                p.mkdir()
                fill(p, depth + 1)
                p.chmod(rng.choice(DIR_MODES))
            elif kind == "link":
                os.symlink(rng.choice(["a", "../b.txt", "/etc/passwd", "nonexistent/ü", "." * 3]), p)
                continue
            else:
                data = b"" if kind == "empty" else rng.randbytes(rng.choice([1, 17, 4096, 70000]))
                if kind == "big":
                    data = rng.randbytes(300_000)
                p.write_bytes(data)
                p.chmod(rng.choice(FILE_MODES))
            if xattrs and rng.random() < 0.3:
                os.setxattr(p, "user.test", rng.randbytes(rng.randint(0, 20)))
                if rng.random() < 0.5:
                    os.setxattr(p, "user.Ümlaut", b"v\0v")
            if owners and rng.random() < 0.3:
                os.chown(p, rng.choice([0, 1000, 65534]), rng.choice([0, 100, 65534]))

    fill(root, 0)
    # fixed paths the flag tests refer to
    (root / "usr" / "bin").mkdir(parents=True)
    exe = root / "usr" / "bin" / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o775)
    (root / "usr" / "share").mkdir()
    (root / "usr" / "share" / "doc").write_text("doc\n")
    (root / "skipme").write_text("skip\n")
    (root / "usr" / "skipdir").mkdir()
    (root / "usr" / "skipdir" / "inner").write_text("i\n")
    if xattrs:
        os.setxattr(root / "usr" / "share" / "doc", "user.keep", b"1")
    return root


def canon_args(mode: str) -> list[str]:
    return ["--canonical-permissions"] if mode == "bare-user-only" else []


# -- tests ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [1, 2])
def test_generated_trees_same_checksum(tmp_path: Path, mode: str, seed: int) -> None:
    tree = gen_tree(tmp_path / "tree", seed, xattrs=mode != "bare-user-only", owners=mode != "bare-user-only")
    pair = make_pair(tmp_path, mode)
    common = ["-s", "subject ✓", "-m", "body\n\nmore", "--timestamp=2022-03-04 05:06:07",
              "--add-metadata-string=version=42.1", *canon_args(mode)]
    first = pair.same("-b", "main", *common, tree)
    # a second commit on the branch gets the first as parent in both
    (tree / "new").write_text("new\n")
    second = pair.same("-b", "main", *common, tree)
    assert second != first
    assert pair.rev("main^") == (first, first)
    pair.fsck()


@pytest.mark.parametrize("mode", MODES)
def test_ownership_and_permission_flags(tmp_path: Path, mode: str) -> None:
    tree = gen_tree(tmp_path / "tree", 3, xattrs=mode != "bare-user-only", owners=mode != "bare-user-only")
    pair = make_pair(tmp_path, mode)
    ts = "--timestamp=2020-01-01"
    if mode != "bare-user-only":
        pair.same("-b", "own", ts, "--owner-uid=1000", "--owner-gid=100", tree)
        pair.same("-b", "own0", ts, "--owner-uid=0", "--owner-gid=0", tree)
        pair.same("-b", "nox", ts, "--no-xattrs", tree)
        pair.same("-b", "rox", ts, "--mode-ro-executables", tree)
    pair.same("-b", "canon", ts, "--canonical-permissions", tree)
    pair.same("-b", "canon-rox", ts, "--canonical-permissions", "--mode-ro-executables", tree)
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare", "archive", "bare-user-only"])
def test_statoverride_and_skip_list(tmp_path: Path, mode: str) -> None:
    tree = gen_tree(tmp_path / "tree", 4, xattrs=False, owners=False)
    pair = make_pair(tmp_path, mode)
    so = tmp_path / "statoverride"
    so.write_text("=0640 /usr/share/doc\n2048 /usr/bin/tool\n=0700 /usr/share\n1 /usr/bin\n=0750 /\n")
    sk = tmp_path / "skiplist"
    sk.write_text("/skipme\n/usr/skipdir\n")
    ca = canon_args(mode)
    ts = "--timestamp=2020-01-01"
    if mode != "bare-user-only":
        pair.same("-b", "so", ts, f"--statoverride={so}", tree)
        pair.same("-b", "both", ts, f"--statoverride={so}", f"--skip-list={sk}", tree)
    pair.same("-b", "sk", ts, f"--skip-list={sk}", *ca, tree)
    # the same filters over a tree taken from a ref
    if mode != "bare-user-only":
        pair.same("-b", "ref-so", ts, "--tree=ref=so", f"--statoverride={so}", f"--skip-list={sk}")
    ls = crun(f"--repo={pair.py}", "ls", "-R", "sk").out
    assert "/skipme" not in ls and "/usr/skipdir" not in ls and "/usr/bin/tool" in ls
    # unmatched paths are errors in both
    bad = tmp_path / "bad-skip"
    bad.write_text("/does/not/exist\n")
    rc = crun(f"--repo={pair.c}", "commit", "-b", "x", f"--skip-list={bad}", *ca, tree, check=False)
    rp = pyrun(f"--repo={pair.py}", "commit", "-b", "x", f"--skip-list={bad}", *ca, tree, check=False)
    assert rc.rc == rp.rc == 1
    assert "Unmatched skip-list paths" in rc.err and "Unmatched skip-list paths" in rp.err
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_metadata_flags(tmp_path: Path, mode: str) -> None:
    tree = gen_tree(tmp_path / "tree", 5)
    pair = make_pair(tmp_path, mode)
    ts = "--timestamp=2020-01-01"
    md = ["--add-metadata-string=version=1.2.3", "--add-metadata-string=zz=last",
          "--add-metadata-string=aa=first", "--add-metadata=num=uint64 12345",
          "--add-metadata=list=['x', 'y']", "--add-metadata=flag=true",
          "--add-metadata=nested=<<'deep'>>", "--add-metadata=i=-5",
          "--add-metadata=dict={'k': <1>}"]
    base = pair.same("-b", "md", ts, *md, tree)
    pair.same("-b", "md", "--timestamp=2020-01-02", "--keep-metadata=version", "--keep-metadata=num",
              "--add-metadata-string=other=x", tree)
    # detached metadata: the same .commitmeta bytes
    det = pair.same("-b", "det", ts, "--add-detached-metadata-string=sig=abc",
                    "--add-detached-metadata-string=more=ü", tree)
    rel = Path("objects") / det[:2] / f"{det[2:]}.commitmeta"
    assert (pair.c / rel).read_bytes() == (pair.py / rel).read_bytes()
    # bindings
    pair.same("-b", "bind", ts, "--bind-ref=other", "--bind-ref=aaa/first", tree)
    pair.same("-b", "nobind", ts, "--no-bindings", tree)
    pair.same("--orphan", ts, "--bind-ref=x", tree)
    pair.same("--orphan", ts, tree)
    # --parent
    pair.same("-b", "par", ts, f"--parent={base}", tree)
    pair.same("-b", "par", ts, "--parent=none", tree)
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_tree_dir_and_ref_combined(tmp_path: Path, mode: str) -> None:
    t1 = gen_tree(tmp_path / "t1", 6)
    t2 = gen_tree(tmp_path / "t2", 7)
    t3 = tmp_path / "t3"
    (t3 / "usr" / "bin").mkdir(parents=True)
    (t3 / "usr" / "bin" / "tool").write_text("replaced\n")
    (t3 / "newdir").mkdir()
    pair = make_pair(tmp_path, mode)
    ts = "--timestamp=2020-01-01"
    pair.same("-b", "one", ts, t1)
    pair.same("-b", "two", ts, t2)
    pair.same("-b", "combo", ts, f"--tree=dir={t3}", "--tree=ref=one", f"--tree=dir={t2}", "--tree=ref=two", t1)
    pair.same("-b", "combo2", ts, "--tree=ref=one", f"--tree=dir={t3}")
    pair.same("-b", "base", ts, "--base=one", t3)
    pair.same("-b", "refs-mod", ts, "--tree=ref=one", "--owner-uid=5", "--no-xattrs")
    # a file where the tree so far has a directory (and the reverse) is an error in both
    t4 = tmp_path / "t4"
    (t4 / "usr").mkdir(parents=True)
    (t4 / "usr" / "bin").write_text("now a file\n")
    for trees in ([f"--tree=dir={t1}", f"--tree=dir={t4}"], ["--tree=ref=one", f"--tree=dir={t4}"],
                  [f"--tree=dir={t4}", "--tree=ref=one"]):
        rc = crun(f"--repo={pair.c}", "commit", "-b", "conflict", *trees, check=False)
        rp = pyrun(f"--repo={pair.py}", "commit", "-b", "conflict", *trees, check=False)
        assert rc.rc == rp.rc == 1, (trees, rc, rp)
        assert rc.err.split(":")[0] == rp.err.split(":")[0], (rc.err, rp.err)
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_skip_if_unchanged(tmp_path: Path, mode: str) -> None:
    tree = gen_tree(tmp_path / "tree", 8)
    pair = make_pair(tmp_path, mode)
    first = pair.same("-b", "s", "--timestamp=2020-01-01", tree)
    again = pair.same("-b", "s", "--skip-if-unchanged", "--timestamp=2020-01-02", tree)
    assert again == first
    assert pair.rev("s") == (first, first)
    # via --tree=ref, as basic-test.sh does
    assert pair.same("-b", "s", "--skip-if-unchanged", "--tree=ref=s") == first
    (tree / "changed").write_text("c")
    changed = pair.same("-b", "s", "--skip-if-unchanged", "--timestamp=2020-01-02", tree)
    assert changed != first
    pair.fsck()


def _table(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.strip().splitlines())


@pytest.mark.parametrize("d_ino", ["exact", "stat"])
@pytest.mark.parametrize("mode", ["bare", "bare-user"])
def test_link_checkout_speedup_and_devino(tmp_path: Path, mode: str, d_ino: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pyostree.tree import commit

    if d_ino == "stat":  # as on a filesystem whose d_ino cannot be trusted: every inode from a stat
        monkeypatch.setattr(commit, "exact_d_ino_dev", lambda dfd: None)
    else:
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            if commit.exact_d_ino_dev(fd) is None:
                pytest.skip("tmp_path is not on ext4/xfs/btrfs/tmpfs (or has mounts below)")
        finally:
            os.close(fd)
    tree = gen_tree(tmp_path / "tree", 9, xattrs=False)
    pair = make_pair(tmp_path, mode)
    ts = "--timestamp=2020-01-01"
    pair.same("-b", "src", ts, tree)
    co_c, co_p = tmp_path / "co-c", tmp_path / "co-p"
    user = ["-U"] if mode == "bare-user" else []
    crun(f"--repo={pair.c}", "checkout", *user, "-H", "src", co_c)
    crun(f"--repo={pair.py}", "checkout", *user, "-H", "src", co_p)
    (co_c / "added").write_text("added\n")
    (co_p / "added").write_text("added\n")
    for flags in (["--link-checkout-speedup"], ["-I"], ["--devino-canonical", "--owner-uid=0"]):
        a = crun(f"--repo={pair.c}", "commit", "-b", "sp", ts, "--table-output", *flags, co_c).out
        b = pyrun(f"--repo={pair.py}", "commit", "-b", "sp", ts, "--table-output", *flags, co_p).out
        ta, tb = _table(a), _table(b)
        assert ta["Commit"] == tb["Commit"], flags
        for key in ("Content Total", "Content Written", "Content Cache Hits", "Metadata Total"):
            assert ta[key] == tb[key], (flags, key, a, b)
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare-user-only", "archive"])
def test_consume(tmp_path: Path, mode: str) -> None:
    pair = make_pair(tmp_path, mode)
    ca = canon_args(mode)
    tc = gen_tree(tmp_path / "tc", 10, xattrs=False, owners=False)
    tp = gen_tree(tmp_path / "tp", 10, xattrs=False, owners=False)
    a = crun(f"--repo={pair.c}", "commit", "-b", "x", "--timestamp=2020-01-01", "--consume", *ca, tc).out
    b = pyrun(f"--repo={pair.py}", "commit", "-b", "x", "--timestamp=2020-01-01", "--consume", *ca, tp).out
    assert a == b
    assert not tc.exists() and not tp.exists()
    pair.fsck()


@pytest.mark.parametrize("mode", MODES)
def test_generate_sizes(tmp_path: Path, mode: str) -> None:
    tree = gen_tree(tmp_path / "tree", 11, xattrs=False, owners=False)
    (tree / "dup").write_bytes((tree / "usr" / "share" / "doc").read_bytes())
    pair = make_pair(tmp_path, mode)
    csum = pair.same("-b", "sz", "--timestamp=2020-01-01", "--generate-sizes", *canon_args(mode), tree)
    # ostree restarts its size table at every tree walk and re-writes --tree=ref contents
    t2 = tmp_path / "t2"
    (t2 / "sub").mkdir(parents=True)
    (t2 / "sub" / "h").write_text("h\n")
    for trees in (["--tree=ref=sz"], [f"--tree=dir={tree}", f"--tree=dir={t2}"],
                  ["--tree=ref=sz", f"--tree=dir={t2}"], [f"--tree=dir={t2}", "--tree=ref=sz"]):
        pair.same("-b", "sz2", "--timestamp=2020-01-01", "--generate-sizes", *canon_args(mode), *trees)
    shown = crun(f"--repo={pair.py}", "show", "--print-sizes", csum, check=False)
    if mode == "archive":
        assert shown.rc == 0 and "Compressed size" in shown.out
    else:
        assert shown.rc != 0  # ostree only generates sizes in archive repos
    pair.fsck()


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_bootable(tmp_path: Path, mode: str) -> None:
    tree = gen_tree(tmp_path / "tree", 12)
    kdir = tree / "usr" / "lib" / "modules" / "6.1.0-test"
    kdir.mkdir(parents=True)
    (kdir / "vmlinuz").write_bytes(b"kernel")
    pair = make_pair(tmp_path, mode)
    pair.same("-b", "boot", "--timestamp=2020-01-01", "--bootable", tree)
    # GVariantDict reorders every key by hash: many keys, several types
    keys = [f"--add-metadata-string=key{i}=v{i}" for i in range(12)]
    csum = pair.same("-b", "boot", "--timestamp=2020-01-01", "--bootable", "--bind-ref=z",
                     "--add-metadata=n=uint64 3", *keys, tree)
    out = crun(f"--repo={pair.py}", "show", csum, "--print-metadata-key=ostree.linux").out
    assert out.strip() == "'6.1.0-test'"
    # no kernel / several kernels: the same errors
    notree = tmp_path / "nokernel"
    (notree / "usr" / "lib" / "modules").mkdir(parents=True)
    for t, msg in ((notree, "No kernel found in /usr/lib/modules"), (tmp_path / "t-empty", "No such file or directory: /usr")):
        t.mkdir(exist_ok=True)
        rc = crun(f"--repo={pair.c}", "commit", "-b", "nb", "--bootable", t, check=False)
        rp = pyrun(f"--repo={pair.py}", "commit", "-b", "nb", "--bootable", t, check=False)
        assert rc.rc == rp.rc == 1 and msg in rc.err and msg in rp.err, (rc, rp)
    (tree / "usr" / "lib" / "modules" / "7.0").mkdir()
    (tree / "usr" / "lib" / "modules" / "7.0" / "vmlinuz").write_bytes(b"k2")
    rp = pyrun(f"--repo={pair.py}", "commit", "-b", "nb", "--bootable", tree, check=False)
    assert rp.rc == 1 and "Multiple kernels found in /usr/lib/modules" in rp.err
    pair.fsck()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: os.mkfifo(d / "fifo"), "Not a regular file or symlink: fifo"),
        (lambda d: os.mknod(d / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3)), "Not a regular file or symlink: dev"),
        (lambda d: (d / os.fsdecode(b"bad-\xff\xfe")).write_text("x"), "Invalid UTF-8 in filename"),
    ],
)
def test_unsupported_entries_fail_like_ostree(tmp_path: Path, setup: Callable[[Path], object], message: str) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    setup(tree / "sub")
    pair = make_pair(tmp_path, "archive")
    rc = crun(f"--repo={pair.c}", "commit", "-b", "x", tree, check=False)
    rp = pyrun(f"--repo={pair.py}", "commit", "-b", "x", tree, check=False)
    assert rc.rc == rp.rc == 1
    assert message in rc.err and message in rp.err
    assert "Traceback" not in rp.err
    # nothing was committed, and the repo is still sound
    assert not (pair.py / "refs" / "heads" / "x").exists()
    pair.fsck()


def test_library_commit_directory_matches(tmp_path: Path) -> None:
    """The library entry point gives the CLI's checksum."""
    from pyostree.store.repo import Repo, RepoMode
    from pyostree.tree.commit import commit_directory

    tree = gen_tree(tmp_path / "tree", 13)
    pair = make_pair(tmp_path, "archive")
    a = crun(f"--repo={pair.c}", "commit", "-b", "lib", "-s", "s", "--no-bindings",
             "--timestamp=2020-01-01", tree).out.strip()
    repo = Repo.open(str(pair.py))
    assert repo.mode is RepoMode.ARCHIVE
    b = commit_directory(repo, str(tree), subject="s", branch="lib", timestamp=1577836800)
    repo.close()
    assert a == b
    pair.fsck()
    shutil.rmtree(tree)


@pytest.mark.parametrize("mode", ["bare", "bare-user-only", "bare-user"])
def test_consume_adopts_files(tmp_path: Path, mode: str) -> None:
    """--consume moves files into bare / bare-user-only repos instead of copying (basic-test "adopt")."""
    pair = make_pair(tmp_path, mode)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "eatme.txt").write_text("a file to consume 🍔\n")
    (tree / "sub" / "eatme.txt").chmod(0o664)
    saved = tmp_path / "saved-link"
    os.link(tree / "sub" / "eatme.txt", saved)
    ct = tmp_path / "ctree"
    shutil.copytree(tree, ct, symlinks=True)
    a = crun(f"--repo={pair.c}", "commit", "-b", "x", "--timestamp=2020-01-01", "--consume", ct).out.strip()
    b = pyrun(f"--repo={pair.py}", "commit", "-b", "x", "--timestamp=2020-01-01", "--consume", tree).out.strip()
    assert a == b
    assert not tree.exists()
    line = crun(f"--repo={pair.py}", "ls", "-C", "x", "/sub/eatme.txt").out.split()
    csum = line[4]
    objpath = pair.py / "objects" / csum[:2] / f"{csum[2:]}.file"
    adopted = os.stat(objpath).st_ino == os.stat(saved).st_ino
    assert adopted == (mode != "bare-user")
    pair.fsck()


def test_source_date_epoch_and_metadata_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = gen_tree(tmp_path / "tree", 14)
    pair = make_pair(tmp_path, "archive")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    a = crun(f"--repo={pair.c}", "commit", "-b", "env", tree).out.strip()
    b = pyrun(f"--repo={pair.py}", "commit", "-b", "env", tree).out.strip()
    assert a == b
    for value, msg in (("invalid", "Failed to convert SOURCE_DATE_EPOCH"),
                       ("12345678901234567890", "Parsing SOURCE_DATE_EPOCH: Numerical result out of range")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
        rc = crun(f"--repo={pair.c}", "commit", "-b", "env", tree, check=False)
        rp = pyrun(f"--repo={pair.py}", "commit", "-b", "env", tree, check=False)
        assert rc.rc == rp.rc == 1 and msg in rc.err and msg in rp.err, (rc, rp)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    for flag in ("--add-metadata-string==FOO", "--add-metadata==1"):
        rc = crun(f"--repo={pair.c}", "commit", "-b", "md", flag, tree, check=False)
        rp = pyrun(f"--repo={pair.py}", "commit", "-b", "md", flag, tree, check=False)
        assert rc.rc == rp.rc == 1 and "Empty metadata key" in rp.err, (flag, rc, rp)
    pair.same("-b", "md", "--timestamp=2020-01-01", "--add-metadata-string=FOO=", tree)
    pair.same("-b", "md", "--timestamp=2020-01-01", "--add-detached-metadata-string==x", tree)


def test_commit_tree_containing_the_repo(tmp_path: Path) -> None:
    """`ostree commit` of the directory holding the repository itself (test-commit-timestamp.sh)."""
    work = tmp_path / "work"
    work.mkdir()
    crun("init", f"--repo={work / 'repo'}", "--mode=archive")
    (work / "file").write_text("x\n")
    r = pyrun("--repo=./repo", "commit", "-b", "self", "--timestamp=@1234567890", cwd=work)
    assert r.rc == 0
    assert "no errors found" in crun(f"--repo={work / 'repo'}", "fsck").out


def test_serialize_dirtree_matches_generic() -> None:
    """commit.serialize_dirtree is DirTree.serialize, for every offset width."""
    from pyostree.store.objects import DirTree
    from pyostree.tree.commit import serialize_dirtree

    rng = random.Random(5)
    alphabet = "abcXYZ019._-~ éü€😀"

    def name() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 5, 40, 200, 300])))

    def csum() -> str:
        return rng.randbytes(32).hex()

    for n_files, n_dirs in [(0, 0), (1, 0), (0, 1), (3, 2), (1, 1), (40, 3), (2000, 0), (0, 900), (700, 700)]:
        files = {name(): csum() for _ in range(n_files)}
        dirs = {name(): (csum(), csum()) for _ in range(n_dirs)}
        for n in list(dirs):
            files.pop(n, None)
        dl = [(n, t, m) for n, (t, m) in dirs.items()]
        want = DirTree(sorted(files.items(), key=lambda p: p[0].encode()),
                       sorted(dl, key=lambda p: p[0].encode())).serialize()
        assert serialize_dirtree(list(files.items()), dl) == want, (n_files, n_dirs)
