"""Summaries on pull: the mirror copy, the summary cache (tmp/cache/summaries, --cache-dir), a malformed
summary.sig -- each compared with what the real ostree does against the same server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, make_sample_tree, needs_ostree
from httpfixtures import MisbehavingServer

pytestmark = [needs_ostree]

Run = Callable[..., Result]
SIG = b"not really a signature\n"


def _ostree(*args: str | Path) -> str:
    assert REAL_OSTREE is not None
    return subprocess.run([REAL_OSTREE, *map(str, args)], capture_output=True, text=True, check=True).stdout


class Env:
    def __init__(self, base: Path) -> None:
        srv = base / "srv"
        srv.mkdir()
        self.repo = srv / "repo"
        _ostree("init", f"--repo={self.repo}", "--mode=archive")
        tree = make_sample_tree(base / "tree")
        _ostree(f"--repo={self.repo}", "commit", "-b", "main", f"--tree=dir={tree}")
        _ostree(f"--repo={self.repo}", "commit", "-b", "other", f"--tree=dir={tree / 'baz'}")
        _ostree(f"--repo={self.repo}", "summary", "-u")
        (self.repo / "summary.sig").write_bytes(SIG)  # served as is: only verification reads it
        self.http = MisbehavingServer(srv)
        self.url = f"{self.http.url}/repo"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("sumsrv")
    e = Env(base)
    yield e
    e.http.close()
    shutil.rmtree(base)


def _repo(tool: Run, path: Path, url: str, mode: str = "archive", *opts: str) -> Path:
    tool("init", f"--repo={path}", f"--mode={mode}")
    tool(f"--repo={path}", "remote", "add", "--set=gpg-verify=false", *opts, "origin", url)
    return path


def test_mirror_pull_stores_summary_and_signature(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    ours = _repo(py, tmp_path / "ours", env.url)
    theirs = _repo(c, tmp_path / "theirs", env.url)
    py(f"--repo={ours}", "pull", "--mirror", "origin")
    c(f"--repo={theirs}", "pull", "--mirror", "origin")
    for name in ("summary", "summary.sig"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes() == (env.repo / name).read_bytes()
    assert c(f"--repo={ours}", "fsck").rc == 0
    # with refs named, the summary isn't copied (as libostree)
    named = _repo(py, tmp_path / "named", env.url)
    py(f"--repo={named}", "pull", "--mirror", "origin", "main")
    assert not (named / "summary").exists()


def test_summary_cache(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    env.http.reset()
    repo = _repo(py, tmp_path / "repo", env.url, "bare-user")
    py(f"--repo={repo}", "pull", "origin", "main")
    cached = repo / "tmp" / "cache" / "summaries"
    assert (cached / "origin").read_bytes() == (env.repo / "summary").read_bytes()
    assert (cached / "origin.sig").read_bytes() == SIG
    inodes = [(cached / n).stat().st_ino for n in ("origin", "origin.sig")]
    assert env.http.requests_for("repo/summary") == 1
    py(f"--repo={repo}", "pull", "origin", "other")
    # the signature is unchanged: the summary comes from the cache, which is left alone
    assert env.http.requests_for("repo/summary") == 1
    assert env.http.requests_for("repo/summary.sig") == 2
    assert [(cached / n).stat().st_ino for n in ("origin", "origin.sig")] == inodes
    # the real ostree reads our cache the same way
    c(f"--repo={repo}", "pull", "origin", "main")
    assert env.http.requests_for("repo/summary") == 1
    # --cache-dir, and OSTREE_SKIP_CACHE
    repo2 = _repo(py, tmp_path / "repo2", env.url, "bare-user")
    py(f"--repo={repo2}", "pull", f"--cache-dir={tmp_path / 'cache'}", "origin", "main")
    assert (tmp_path / "cache" / "summaries" / "origin.sig").read_bytes() == SIG
    assert not (repo2 / "tmp" / "cache" / "summaries").exists()
    repo3 = _repo(py, tmp_path / "repo3", env.url, "bare-user")
    py(f"--repo={repo3}", "pull", "origin", "main", env={"OSTREE_SKIP_CACHE": "1"})
    assert not (repo3 / "tmp" / "cache" / "summaries").exists()


def test_malformed_summary_sig_means_no_signatures(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    ours = _repo(py, tmp_path / "ours", env.url, "archive", "--set=gpg-verify-summary=true")
    theirs = _repo(c, tmp_path / "theirs", env.url, "archive", "--set=gpg-verify-summary=true")
    r = py(f"--repo={ours}", "pull", "origin", "main", check=False)
    r2 = c(f"--repo={theirs}", "pull", "origin", "main", check=False)
    assert r.rc == r2.rc == 1
    assert "no signatures found" in r.err and "no signatures found" in r2.err
    assert r.err == r2.err
    assert not (ours / "tmp" / "cache" / "summaries" / "origin").exists()  # nothing cached unverified
    assert os.listdir(ours / "refs" / "remotes") == []


GPGHOME_SRC = Path("/usr/libexec/installed-tests/libostree/gpghome")
KEY1 = "7FCA23D8472CDAFA"


@pytest.mark.skipif(not GPGHOME_SRC.is_dir() or shutil.which("gpg") is None,
                    reason="needs gpg and ostree's test keys (ostree-tests)")
def test_signed_summary_remote_summary_and_pull(py: Run, c: Run, tmp_path: Path) -> None:
    home = tmp_path / "gpghome"
    shutil.copytree(GPGHOME_SRC, home)
    home.chmod(0o700)
    srv = tmp_path / "srv"
    repo = srv / "repo"
    srv.mkdir()
    _ostree("init", f"--repo={repo}", "--mode=archive")
    _ostree(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={make_sample_tree(tmp_path / 'tree')}")
    _ostree(f"--repo={repo}", "summary", "-u", f"--gpg-sign={KEY1}", f"--gpg-homedir={home}")
    try:
        with MisbehavingServer(srv) as http:
            outs = []
            for tool, name in ((py, "ours"), (c, "theirs")):
                d = _repo(tool, tmp_path / name, f"{http.url}/repo", "archive", "--set=gpg-verify-summary=true",
                          f"--gpg-import={GPGHOME_SRC / 'key1.asc'}")
                outs.append(tool(f"--repo={d}", "remote", "summary", "origin").out)
                tool(f"--repo={d}", "pull", "origin", "main")
                assert c(f"--repo={d}", "fsck").rc == 0
            assert "GPG: Verification enabled, found 1 signature:" in outs[0]
            assert 'Good signature from "Ostree Tester <test@test.com>"' in outs[0]
            # same text but the "Last-Modified" line (the two tools format local time alike, but run apart)
            assert [ln for ln in outs[0].splitlines() if "Timestamp" not in ln] == \
                   [ln for ln in outs[1].splitlines() if "Timestamp" not in ln]
            # a signature that doesn't match the summary: BAD, and nothing cached
            _ostree(f"--repo={repo}", "commit", "-b", "other", f"--tree=dir={tmp_path / 'tree' / 'baz'}")
            sig = (repo / "summary.sig").read_bytes()
            _ostree(f"--repo={repo}", "summary", "-u")
            (repo / "summary.sig").write_bytes(sig)
            bad = _repo(py, tmp_path / "bad", f"{http.url}/repo", "archive", "--set=gpg-verify-summary=true",
                        f"--gpg-import={GPGHOME_SRC / 'key1.asc'}")
            r = py(f"--repo={bad}", "pull", "origin", "main", check=False)
            assert r.rc == 1 and "BAD signature" in r.err, r.err
            assert not (bad / "tmp" / "cache" / "summaries" / "origin").exists()
    finally:
        subprocess.run(["gpg-connect-agent", "--homedir", str(home), "killagent", "/bye"],
                       capture_output=True, check=False)
