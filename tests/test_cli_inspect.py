"""Inspection and configuration commands compared with the real ostree on the same repository.

log, show, ls, cat, diff, checksum, refs, reset, config, remote and summary:
pyostree's output must be byte-identical to ostree 2022.7's wherever ostree's
output is deterministic (ref listings are hash-table ordered in ostree, so
those are compared sorted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, make_sample_tree, needs_ostree
from pyostree.remote.summary import SUMMARY_TYPE
from pyostree.store import gvariant

pytestmark = needs_ostree

Run = Callable[..., Result]


@pytest.fixture
def py() -> Run:
    """pyostree's CLI run in-process (much faster than a subprocess per call; same code path)."""
    import io

    from pyostree.cli.main import main

    def run(*args: str | os.PathLike[str], check: bool = True, **_: object) -> Result:
        argv = [str(a) for a in args]
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape", newline="")
        err = io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = int(e.code or 0)
            sys.stdout.flush()
        finally:
            sys.stdout, sys.stderr = saved
        out_bytes = out.buffer.getvalue()
        cp = subprocess.CompletedProcess(argv, rc, out_bytes.decode("utf-8", "replace"), err.getvalue())
        res = Result(cp)
        if check and rc != 0:
            raise AssertionError(f"pyostree {' '.join(argv)} failed: {res}")
        return res
    return run


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An archive and a bare repo made by the real ostree, with history, metadata and two trees."""
    assert REAL_OSTREE is not None
    base = tmp_path_factory.mktemp("inspect")
    t1 = make_sample_tree(base / "t1")
    (base / "t1" / "dirlink").symlink_to("baz")
    t2 = base / "t2"
    shutil.copytree(t1, t2, symlinks=True)
    (t2 / "baz" / "cow").write_text("changed\n")
    (t2 / "firstfile").unlink()
    (t2 / "newdir" / "sub").mkdir(parents=True)
    (t2 / "newdir" / "sub" / "f").write_text("n\n")
    (t2 / "dirlink").unlink()
    (t2 / "dirlink").mkdir()
    out: dict[str, Path] = {"t1": t1, "t2": t2}
    for mode in ("archive", "bare"):
        repo = base / f"repo-{mode}"

        def c(*a: str) -> str:
            return subprocess.run([REAL_OSTREE, *a], check=True, capture_output=True, text=True).stdout

        c("init", f"--repo={repo}", f"--mode={mode}")
        c(f"--repo={repo}", "commit", "-b", "main", "-s", "first", "-m", "body line 1\nline 2",
          "--add-metadata-string=version=1.0", "--add-metadata=SOMENUM=uint64 42",
          "--timestamp=@1234567890", str(t1))
        c(f"--repo={repo}", "commit", "-b", "main", "-s", "second", "--timestamp=@1234567900", str(t2))
        c(f"--repo={repo}", "commit", "-b", "other/x", "--timestamp=@1234567910", str(t1))
        out[mode] = repo
    return out


MODES = ["archive", "bare"]


def _same(py: Run, c: Run, *args: str) -> Result:
    a = c(*args, check=False)
    b = py(*args, check=False)
    a.err = a.err.replace(f"{REAL_OSTREE} ", "pyostree ")  # each usage line shows its own program
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err), args
    return b


@pytest.mark.parametrize("mode", MODES)
def test_log_and_show_identical(py: Run, c: Run, repos: dict[str, Path], mode: str) -> None:
    r = f"--repo={repos[mode]}"
    for args in (["log", "main"], ["log", "--raw", "main"], ["show", "main"], ["show", "main^"],
                 ["show", "--raw", "main"], ["show", "-B", "main"],
                 ["show", "--print-metadata-key=SOMENUM", "main^"],
                 ["show", "-B", "--print-metadata-key=SOMENUM", "main^"],
                 ["show", "--print-metadata-key=version", "main^"],
                 ["show", "--print-related", "main"]):
        _same(py, c, r, *args)
    res = _same(py, c, r, "show", "--print-metadata-key=SOMENUM", "main^")
    assert res.out == "uint64 3026418949592973312\n"
    assert _same(py, c, r, "show", "-B", "--print-metadata-key=SOMENUM", "main^").out == "uint64 42\n"
    assert "Date:  2009-02-13 23:31:30 +0000" in _same(py, c, r, "show", "main^").out
    # dirtree / dirmeta by checksum
    root = c(r, "ls", "-d", "-C", "main", "/").out.split()
    for csum in root[4:6]:
        _same(py, c, r, "show", "--raw", csum)


@pytest.mark.parametrize("mode", ["bare"])
def test_show_log_errors(py: Run, c: Run, repos: dict[str, Path], mode: str) -> None:
    r = f"--repo={repos[mode]}"
    for args in (["show", "nosuchref"], ["show", "--print-metadata-key=nope", "main"],
                 ["show", "--print-detached-metadata-key=nope", "main"], ["log"], ["show"]):
        res = _same(py, c, r, *args)
        assert res.rc == 1 and "error: " in res.err


@pytest.mark.parametrize("mode", MODES)
def test_ls_identical(py: Run, c: Run, repos: dict[str, Path], mode: str) -> None:
    r = f"--repo={repos[mode]}"
    for args in (["ls", "main"], ["ls", "-R", "main"], ["ls", "-R", "-X", "-C", "main^"],
                 ["ls", "-d", "main", "/baz"], ["ls", "main^", "baz", "/baz/cow", "/baz/alink"],
                 ["ls", "--nul-filenames-only", "-R", "main"],
                 ["ls", "main", "nope"], ["ls", "main^", "/baz/alink/x"], ["ls", "main", "baz/"],
                 ["ls", "main", "./baz"], ["ls", "main", ""], ["ls"]):
        _same(py, c, r, *args)
    out = py(r, "ls", "main^", "/firstfile").out
    assert out == "-00644 0 0      6 /firstfile\n"


@pytest.mark.parametrize("mode", ["bare"])
def test_cat_identical(py: Run, c: Run, repos: dict[str, Path], mode: str) -> None:
    r = f"--repo={repos[mode]}"
    for args in (["cat", "main^", "/firstfile", "baz/cow"], ["cat", "main^", "/baz"],
                 ["cat", "main^", "/baz/rel-link"], ["cat", "main^", "/baz/alink"],
                 ["cat", "main^", "/dirlink/cow"], ["cat", "main"]):
        _same(py, c, r, *args)
    big = subprocess.run([sys.executable, "-m", "pyostree", r, "cat", "main^", "/baz/big"],
                         capture_output=True, check=True).stdout
    assert big == (repos["t1"] / "baz" / "big").read_bytes()


@pytest.mark.parametrize("mode", ["archive"])
def test_diff_identical(py: Run, c: Run, repos: dict[str, Path], mode: str) -> None:
    r = f"--repo={repos[mode]}"
    t1, t2 = repos["t1"], repos["t2"]
    for args in (["diff", "main^", "main"], ["diff", "main"], ["diff", "main", "other/x"],
                 ["diff", "--stats", "main^", "main"], ["diff", "main^", str(t2)],
                 ["diff", "--no-xattrs", "main", str(t1)], ["diff", str(t1), str(t2)],
                 ["diff", "--owner-uid=5", "main", str(t2)], ["diff", "main", "nope"], ["diff"]):
        _same(py, c, r, *args)
    out = py(r, "diff", "main^", "main").out
    assert "M    /baz/cow\n" in out and "D    /firstfile\n" in out and "A    /newdir/sub/f\n" in out


def test_checksum_identical(py: Run, c: Run, repos: dict[str, Path], tmp_path: Path) -> None:
    t1 = repos["t1"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for p in (t1, t1 / "firstfile", t1 / "baz" / "alink", t1 / "baz" / "big", fifo, tmp_path / "nope"):
        _same(py, c, "checksum", str(p))
        _same(py, c, "checksum", "--ignore-xattrs", str(p))
    res = _same(py, c, "checksum")
    assert res.rc == 1


def _refs(run: Run, repo: Path, *args: str) -> list[str]:
    return sorted(run(f"--repo={repo}", "refs", *args).out.splitlines())


def test_refs_like_ostree(py: Run, c: Run, tmp_path: Path, sample_tree: Path) -> None:
    # ref names are not hex: ostree first reads a hex refspec as a partial commit
    # checksum ("Refspec a not unique" when two commits start with "a")
    results = []
    for run in (c, py):
        repo = tmp_path / f"r-{'c' if run is c else 'py'}"
        c("init", f"--repo={repo}")
        for b in ("q", "foo/b", "foo/c", "exampleos/x86_64/26/server"):
            c(f"--repo={repo}", "commit", "-b", b, "--timestamp=@1", str(sample_tree))
        run(f"--repo={repo}", "refs", "q", "--create=origin:remote1")
        run(f"--repo={repo}", "refs", "-A", "exampleos/x86_64/26/server", "--create=exampleos/x86_64/stable/server")
        (repo / "refs" / "heads" / ".hidden").write_text("x\n")
        got: list[list[str] | list[int]] = [_refs(run, repo), _refs(run, repo, "foo"), _refs(run, repo, "--list", "foo"),
               _refs(run, repo, "origin:"), _refs(run, repo, "origin:."), _refs(run, repo, "-A")]
        errs = []
        for args in (["--delete"], ["--create=x"], ["q", "--create=foo/b"], ["q", "--create=foo"],
                     ["nope", "--create=y"], ["q", "--create=.bad"],
                     ["--delete", "exampleos/x86_64/26/server"],
                     ["-A", "q", "--create=o:x"], ["-A", "--create=z", "nonexistent"]):
            errs.append(run(f"--repo={repo}", "refs", *args, check=False).rc)
        run(f"--repo={repo}", "refs", "--delete", "foo")
        run(f"--repo={repo}", "refs", "q", "--create=foo/b", "--force")
        got += [_refs(run, repo), errs]
        results.append(got)
        assert run(f"--repo={repo}", "refs", "q", "--create=foo/b", check=False).err.startswith(
            "error: --create specified but ref foo/b already exists")
    assert results[0] == results[1]


def test_refs_collections(py: Run, c: Run, tmp_path: Path, sample_tree: Path) -> None:
    results = []
    for run in (c, py):
        repo = tmp_path / f"r-{'c' if run is c else 'py'}"
        c("init", f"--repo={repo}", "--collection-id=org.example.C")
        c(f"--repo={repo}", "commit", "-b", "t1", str(sample_tree))
        c(f"--repo={repo}", "commit", "-b", "t2", str(sample_tree))
        run(f"--repo={repo}", "refs", "--collections", "--create=org.example.N:mir", "t1")
        got = [_refs(run, repo), _refs(run, repo, "--collections"),
               _refs(run, repo, "--collections", "org.example.N")]
        run(f"--repo={repo}", "refs", "--collections", "--delete", "org.example.C")
        got.append(_refs(run, repo, "--collections"))
        results.append(got)
    assert results[0] == results[1]
    assert "(org.example.N, mir)" in results[1][1]


def test_reset(py: Run, c: Run, repos: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "r"
    shutil.copytree(repos["archive"], repo, symlinks=True)
    first = c(f"--repo={repo}", "rev-parse", "main^").out.strip()
    other = c(f"--repo={repo}", "rev-parse", "other/x").out.strip()
    py(f"--repo={repo}", "reset", "main", "main^")
    assert (repo / "refs/heads/main").read_text() == first + "\n"
    py(f"--repo={repo}", "reset", "main", other)  # non-linear is fine
    assert (repo / "refs/heads/main").read_text() == other + "\n"
    _same(py, c, f"--repo={repo}", "reset", "nope", "main")
    _same(py, c, f"--repo={repo}", "reset", "main")


def test_config_and_remotes_write_same_config(py: Run, c: Run, tmp_path: Path) -> None:
    texts = []
    for run in (c, py):
        repo = tmp_path / f"r-{'c' if run is c else 'py'}"
        c("init", f"--repo={repo}")
        r = f"--repo={repo}"
        run("remote", "add", r, "--set=xa.title=Flathub", "--set=xa.title-is-set=true", "flathub",
            "https://dl.flathub.org/repo/")
        run("remote", "add", r, "--no-gpg-verify", "--collection-id=org.x.Y", "other",
            "file:///srv/repo", "br1", "br2")
        run("remote", "add", r, "--if-not-exists", "other", "http://ignored")
        run("remote", "add", r, "--force", "--contenturl=http://c/", "gone", "metalink=http://m/")
        run("remote", "delete", r, "gone")
        run("remote", "delete", r, "--if-exists", "gone")
        run("config", r, "set", "core.lock-timeout-secs", "60")
        run("config", r, "set", "--group=remote \"flathub\"", "xa.title", "Nightly; Flathub")
        run("config", r, "--", "set", "core.x-custom", "-1")
        run("config", r, "unset", "core.lock-timeout-secs")
        run("config", r, "unset", "--group=remote \"nope\"", "x")
        texts.append((repo / "config").read_text())
        outs = [run("config", r, "get", "--group=remote \"flathub\"", "xa.title").out,
                run("config", r, "get", "core.mode").out,
                run("remote", "list", r).out, run("remote", "list", "-u", r).out,
                run("remote", "show-url", r, "flathub").out]
        texts.append("".join(outs))
        errs = []
        for args in (["config", r, "get", "core.nope"], ["config", r, "get", "nogroup.x"],
                     ["config", r, "get", "--group=core", "mode", "extra"], ["config", r, "get", "nodot"],
                     ["config", r, "frob", "a.b"], ["remote", "add", r, "flathub", "http://x"],
                     ["remote", "delete", r, "nope"], ["remote", "show-url", r, "nope"],
                     ["remote", "add", r, "bad/name", "http://x"]):
            res = run(*args, check=False)
            errs.append((res.rc, res.err.splitlines()[-1] if res.err else ""))
        texts.append(repr(errs))
    assert texts[:3] == texts[3:]


def test_summary_byte_identical(py: Run, c: Run, repos: dict[str, Path], tmp_path: Path) -> None:
    for mode in MODES:
        a = tmp_path / f"a-{mode}"
        b = tmp_path / f"b-{mode}"
        shutil.copytree(repos[mode], a, symlinks=True)
        shutil.copytree(repos[mode], b, symlinks=True)
        c(f"--repo={a}", "summary", "-u", "-m", "foo='bar'", "-m", "n=uint32 5")
        py(f"--repo={b}", "summary", "-u", "-m", "foo='bar'", "-m", "n=uint32 5")
        da = (a / "summary").read_bytes()
        db = (b / "summary").read_bytes()
        _refs_a, md_a = gvariant.deserialize(SUMMARY_TYPE, da)
        refs_b, md_b = gvariant.deserialize(SUMMARY_TYPE, db)
        last = dict(md_a)["ostree.summary.last-modified"]
        md_b = [(k, last if k == "ostree.summary.last-modified" else v) for k, v in md_b]
        assert gvariant.serialize(SUMMARY_TYPE, (refs_b, md_b)) == da
        # each tool reads the other's file the same way
        for args in (["summary", "--view"], ["summary", "--raw"]):
            assert py(f"--repo={a}", *args).out == c(f"--repo={a}", *args).out
        _same(py, c, f"--repo={b}", "summary")


def test_summary_with_collections(py: Run, c: Run, tmp_path: Path, sample_tree: Path) -> None:
    repos = []
    for run in (c, py):
        repo = tmp_path / f"r-{'c' if run is c else 'py'}"
        c("init", f"--repo={repo}", "--collection-id=org.example.C")
        c(f"--repo={repo}", "commit", "-b", "a", "--timestamp=@5", "--add-metadata-string=version=2", str(sample_tree))
        c(f"--repo={repo}", "refs", "--collections", "--create=org.other.X:mir", "a")
        repos.append(repo)
    c(f"--repo={repos[0]}", "summary", "-u")
    py(f"--repo={repos[1]}", "summary", "-u")
    view_c = c(f"--repo={repos[0]}", "summary", "--view").out
    view_py = py(f"--repo={repos[1]}", "summary", "--view").out
    strip = [ln for ln in view_c.splitlines() if "last-modified" not in ln and "Latest Commit" not in ln]
    strip_py = [ln for ln in view_py.splitlines() if "last-modified" not in ln and "Latest Commit" not in ln]
    # the ostree-metadata commit has a timestamp of "now", so its checksum can differ by a second
    assert [ln for ln in strip if "ostree-metadata" not in ln][:3] == [ln for ln in strip_py if "ostree-metadata" not in ln][:3]
    assert "* (org.other.X, mir)" in view_py
    assert "Collection ID (ostree.summary.collection-id): org.example.C" in view_py
    assert py(f"--repo={repos[1]}", "rev-parse", "ostree-metadata").rc == 0


def test_help_and_dispatch(py: Run, c: Run, tmp_path: Path) -> None:
    top = py("--help").out
    container = "  container         Import, check out, list, remove and export container images\n"
    assert container in top  # the one command the real ostree does not have
    assert top.replace(container, "") == c("--help").out.replace(f"{REAL_OSTREE} ", "pyostree ")
    for cmd in ("refs", "checksum", "config", "remote", "remote add"):
        res = py(*cmd.split(), "--help")
        assert res.out.count("\nUsage") + res.out.startswith("Usage") == 1
        assert f"ostree {cmd}" in res.out and res.err == ""
    for args in ([], ["nosuchcommand"], ["remote"], ["remote", "nosuch"]):
        a, b = c(*args, check=False), py(*args, check=False)
        assert b.rc == a.rc == 1 and b.out == ""
        assert b.err.splitlines()[-1] == a.err.splitlines()[-1]
    # ostree-VERB extensions on PATH
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ext = bindir / "ostree-hello"
    ext.write_text('#!/bin/sh\necho "hello $*"\n')
    ext.chmod(0o755)
    ext_res = subprocess.run([sys.executable, "-m", "pyostree", "hello", "x"], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}, check=True)
    assert ext_res.stdout == "hello hello x\n"


def test_remote_refs_summary_and_gpg_import(py: Run, c: Run, repos: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(repos["archive"], src, symlinks=True)
    c(f"--repo={src}", "summary", "-u")
    gpghome = Path("/usr/libexec/installed-tests/libostree/gpghome")
    outs = []
    for run in (c, py):
        repo = tmp_path / f"r-{'c' if run is c else 'py'}"
        c("init", f"--repo={repo}")
        r = f"--repo={repo}"
        c("remote", "add", r, "--no-gpg-verify", "src", f"file://{src}")
        c("remote", "add", r, "--no-gpg-verify", "empty", f"file://{tmp_path}/nonexistent")
        got = [run(r, "remote", "refs", "src").out, run(r, "remote", "summary", "src").out,
               run(r, "remote", "summary", "--raw", "src").out]
        for args in (["remote", "refs", "empty"], ["remote", "refs", "nope"]):
            res = run(r, *args, check=False)
            got.append(f"{res.rc} {res.err}")
        if gpghome.is_dir():
            got.append(run("remote", "gpg-import", r, "-k", gpghome / "key1.asc", "src").out)
            got.append(run("remote", "gpg-import", r, "-k", gpghome / "key2.asc", "-k",
                           gpghome / "key1.asc", "src").out)
            assert (repo / "src.trustedkeys.gpg").stat().st_size > 0
        outs.append(got)
    assert outs[0] == outs[1]
    assert outs[1][0] == "src:main\nsrc:other/x\n"


def test_flag_with_value_as_goption(tmp_path: Path, py: Callable[..., Result], c: Callable[..., Result]) -> None:
    """GOption sets a no-argument flag given as --flag=VALUE and ignores the value; so do we."""
    for tool in (py, c):
        repo = tmp_path / f"repo-{tool is py}"
        tool("init", f"--repo={repo}", "--mode=archive")
        tree = tmp_path / "t"
        tree.mkdir(exist_ok=True)
        (tree / "f").write_text("x")
        out = tool(f"--repo={repo}", "commit", "-b", "main", "--no-xattrs=false", "--tree=dir=" + str(tree))
        assert len(out.out.strip()) == 64
        assert "f" in tool(f"--repo={repo}", "ls", "main", "--nul-filenames-only=yes").out
