"""Cross pulls through nginx (the real ostree pulls what pyostree wrote, and the reverse) and many pulls at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, SRC, Result, make_sample_tree, needs_ostree
from httpfixtures import NGINX, Nginx

pytestmark = [needs_ostree, pytest.mark.skipif(not os.path.exists(NGINX), reason="needs nginx-light")]

Run = Callable[..., Result]


def _build(tool: Run, repo: Path, base: Path) -> tuple[str, str]:
    """Two branches of several commits; returns the tips of main and other."""
    tree = make_sample_tree(base / "tree")
    tool("init", f"--repo={repo}", "--mode=archive")
    for i in range(3):
        (tree / "usr").mkdir(exist_ok=True)
        for j in range(40):
            (tree / "usr" / f"f{j}").write_text(f"file {j} of commit {i}\n" * (j + 1))
        (tree / "version").write_text(f"{i}\n")
        tool(f"--repo={repo}", "commit", "-b", "main", "-s", f"c{i}", f"--tree=dir={tree}")
    tool(f"--repo={repo}", "commit", "-b", "other", "-s", "o", f"--tree=dir={tree / 'baz'}")
    tool(f"--repo={repo}", "static-delta", "generate", "main")
    tool(f"--repo={repo}", "summary", "-u")
    return (tool(f"--repo={repo}", "rev-parse", "main").out.strip(),
            tool(f"--repo={repo}", "rev-parse", "other").out.strip())


class Env:
    def __init__(self, base: Path, py: Run, c: Run) -> None:
        srv = base / "srv"
        srv.mkdir()
        self.srv = srv
        self.tips = {"py": _build(py, srv / "py", base / "b-py"), "real": _build(c, srv / "real", base / "b-real")}
        self.nginx = Nginx(srv, base / "nginx")
        self.url = self.nginx.url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from conftest import _runner

    base = tmp_path_factory.mktemp("nginxsrv")
    assert REAL_OSTREE is not None
    e = Env(base, _runner([sys.executable, "-m", "pyostree"]), _runner([REAL_OSTREE]))
    yield e
    e.nginx.close()
    shutil.rmtree(base)


def _repo(tool: Run, path: Path, url: str, mode: str = "bare-user") -> Path:
    tool("init", f"--repo={path}", f"--mode={mode}")
    tool(f"--repo={path}", "remote", "add", "--set=gpg-verify=false", "origin", url)
    return path


def _same(c: Run, repo: Path, src: Path, rev: str) -> bool:
    return c(f"--repo={repo}", "ls", "-R", "-C", rev).out == c(f"--repo={src}", "ls", "-R", "-C", rev).out


@pytest.mark.parametrize("writer", ["py", "real"])
@pytest.mark.parametrize("puller", ["py", "real"])
@pytest.mark.parametrize("how", ["objects", "delta"])
def test_cross_pull(py: Run, c: Run, tmp_path: Path, env: Env, writer: str, puller: str, how: str) -> None:
    tool = py if puller == "py" else c
    main, other = env.tips[writer]
    src = env.srv / writer
    repo = _repo(tool, tmp_path / "repo", f"{env.url}/{writer}")
    if how == "delta":
        parent = c(f"--repo={src}", "rev-parse", "main^").out.strip()
        tool(f"--repo={repo}", "pull", "--disable-static-deltas", "origin", f"main@{parent}")
        r = tool(f"--repo={repo}", "pull", "--require-static-deltas", "origin", "main")
        assert r.out.startswith("1 delta parts, "), r.out
    else:
        r = tool(f"--repo={repo}", "pull", "--disable-static-deltas", "origin", "main", "other")
        assert "content objects fetched" in r.out
        assert _same(c, repo, src, other)
    assert _same(c, repo, src, main)
    assert c(f"--repo={repo}", "fsck").rc == 0
    assert py(f"--repo={repo}", "fsck").rc == 0


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    envv = dict(os.environ)
    envv["PYTHONPATH"] = SRC + os.pathsep + envv.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "pyostree", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=envv)


def test_concurrent_clients_into_separate_repos(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    repos = [_repo(py, tmp_path / f"r{i}", f"{env.url}/{'py' if i % 2 else 'real'}") for i in range(6)]
    procs = [_spawn([f"--repo={r}", "pull", *(["--disable-static-deltas"] if i % 3 else []), "origin", "main",
                     "other"]) for i, r in enumerate(repos)]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for i, r in enumerate(repos):
        src = env.srv / ("py" if i % 2 else "real")
        assert _same(c, r, src, env.tips["py" if i % 2 else "real"][0])
        assert c(f"--repo={r}", "fsck").rc == 0


def test_concurrent_pulls_into_one_repo(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    repo = _repo(py, tmp_path / "repo", f"{env.url}/real")
    py(f"--repo={repo}", "remote", "add", "--set=gpg-verify=false", "pyorigin", f"{env.url}/py")
    jobs = [["origin", "main"], ["origin", "other"], ["pyorigin", "main"], ["origin", "main", "other"],
            ["pyorigin", "other"]]
    procs = [_spawn([f"--repo={repo}", "pull", *j]) for j in jobs]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for remote, src in (("origin", "real"), ("pyorigin", "py")):
        main, other = env.tips[src]
        assert py(f"--repo={repo}", "rev-parse", f"{remote}:main").out.strip() == main
        assert py(f"--repo={repo}", "rev-parse", f"{remote}:other").out.strip() == other
        assert _same(c, repo, env.srv / src, main)
    assert c(f"--repo={repo}", "fsck").rc == 0
    assert py(f"--repo={repo}", "fsck").rc == 0
    assert not [n for n in os.listdir(repo / "tmp") if n.startswith("staging-")]
