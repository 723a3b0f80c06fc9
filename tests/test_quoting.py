"""Commit-side quoting of whiteouts, opaque dirs and special files, and its unquoting.

Compared against the real ostree (commit checksums, ``checkout
--process-passthrough-whiteouts``) and the real kernel (mknod, overlayfs).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_sample_tree, needs_ostree, needs_overlayfs, needs_root
from pyostree.errors import OstreeError
from pyostree.oci import checkout_tree
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree import quoting
from pyostree.tree.commit import commit_directory

MODES = ["bare", "bare-user", "bare-user-only", "archive"]
WEIRD = ["plain", "with space", "new\nline", "ünïcödé ☃", "-dash", ".wh.looks-oci"]


def _names(repo: Path, ref: str, *path: str) -> set[str]:
    """File names in directory *path* of commit *ref* (read with the library)."""
    r = Repo.open(str(repo))
    c = r.load_commit(r.resolve_rev(ref) or "")
    contents = c.root_contents
    for part in path:
        contents = next(tc for n, tc, _ in r.load_dirtree(contents).dirs if n == part)
    return {n for n, _ in r.load_dirtree(contents).files}


def _node(p: Path) -> tuple[str, int, int, int, int]:
    st = os.lstat(p)
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else \
        "p" if stat.S_ISFIFO(st.st_mode) else "s" if stat.S_ISSOCK(st.st_mode) else "?"
    return kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_rdev


def _make_special_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "file").write_text("data\n")
    sub = root / "sub"
    sub.mkdir()
    for i, name in enumerate(WEIRD):
        p = sub / name
        os.mknod(p, stat.S_IFCHR | 0o600, 0)
        os.chown(p, 10 + i, 20 + i)
        os.chmod(p, 0o600 if i % 2 else 0o640)
    os.setxattr(sub / "plain", "trusted.note", b"kept")
    opq = root / "opq"
    opq.mkdir()
    (opq / "inside").write_text("x")
    os.setxattr(opq, "trusted.overlay.opaque", b"y")
    uopq = root / "uopq"
    uopq.mkdir()
    os.setxattr(uopq, "user.overlay.opaque", b"y")
    return root


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_nothing_special_same_checksum(tmp_path: Path, py, c, mode: str) -> None:
    """With nothing to quote, the flags change nothing: same checksum as plain commits (and ostree's)."""
    tree = make_sample_tree(tmp_path / "t")
    for tool in (py, c):
        tool("init", f"--repo={tmp_path}/r-{tool is py}", f"--mode={mode}")
    args = ["--timestamp=2020-01-01", "-s", "s", str(tree)]
    plain = py("commit", f"--repo={tmp_path}/r-True", "--orphan", *args).out.strip()
    quoted = py("commit", f"--repo={tmp_path}/r-True", "--orphan", "--retarget-whiteouts",
                "--quote-special-files", *args).out.strip()
    real = c("commit", f"--repo={tmp_path}/r-False", "--orphan", *args).out.strip()
    assert plain == quoted == real


@needs_root
@needs_ostree
@pytest.mark.parametrize("mode", ["bare", "bare-user", "archive"])
def test_whiteouts_restored_by_real_ostree(tmp_path: Path, py, c, mode: str) -> None:
    tree = _make_special_tree(tmp_path / "t")
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", f"--mode={mode}")
    py("commit", f"--repo={repo}", "-b", "wh", "--retarget-whiteouts", tree)
    assert _names(repo, "wh", "sub") == {quoting.WHITEOUT_PREFIX + n for n in WEIRD}
    assert _names(repo, "wh", "opq") == {"inside"}  # the dirmeta keeps the xattr: no marker
    out = tmp_path / "co"
    c("checkout", f"--repo={repo}", "--process-passthrough-whiteouts", "wh", out)
    for name in WEIRD:
        assert _node(out / "sub" / name) == _node(tree / "sub" / name)
    assert os.getxattr(out / "sub" / "plain", "trusted.note") == b"kept"
    assert os.getxattr(out / "opq", "trusted.overlay.opaque") == b"y"
    assert os.listdir(out / "opq") == ["inside"]


@needs_root
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("no_xattrs", [False, True])
def test_opaque_dirs_survive_every_mode(tmp_path: Path, mode: str, no_xattrs: bool) -> None:
    tree = _make_special_tree(tmp_path / "t")
    repo = Repo.create(str(tmp_path / "repo"), RepoMode.parse(mode))
    m = quoting.quoting_modifier(whiteouts=True)
    m.skip_xattrs = no_xattrs
    csum = commit_directory(repo, str(tree), branch="x", modifier=m)
    out = tmp_path / "co"
    checkout_tree(repo, csum, str(out))
    cli = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "pyostree", "checkout", f"--repo={tmp_path}/repo",
                    "--process-passthrough-whiteouts", csum, str(cli)], check=True)
    for d in (out, cli):
        assert os.getxattr(d / "opq", "trusted.overlay.opaque") == b"y"
        assert os.getxattr(d / "uopq", "user.overlay.opaque") == b"y"
        assert not (d / "opq" / quoting.OPAQUE_MARKER).exists()
        assert _node(d / "sub" / "plain")[0] == "c"
    assert os.getxattr(out / "uopq", "user.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(out / "uopq", "trusted.overlay.opaque")
    assert not (out / "opq" / quoting.OPAQUE_MARKER).exists()
    assert (out / "opq" / "inside").read_text() == "x"
    for name in WEIRD:
        kind, perms, uid, gid, rdev = _node(out / "sub" / name)
        assert (kind, rdev) == ("c", 0)
        if mode != "bare-user-only" and not no_xattrs:
            assert (perms, uid, gid) == _node(tree / "sub" / name)[1:4]


@needs_root
def test_cli_opaque_marker_content_and_userxattr(tmp_path: Path, py) -> None:
    tree = _make_special_tree(tmp_path / "t")
    py("init", f"--repo={tmp_path}/r", "--mode=bare-user-only")
    py("commit", f"--repo={tmp_path}/r", "-b", "x", "--retarget-whiteouts", tree)
    assert py("cat", f"--repo={tmp_path}/r", "x", "/opq/" + quoting.OPAQUE_MARKER).out == ""
    assert py("cat", f"--repo={tmp_path}/r", "x", "/uopq/" + quoting.OPAQUE_MARKER).out == \
        "user.overlay.opaque=y\n"


@needs_root
@needs_ostree
def test_special_files_need_opt_in(tmp_path: Path, py, c) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    os.mkfifo(tree / "fifo")
    for tool, r in ((py, "p"), (c, "c")):
        tool("init", f"--repo={tmp_path}/{r}", "--mode=bare")
    ours = py("commit", f"--repo={tmp_path}/p", "-b", "x", tree, check=False)
    theirs = c("commit", f"--repo={tmp_path}/c", "-b", "x", tree, check=False)
    assert ours.rc == theirs.rc == 1
    assert theirs.err == "error: Not a regular file or symlink: fifo\n"
    # ostree's message, then the full path and the flag that commits it
    assert ours.err == (f"error: Not a regular file or symlink: fifo ({tree}/fifo is a FIFO; "
                        "use --quote-special-files to commit it)\n")
    os.mknod(tree / "wh", stat.S_IFCHR | 0o600, 0)
    os.unlink(tree / "fifo")
    ours = py("commit", f"--repo={tmp_path}/p", "-b", "x", tree, check=False)
    assert ours.err == (f"error: Not a regular file or symlink: wh ({tree}/wh is an overlayfs whiteout, "
                        "a char device 0:0; use --retarget-whiteouts to commit it)\n")
    os.unlink(tree / "wh")
    os.mknod(tree / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    ours = py("commit", f"--repo={tmp_path}/p", "-b", "x", tree, check=False)
    assert "(" + str(tree) + "/null is a char device 1:3; use --quote-special-files to commit it)" in ours.err
    os.unlink(tree / "null")
    os.mkfifo(tree / "fifo")
    # --retarget-whiteouts alone quotes only whiteouts
    r = py("commit", f"--repo={tmp_path}/p", "-b", "x", "--retarget-whiteouts", tree, check=False)
    assert r.rc == 1 and "fifo" in r.err


@needs_root
@pytest.mark.parametrize("mode", ["bare", "bare-user-only", "archive"])
def test_special_files_round_trip(tmp_path: Path, py, mode: str) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    os.mkfifo(tree / "fifo", 0o640)
    os.mknod(tree / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(tree / "loop 9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mknod(tree / "wh", stat.S_IFCHR | 0o600, 0)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
    for p in ("fifo", "null", "loop 9", "wh", "sock"):
        os.chmod(tree / p, os.lstat(tree / p).st_mode & 0o7777)  # undo the umask
    py("init", f"--repo={tmp_path}/r", f"--mode={mode}")
    py("commit", f"--repo={tmp_path}/r", "-b", "x", "--quote-special-files", tree)
    assert py("cat", f"--repo={tmp_path}/r", "x", "/.ostree-dev.null").out == "c 1 3\n"
    assert py("cat", f"--repo={tmp_path}/r", "x", "/.ostree-dev.loop 9").out == "b 7 9\n"
    assert py("cat", f"--repo={tmp_path}/r", "x", "/.ostree-dev.fifo").out == "p\n"
    assert py("cat", f"--repo={tmp_path}/r", "x", "/.ostree-dev.sock").out == "s\n"
    # without --retarget-whiteouts, a whiteout is just another char device
    assert py("cat", f"--repo={tmp_path}/r", "x", "/.ostree-dev.wh").out == "c 0 0\n"
    repo = Repo.open(str(tmp_path / "r"))
    out = tmp_path / "co"
    checkout_tree(repo, "x", str(out))
    cli = tmp_path / "cli"
    py("checkout", f"--repo={tmp_path}/r", "--unquote-special-files", "x", cli)
    for p in ("fifo", "null", "loop 9", "wh", "sock"):
        assert _node(cli / p) == _node(out / p)
        got, want = _node(out / p), _node(tree / p)
        if mode == "bare-user-only":
            assert (got[0], got[4]) == (want[0], want[4])
        else:
            assert got == want


@needs_root
def test_non_utf8_and_conflicts_refused(tmp_path: Path, py) -> None:
    py("init", f"--repo={tmp_path}/r", "--mode=bare")
    t1 = tmp_path / "t1"
    t1.mkdir()
    os.mknod(os.path.join(os.fsencode(t1), b"bad\xff"), stat.S_IFCHR, 0)
    r = py("commit", f"--repo={tmp_path}/r", "-b", "x", "--retarget-whiteouts", t1, check=False)
    assert r.rc == 1 and r.err.startswith("error: Invalid UTF-8 in filename") and "Traceback" not in r.err
    t2 = tmp_path / "t2"
    t2.mkdir()
    os.mknod(t2 / "x", stat.S_IFCHR, 0)
    (t2 / ".ostree-wh.x").write_text("")
    r = py("commit", f"--repo={tmp_path}/r", "-b", "x", "--retarget-whiteouts", t2, check=False)
    assert r.rc == 1 and "conflicts" in r.err and ".ostree-wh.x" in r.err
    assert py("refs", f"--repo={tmp_path}/r").out == ""


def test_marker_and_special_formats() -> None:
    assert quoting.opaque_marker_content([("trusted.overlay.opaque", b"y")]) == b""
    pairs = [("user.overlay.opaque", b"y")]
    assert quoting.parse_opaque_marker(quoting.opaque_marker_content(pairs), "m") == pairs
    assert quoting.parse_opaque_marker(b"", "m") == [("trusted.overlay.opaque", b"y")]
    for bad in (b"security.selinux=x\n", b"garbage", b"user.overlay.opaque\n"):
        with pytest.raises(OstreeError, match="Invalid opaque marker"):
            quoting.parse_opaque_marker(bad, "m")
    assert quoting.parse_special(b"c 1 3\n", "x") == (stat.S_IFCHR, os.makedev(1, 3))
    assert quoting.parse_special(b"p\n", "x") == (stat.S_IFIFO, 0)
    for bad in (b"c 1\n", b"q\n", b"c 1 3", b"c -1 3\n", b"p 1 2\n"):
        with pytest.raises(OstreeError, match="Invalid quoted special file"):
            quoting.parse_special(bad, "x")
    assert quoting.quoted_kind(".ostree-wh.a b") == ("whiteout", "a b")
    assert quoting.quoted_kind(quoting.OPAQUE_MARKER) == ("opaque", "")
    assert quoting.quoted_kind(".ostree-dev.sda") == ("special", "sda")
    assert quoting.quoted_kind(".ostree-wh.") is None and quoting.quoted_kind("x") is None


@needs_overlayfs
@needs_ostree
def test_overlay_upper_round_trip(tmp_path: Path, py, c) -> None:
    """A real overlayfs upper dir (deletions, replaced dirs) survives commit + checkout."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "gone").write_text("x")
    (lower / "dir" / "deep").mkdir(parents=True)
    (lower / "dir" / "deep" / "f").write_text("old")
    (lower / "dir" / "keep").write_text("old")
    (lower / "name with space").write_text("x")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        os.unlink(merged / "gone")
        os.unlink(merged / "name with space")
        subprocess.run(["rm", "-rf", str(merged / "dir")], check=True)
        (merged / "dir").mkdir()
        (merged / "dir" / "new").write_text("new")
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert _node(upper / "gone")[0] == "c"
    assert os.getxattr(upper / "dir", "trusted.overlay.opaque") == b"y"

    def snapshot(root: Path) -> dict[str, object]:
        out: dict[str, object] = {}
        for dirpath, dirs, files in os.walk(root):
            for n in dirs + files:
                p = Path(dirpath) / n
                st = os.lstat(p)
                x = {k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)
                     if "overlay" in k}
                out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                  st.st_rdev, x)
        return out

    want = snapshot(upper)
    for mode in ("bare", "bare-user-only"):
        repo = tmp_path / f"r-{mode}"
        py("init", f"--repo={repo}", f"--mode={mode}")
        py("commit", f"--repo={repo}", "-b", "up", "--retarget-whiteouts", upper)
        co = tmp_path / f"co-{mode}"
        checkout_tree(Repo.open(str(repo)), "up", str(co))
        assert snapshot(co) == want
        cli = tmp_path / f"cli-{mode}"
        py("checkout", f"--repo={repo}", "--process-passthrough-whiteouts", "up", cli)
        assert snapshot(cli) == want
    # the real ostree's checkout of the bare repo: the same whiteouts and opaque xattrs
    real = tmp_path / "real"
    c("checkout", f"--repo={tmp_path}/r-bare", "--process-passthrough-whiteouts", "up", real)
    assert snapshot(real) == want


@needs_root
def test_skip_list_and_statoverride_name_the_device(tmp_path: Path, py) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    os.mknod(tree / "skipped", stat.S_IFCHR | 0o600, 0)
    os.mknod(tree / "chmodded", stat.S_IFCHR | 0o600, 0)
    (tmp_path / "skip").write_text("/skipped\n")
    (tmp_path / "so").write_text(f"={0o640} /chmodded\n")  # ostree statoverride modes are decimal
    py("init", f"--repo={tmp_path}/r")
    py("commit", f"--repo={tmp_path}/r", "-b", "x", "--retarget-whiteouts", f"--skip-list={tmp_path}/skip",
       f"--statoverride={tmp_path}/so", tree)
    assert _names(tmp_path / "r", "x") == {".ostree-wh.chmodded"}
    out = tmp_path / "co"
    py("checkout", f"--repo={tmp_path}/r", "--process-passthrough-whiteouts", "x", out)
    assert _node(out / "chmodded") == ("c", 0o640, 0, 0, 0)
