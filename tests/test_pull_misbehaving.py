"""Every bad answer a server can give ends the pull with a clear error, a repo both fscks accept,
and a later good pull that completes (a real HTTP server on 127.0.0.1, repos written by the real ostree)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, make_sample_tree, needs_ostree
from httpfixtures import MisbehavingServer

pytestmark = [needs_ostree]

Run = Callable[..., Result]


def _ostree(*args: str | Path) -> str:
    assert REAL_OSTREE is not None
    return subprocess.run([REAL_OSTREE, *map(str, args)], capture_output=True, text=True, check=True).stdout


class Env:
    def __init__(self, base: Path) -> None:
        srv = base / "srv"
        srv.mkdir()
        tree = make_sample_tree(base / "tree")
        arch = srv / "archive"
        _ostree("init", f"--repo={arch}", "--mode=archive")
        _ostree(f"--repo={arch}", "commit", "-b", "main", "-s", "first", f"--tree=dir={tree}")
        _ostree(f"--repo={arch}", "summary", "-u")
        self.main = _ostree(f"--repo={arch}", "rev-parse", "main").strip()
        big = _ostree(f"--repo={arch}", "ls", "-R", "-C", "main", "/baz/big").split()[4]
        self.big = f"archive/objects/{big[:2]}/{big[2:]}.filez"
        self.commit = f"archive/objects/{self.main[:2]}/{self.main[2:]}.commit"
        self.http = MisbehavingServer(srv)
        self.url = f"{self.http.url}/archive"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("badsrv")
    e = Env(base)
    yield e
    e.http.close()
    shutil.rmtree(base)


@pytest.fixture
def srv(env: Env) -> Iterator[Env]:
    env.http.reset()
    yield env
    env.http.reset()


def _repo(py: Run, path: Path, url: str, mode: str = "bare-user") -> Path:
    py("init", f"--repo={path}", f"--mode={mode}")
    py(f"--repo={path}", "remote", "add", "--set=gpg-verify=false", "origin", url)
    return path


def _fails_cleanly(py: Run, c: Run, repo: Path, env: Env, *flags: str, requests: dict[str, int] | None = None) -> str:
    """Pull fails with one clear error; both fscks pass; a good pull then completes.

    *requests* gets the number of requests the failed pull made for each of its keys (patterns).
    """
    r = py(f"--repo={repo}", "pull", *flags, "origin", "main", check=False)
    for pat in requests or {}:
        assert requests is not None
        requests[pat] = env.http.requests_for(pat)
    assert r.rc == 1, r.out
    assert r.err.startswith("error: ") and r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    assert py(f"--repo={repo}", "rev-parse", "origin:main", check=False).rc == 1
    assert py(f"--repo={repo}", "fsck").rc == 0
    assert c(f"--repo={repo}", "fsck").rc == 0
    env.http.reset()
    py(f"--repo={repo}", "pull", "origin", "main")
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == env.main
    assert py(f"--repo={repo}", "fsck").rc == 0
    assert c(f"--repo={repo}", "fsck").rc == 0
    return r.err


def test_one_byte_resumes_end_within_the_retries(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.big, "one-byte-resume")
    repo = _repo(py, tmp_path / "repo", srv.url)
    r = py(f"--repo={repo}", "pull", "origin", "main", check=False)
    assert r.rc == 1
    assert f"While fetching {srv.http.url}/{srv.big}: Download incomplete" in r.err
    # the first request and 5 unproductive resumes (--network-retries default); ostree makes 8
    assert srv.http.requests_for(srv.big) == 6
    assert py(f"--repo={repo}", "fsck").rc == 0 and c(f"--repo={repo}", "fsck").rc == 0
    srv.http.reset()
    py(f"--repo={repo}", "pull", "origin", "main")
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_network_retries_bound_the_resumes(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.big, "one-byte-resume")
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv, "--network-retries=2")
    assert srv.big in err
    repo2 = _repo(py, tmp_path / "repo2", srv.url)
    srv.http.reset()
    srv.http.set(srv.big, "one-byte-resume")
    py(f"--repo={repo2}", "pull", "--disable-retry-on-network-errors", "origin", "main", check=False)
    assert srv.http.requests_for(srv.big) == 1


@pytest.mark.parametrize("behaviour", ["trickle", "stall", "stall-headers"])
def test_slow_servers_hit_the_low_speed_limit(py: Run, c: Run, tmp_path: Path, srv: Env, behaviour: str) -> None:
    srv.http.set(srv.big, behaviour)
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv, "--low-speed-time-seconds=1", "--network-retries=1")
    assert (f"While fetching {srv.http.url}/{srv.big}: Operation too slow. "
            "Less than 1000 bytes/sec transferred the last 1 seconds") in err


def test_stalled_commit_ends(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.commit, "stall-headers")
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv, "--low-speed-time-seconds=1", "--network-retries=0")
    assert f"While fetching {srv.http.url}/{srv.commit}: Operation too slow" in err


@pytest.mark.parametrize("what", ["big", "dirtree"])
def test_endless_body(py: Run, c: Run, tmp_path: Path, srv: Env, what: str) -> None:
    pattern = srv.big if what == "big" else "archive/objects/*.dirtree"
    srv.http.set(pattern, "endless")
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv)
    assert "While fetching " in err and ": Exceeded maximum size" in err
    assert "archive/objects/" in err


def test_oversized_body(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.big, "oversized")
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv)
    assert f"While fetching {srv.http.url}/{srv.big}: Exceeded maximum size" in err


def test_redirect_loop_ends(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.commit, "redirect-loop")
    repo = _repo(py, tmp_path / "repo", srv.url)
    n = {srv.commit: 0}
    err = _fails_cleanly(py, c, repo, srv, requests=n)
    assert f"While fetching {srv.http.url}/{srv.commit}: Number of redirects hit maximum amount" in err
    assert n[srv.commit] == 31  # not retried: it would loop again


def test_redirects_are_followed(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set("archive/*", "redirect")
    repo = _repo(py, tmp_path / "repo", srv.url)
    py(f"--repo={repo}", "pull", "origin", "main")
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == srv.main
    assert c(f"--repo={repo}", "fsck").rc == 0
    assert srv.http.requests_for(f"_real/{srv.big}") == 1


@pytest.mark.parametrize("mode", ["bare-user", "archive"])
def test_wrong_checksum(py: Run, c: Run, tmp_path: Path, srv: Env, mode: str) -> None:
    srv.http.set(srv.big, "wrong-checksum")
    repo = _repo(py, tmp_path / "repo", srv.url, mode)
    err = _fails_cleanly(py, c, repo, srv)
    big = srv.big.split("/")
    assert f"Corrupted file object; checksum expected='{big[2]}{big[3][:-6]}'" in err


def test_truncated_object(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.big, "truncated")
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv)
    assert "Corrupted file object" in err


def test_404_mid_pull(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.big, "404")
    repo = _repo(py, tmp_path / "repo", srv.url)
    err = _fails_cleanly(py, c, repo, srv)
    assert f"Server returned HTTP 404: {srv.http.url}/{srv.big}" in err


def test_500_mid_pull(py: Run, c: Run, tmp_path: Path, srv: Env) -> None:
    srv.http.set(srv.big, "500")
    repo = _repo(py, tmp_path / "repo", srv.url)
    n = {srv.big: 0}
    err = _fails_cleanly(py, c, repo, srv, "--network-retries=2", requests=n)
    assert f"While fetching {srv.http.url}/{srv.big}: Server returned HTTP 500" in err
    assert n[srv.big] == 3
