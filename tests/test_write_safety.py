"""Safe writes: interrupted and concurrent commits never leave a broken repository.

pyostree runs as a real subprocess here so it can be killed with SIGKILL.
After every interruption we check, independently of pyostree's own code paths:
every file under objects/ is a complete object whose name is its checksum,
every ref names a commit that is present, and the real ``ostree fsck`` passes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree, needs_root
from pyostree.store import objects as obj

Run = Callable[..., Result]
PY = [sys.executable, "-m", "pyostree"]
pytestmark = [needs_ostree]


def big_tree(root: Path, n_dirs: int = 30, n_files: int = 50) -> Path:
    root.mkdir(parents=True)
    for d in range(n_dirs):
        sub = root / f"dir{d:03d}"
        sub.mkdir()
        for f in range(n_files):
            (sub / f"file{f:03d}").write_bytes(f"{d}/{f}\n".encode() * (f + 1))
        (sub / "big").write_bytes(hashlib.sha256(str(d).encode()).digest() * 8192)
    return root


def verify_archive_objects(repo: Path) -> int:
    """Every loose object is complete and named by its checksum; returns how many there are."""
    n = 0
    for prefix in (repo / "objects").iterdir():
        assert re.fullmatch(r"[0-9a-f]{2}", prefix.name), prefix
        for p in prefix.iterdir():
            m = re.fullmatch(r"([0-9a-f]{62})\.(commit|dirtree|dirmeta|filez|commitmeta)", p.name)
            assert m, f"stray file in objects/: {p}"
            csum = prefix.name + m.group(1)
            data = p.read_bytes()
            if m.group(2) == "filez":
                hlen, variant = obj.parse_lenprefixed_header(data, str(p))
                info = obj.parse_zlib_file_header(variant, str(p))
                content = zlib.decompress(data[hlen:], -15) if info.is_regular else b""
                assert obj.content_checksum(info, content) == csum, p
            elif m.group(2) != "commitmeta":
                assert hashlib.sha256(data).hexdigest() == csum, p
            n += 1
    return n


def verify_refs(repo: Path) -> None:
    heads = repo / "refs" / "heads"
    for ref in heads.rglob("*"):
        if ref.is_file():
            csum = ref.read_text().strip()
            assert obj.is_valid_checksum(csum), ref
            assert (repo / "objects" / csum[:2] / f"{csum[2:]}.commit").exists(), f"{ref} -> missing {csum}"


def fsck_ok(c: Run, repo: Path) -> None:
    r = c(f"--repo={repo}", "fsck", check=False)
    assert r.rc == 0, r


def test_pre_commit_error_leaves_staging_with_bootid(tmp_path: Path, py: Run, c: Run) -> None:
    """basic-test.sh "test error pre commit/bootid"."""
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    tree = big_tree(tmp_path / "tree", 3, 5)
    bootid = "3072029c-8b10-60d1-d31b-8422eeff9b42"
    r = py(f"--repo={repo}", "commit", "-b", "test2", "-s", "", tree, check=False,
           env={"OSTREE_REPO_TEST_ERROR": "pre-commit", "OSTREE_BOOTID": bootid})
    assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err
    staging = [d.name for d in (repo / "tmp").iterdir() if d.name.startswith("staging-")]
    assert len(staging) == 1 and staging[0].startswith(f"staging-{bootid}-"), staging
    assert verify_archive_objects(repo) == 0
    assert not (repo / "refs" / "heads" / "test2").exists()
    fsck_ok(c, repo)
    # the repository is still usable, by both implementations
    csum = py(f"--repo={repo}", "commit", "-b", "test2", "-s", "", tree).out.strip()
    assert c(f"--repo={repo}", "rev-parse", "test2").out.strip() == csum
    c(f"--repo={repo}", "commit", "-b", "other", tree)
    fsck_ok(c, repo)


def _commit_cmd(repo: Path, branch: str, tree: Path, *extra: str) -> list[str]:
    return [*PY, f"--repo={repo}", "commit", "-b", branch, "--timestamp=2020-01-01", *extra, str(tree)]


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_sigkill_mid_commit(tmp_path: Path, py: Run, c: Run, mode: str) -> None:
    tree = big_tree(tmp_path / "tree", 16, 40)
    ref_repo = tmp_path / "ref-repo"
    py("init", f"--repo={ref_repo}", f"--mode={mode}")
    t0 = time.monotonic()
    expected = subprocess.run(_commit_cmd(ref_repo, "main", tree), capture_output=True, text=True,
                              check=True).stdout.strip()
    duration = time.monotonic() - t0
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", f"--mode={mode}")
    killed = 0
    for frac in (0.25, 0.6, 0.9):
        proc = subprocess.Popen(_commit_cmd(repo, "main", tree), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(duration * frac)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate()
        if mode == "archive":
            verify_archive_objects(repo)
        verify_refs(repo)
        fsck_ok(c, repo)
        if (repo / "refs" / "heads" / "main").exists():
            assert (repo / "refs" / "heads" / "main").read_text().strip() == expected
            shutil.rmtree(repo / "refs" / "heads")
            (repo / "refs" / "heads").mkdir()
    assert killed >= 1  # later runs reuse the objects already stored, so they may finish first
    # after all that, a commit completes and gives the same checksum
    out = subprocess.run(_commit_cmd(repo, "main", tree), capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
    fsck_ok(c, repo)


def test_concurrent_commits(tmp_path: Path, py: Run, c: Run) -> None:
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    t1 = big_tree(tmp_path / "t1", 10, 30)
    t2 = big_tree(tmp_path / "t2", 12, 30)
    (t2 / "extra").write_text("t2\n")
    procs = [
        subprocess.Popen(_commit_cmd(repo, "a", t1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(_commit_cmd(repo, "b", t2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(_commit_cmd(repo, "same", t1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(_commit_cmd(repo, "same", t2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    csums = [o[0].strip() for o in outs]
    assert c(f"--repo={repo}", "rev-parse", "a").out.strip() == csums[0]
    assert c(f"--repo={repo}", "rev-parse", "b").out.strip() == csums[1]
    assert c(f"--repo={repo}", "rev-parse", "same").out.strip() in (csums[2], csums[3])
    verify_archive_objects(repo)
    verify_refs(repo)
    fsck_ok(c, repo)
    # a real ostree writer at the same time as ours
    p1 = subprocess.Popen(_commit_cmd(repo, "mix-py", t2), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    r2 = c(f"--repo={repo}", "commit", "-b", "mix-c", "--timestamp=2020-01-01", t1)
    p1.communicate()
    assert p1.returncode == 0 and r2.rc == 0
    verify_refs(repo)
    fsck_ok(c, repo)


def _sync_calls(tmp_path: Path, argv: list[str]) -> int:
    trace = tmp_path / "strace.out"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,syncfs", "-o", str(trace), *argv],
                   check=True, capture_output=True)
    calls = [ln for ln in trace.read_text().splitlines() if re.search(r"\b(fsync|fdatasync|syncfs)\(", ln)]
    return len(calls)


@needs_root
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_fsync_policy_honoured(tmp_path: Path, py: Run) -> None:
    tree = big_tree(tmp_path / "tree", 2, 3)
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    assert _sync_calls(tmp_path, _commit_cmd(repo, "on", tree)) > 0
    (tree / "n1").write_text("1")
    assert _sync_calls(tmp_path, _commit_cmd(repo, "off", tree, "--fsync=false")) == 0
    (tree / "n2").write_text("2")
    assert _sync_calls(tmp_path, _commit_cmd(repo, "off2", tree, "--disable-fsync")) == 0
    config = repo / "config"
    config.write_text(config.read_text().replace("[core]\n", "[core]\nfsync=false\n"))
    (tree / "n3").write_text("3")
    assert _sync_calls(tmp_path, _commit_cmd(repo, "off3", tree)) == 0
    (tree / "n4").write_text("4")
    assert _sync_calls(tmp_path, _commit_cmd(repo, "on2", tree, "--fsync=true")) > 0
    r = py(f"--repo={repo}", "commit", "-b", "bad", "--fsync=maybe", tree, check=False)
    assert r.rc == 1 and "error:" in r.err


def test_failed_commit_cleans_up(tmp_path: Path, py: Run, c: Run) -> None:
    """An ordinary error mid-walk leaves no staging dir, no objects, no ref."""
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    tree = big_tree(tmp_path / "tree", 3, 5)
    os.mkfifo(tree / "dir002" / "zz-fifo")
    r = py(f"--repo={repo}", "commit", "-b", "x", tree, check=False)
    assert r.rc == 1 and "Not a regular file or symlink" in r.err
    assert verify_archive_objects(repo) == 0
    assert not any(d.name.startswith("staging-") for d in (repo / "tmp").iterdir())
    assert not (repo / "refs" / "heads" / "x").exists()
    fsck_ok(c, repo)


def test_concurrent_commits_and_prunes(tmp_path: Path, py: Run, c: Run) -> None:
    """Like upstream test-concurrency.py: committers and `prune --refs-only` at once."""
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=bare")
    with open(repo / "config", "a") as f:
        f.write("disable-xattrs=true\n")
    trees = [big_tree(tmp_path / f"tree{v}", 2, 10) for v in range(3)]
    procs = [subprocess.Popen([*PY, f"--repo={repo}", "commit", "--fsync=0", "-b", f"tree{v % 3}",
                               f"--tree=dir={trees[v % 3]}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for v in range(6)]
    procs += [subprocess.Popen([*PY, f"--repo={repo}", "prune", "--refs-only"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    verify_refs(repo)
    fsck_ok(c, repo)
    assert len(c(f"--repo={repo}", "refs").out.split()) == 3


@pytest.mark.parametrize("tool", ["py", "c"])
def test_commit_cleans_stale_staging_dirs(tool: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A commit removes staging dirs no transaction holds (another boot's, a killed writer's) and
    keeps one whose ``NAME-lock`` a live transaction holds, the lock protocol libostree uses: both
    tools agree on it, so each respects the other's live transactions."""
    import fcntl
    import struct

    run = request.getfixturevalue(tool)
    repo = tmp_path / "repo"
    run("init", f"--repo={repo}", "--mode=bare-user")
    stale = repo / "tmp" / "staging-4072029c-8b10-60d1-d31b-8422eeff9b42-aaaaaa"
    live = repo / "tmp" / "staging-5072029c-8b10-60d1-d31b-8422eeff9b42-bbbbbb"
    for d in (stale, live):
        (d / "ab").mkdir(parents=True)
        (d / "ab" / "junk.file").write_bytes(b"x")
    lock_fd = os.open(f"{live}-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # an open-file-description write lock, as libglnx's glnx_make_lock_file takes
        fcntl.fcntl(lock_fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        tree = tmp_path / "t"
        tree.mkdir()
        (tree / "f").write_text("x")
        run(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}")
        assert not stale.exists()
        assert live.is_dir()
    finally:
        os.close(lock_fd)
    assert sorted(p.name for p in (repo / "tmp").iterdir() if p.name.startswith("staging-")) == \
        [live.name, live.name + "-lock"]


@pytest.mark.parametrize("tool", ["py", "c"])
def test_stale_ref_temp_file_is_not_a_ref(tool: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A writer killed between creating a ref's temporary file and renaming it leaves
    ``refs/heads/.main.XXXX``; names that are not ref fragments are not refs (libostree skips them,
    ostree issue 1285), so refs, fsck and a rerun all go on."""
    run = request.getfixturevalue(tool)
    repo = tmp_path / "repo"
    run("init", f"--repo={repo}", "--mode=archive")
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("x")
    run(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}")
    (repo / "refs/heads/.main.ORzRsUHENyF3").write_bytes(b"")
    (repo / "refs/heads/.rsync_info").write_text("junk\n")
    assert run(f"--repo={repo}", "refs").out.split() == ["main"]
    run(f"--repo={repo}", "fsck")
    run(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}")
    assert run(f"--repo={repo}", "refs", "--list").out.split() == ["main"]
