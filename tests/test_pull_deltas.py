"""``pull`` through static deltas, served by nginx (and file://), against the real ostree both ways:
pyostree pulls deltas the real ostree generated, the real ostree pulls deltas pyostree generated."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, needs_ostree
from httpfixtures import NGINX, MisbehavingServer, Nginx

pytestmark = [needs_ostree, pytest.mark.skipif(not os.path.exists(NGINX), reason="needs nginx-light")]

Run = Callable[..., Result]


def _ostree(*args: str | Path) -> str:
    assert REAL_OSTREE is not None
    return subprocess.run([REAL_OSTREE, *map(str, args)], capture_output=True, text=True, check=True).stdout


def _tree(root: Path, version: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rnd = (root.parent / "random.bin")
    if not rnd.exists():
        rnd.write_bytes(os.urandom(300_000))
    (root / "usr" / "lib").mkdir(parents=True, exist_ok=True)
    (root / "usr" / "lib" / "libbig.so").write_bytes(rnd.read_bytes() + b"v%d" % version * 100)
    (root / "usr" / "share").mkdir(exist_ok=True)
    (root / "usr" / "share" / "blob").write_bytes(rnd.read_bytes() * 4)  # 1.2 MB: a fallback object below
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "os-release").write_text(f"VERSION={version}\n")
    (root / "usr" / f"only-in-{version}").write_text("x\n" * version)
    link = root / "usr" / "link"
    if not link.is_symlink():
        os.symlink("lib/libbig.so", link)
    return root


class Env:
    """Two commits of a branch in an archive repo written by the real ostree, with deltas
    (FROM-TO and from scratch, both made by the real ostree), served by nginx."""

    def __init__(self, base: Path) -> None:
        self.base = base
        srv = base / "srv"
        srv.mkdir()
        self.srv = srv
        arch = srv / "real"
        _ostree("init", f"--repo={arch}", "--mode=archive")
        _ostree(f"--repo={arch}", "commit", "-b", "main", "-s", "v1", f"--tree=dir={_tree(base / 't1', 1)}")
        self.v1 = _ostree(f"--repo={arch}", "rev-parse", "main").strip()
        _ostree(f"--repo={arch}", "commit", "-b", "main", "-s", "v2", f"--tree=dir={_tree(base / 't2', 2)}")
        self.v2 = _ostree(f"--repo={arch}", "rev-parse", "main").strip()
        _ostree(f"--repo={arch}", "static-delta", "generate", "main")
        _ostree(f"--repo={arch}", "static-delta", "generate", "--empty", "main")
        _ostree(f"--repo={arch}", "summary", "-u")
        # the same repo with deltas listed in the summary only (no delta index), and with no summary at all
        plain = srv / "plain"
        shutil.copytree(arch, plain, symlinks=True)
        _ostree(f"--repo={plain}", "config", "set", "core.indexed-deltas", "false")
        shutil.rmtree(plain / "delta-indexes")
        _ostree(f"--repo={plain}", "summary", "-u")
        nosum = srv / "nosummary"
        shutil.copytree(plain, nosum, symlinks=True)
        os.unlink(nosum / "summary")
        nodeltas = srv / "nodeltas"
        shutil.copytree(plain, nodeltas, symlinks=True)
        shutil.rmtree(nodeltas / "deltas")
        _ostree(f"--repo={nodeltas}", "summary", "-u")
        self.nginx = Nginx(srv, base / "nginx")
        self.url = self.nginx.url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("deltasrv")
    e = Env(base)
    yield e
    e.nginx.close()
    shutil.rmtree(base)


def _repo(tool: Run, path: Path, url: str, mode: str = "bare-user") -> Path:
    tool("init", f"--repo={path}", f"--mode={mode}")
    tool(f"--repo={path}", "remote", "add", "--set=gpg-verify=false", "origin", url)
    return path


def _check(py: Run, c: Run, repo: Path, env: Env, rev: str, srcrepo: str = "real") -> None:
    assert py(f"--repo={repo}", "fsck").rc == 0
    assert c(f"--repo={repo}", "fsck").rc == 0
    ours = c(f"--repo={repo}", "ls", "-R", "-C", rev).out
    theirs = c(f"--repo={env.srv / srcrepo}", "ls", "-R", "-C", rev).out
    assert ours == theirs


@pytest.mark.parametrize("layout", ["real", "plain", "nosummary"])
def test_pull_update_through_ostree_delta(py: Run, c: Run, tmp_path: Path, env: Env, layout: str) -> None:
    """FROM-TO delta (rollsum + bsdiff, made by the real ostree) from the indexed, summary and summary-less layouts."""
    repo = _repo(py, tmp_path / "repo", f"{env.url}/{layout}")
    py(f"--repo={repo}", "pull", "--disable-static-deltas", "origin", f"main@{env.v1}")
    require = ["--require-static-deltas"]
    if layout == "nosummary":
        # as libostree: no summary, no index: requiring deltas fails; else the superblock is asked for directly
        r = py(f"--repo={repo}", "pull", *require, "origin", "main", check=False)
        theirs = _repo(c, tmp_path / "theirs", f"{env.url}/{layout}")
        r2 = c(f"--repo={theirs}", "pull", *require, "origin", "main", check=False)
        assert r.rc == r2.rc == 1 and r.err == r2.err
        require = []
    r = py(f"--repo={repo}", "pull", *require, "origin", "main")
    assert r.out.startswith("1 delta parts, ") and "; 0 bytes content written" in r.out, r.out
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == env.v2
    assert not (repo / "state" / f"{env.v2}.commitpartial").exists()
    _check(py, c, repo, env, env.v2)
    fetched = [line for line in env.nginx.requests() if f"/{layout}/deltas/" in line]
    assert fetched


@pytest.mark.parametrize("layout", ["real", "plain"])
def test_pull_from_scratch_delta(py: Run, c: Run, tmp_path: Path, env: Env, layout: str) -> None:
    repo = _repo(py, tmp_path / "repo", f"{env.url}/{layout}")
    r = py(f"--repo={repo}", "pull", "--require-static-deltas", "origin", "main")
    assert r.out.startswith("1 delta parts, ")
    _check(py, c, repo, env, env.v2)


def test_dry_run_line_as_ostree(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    for base in ("fresh", "update"):
        ours = _repo(py, tmp_path / f"ours-{base}", f"{env.url}/real")
        theirs = _repo(c, tmp_path / f"theirs-{base}", f"{env.url}/real")
        if base == "update":
            py(f"--repo={ours}", "pull", "origin", f"main@{env.v1}")
            c(f"--repo={theirs}", "pull", "origin", f"main@{env.v1}")
        a = py(f"--repo={ours}", "pull", "--dry-run", "--require-static-deltas", "origin", "main").out
        b = c(f"--repo={theirs}", "pull", "--dry-run", "--require-static-deltas", "origin", "main").out
        assert a.startswith("Delta update: 0/1 parts, 0 bytes/")
        assert a == b
        now = py(f"--repo={ours}", "rev-parse", "origin:main", check=False).out.strip()
        assert now == (env.v1 if base == "update" else "")  # nothing written
        assert not (ours / "objects" / env.v2[:2] / f"{env.v2[2:]}.commit").exists()
    r = py(f"--repo={tmp_path / 'ours-fresh'}", "pull", "--dry-run", "origin", "main", check=False)
    assert r.rc == 1 and r.err == "error: --dry-run requires --require-static-deltas\n"


def test_no_delta_falls_back_to_objects_or_fails_when_required(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    repo = _repo(py, tmp_path / "repo", f"{env.url}/nodeltas")
    r = py(f"--repo={repo}", "pull", "--require-static-deltas", "origin", "main", check=False)
    theirs = _repo(c, tmp_path / "theirs", f"{env.url}/nodeltas")
    r2 = c(f"--repo={theirs}", "pull", "--require-static-deltas", "origin", "main", check=False)
    assert r.rc == r2.rc == 1
    assert r.err == r2.err
    r = py(f"--repo={repo}", "pull", "origin", "main")
    assert "content objects fetched" in r.out
    _check(py, c, repo, env, env.v2)


def test_disable_static_deltas_fetches_objects(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    repo = _repo(py, tmp_path / "repo", f"{env.url}/real")
    r = py(f"--repo={repo}", "pull", "--disable-static-deltas", "origin", "main")
    assert "content objects fetched" in r.out and "delta parts" not in r.out
    _check(py, c, repo, env, env.v2)


def test_file_remote_require_static_deltas(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    repo = _repo(py, tmp_path / "repo", f"file://{env.srv / 'real'}")
    py(f"--repo={repo}", "pull", "origin", f"main@{env.v1}")
    r = py(f"--repo={repo}", "pull", "--require-static-deltas", "origin", "main")
    assert r.out.startswith("1 delta parts, ")
    _check(py, c, repo, env, env.v2)


def test_inline_and_fallback_deltas(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    """An inline delta (parts inside the superblock) and one whose big file is a fallback object."""
    for name, flags in (("inline", ["--inline"]), ("fallback", ["--min-fallback-size=1"])):
        src = env.srv / name
        shutil.copytree(env.srv / "plain", src, symlinks=True)
        shutil.rmtree(src / "deltas")
        _ostree(f"--repo={src}", "static-delta", "generate", "--empty", *flags, "main")
        _ostree(f"--repo={src}", "summary", "-u")
        if name == "fallback":
            assert "Number of fallback entries: 0" not in _ostree(f"--repo={src}", "static-delta", "show", env.v2)
        repo = _repo(py, tmp_path / name, f"{env.url}/{name}")
        r = py(f"--repo={repo}", "pull", "--require-static-deltas", "origin", "main")
        assert "delta parts" in r.out
        _check(py, c, repo, env, env.v2, name)


def test_real_ostree_pulls_pyostree_deltas(py: Run, c: Run, tmp_path: Path, env: Env) -> None:
    src = env.srv / "py"
    shutil.copytree(env.srv / "plain", src, symlinks=True)
    shutil.rmtree(src / "deltas")
    py(f"--repo={src}", "static-delta", "generate", "main")
    py(f"--repo={src}", "static-delta", "generate", "--empty", "main")
    py(f"--repo={src}", "summary", "-u")
    for start in (None, env.v1):
        theirs = _repo(c, tmp_path / f"theirs-{start is None}", f"{env.url}/py")
        if start:
            c(f"--repo={theirs}", "pull", "--disable-static-deltas", "origin", f"main@{start}")
        r = c(f"--repo={theirs}", "pull", "--require-static-deltas", "origin", "main")
        assert "delta parts" in r.out
        assert c(f"--repo={theirs}", "fsck").rc == 0
        _check(py, c, theirs, env, env.v2, "py")
        ours = _repo(py, tmp_path / f"ours-{start is None}", f"{env.url}/py")
        if start:
            py(f"--repo={ours}", "pull", "--disable-static-deltas", "origin", f"main@{start}")
        r = py(f"--repo={ours}", "pull", "--require-static-deltas", "origin", "main")
        assert "delta parts" in r.out
        _check(py, c, ours, env, env.v2, "py")


@pytest.mark.parametrize("behaviour", ["truncated", "wrong-part", "wrong-superblock", "404"])
def test_bad_delta_answers(py: Run, c: Run, tmp_path: Path, env: Env, behaviour: str) -> None:
    """A bad part or superblock is refused before anything is stored; a later pull completes."""
    srv = tmp_path / "srv"
    shutil.copytree(env.srv / "plain", srv / "repo", symlinks=True)
    # the FROM-TO delta's directory (deltas/FF/FFFF-TTTT; the modified base64 has no "-")
    d = next(p.parent for p in (srv / "repo" / "deltas").rglob("superblock") if "-" in p.parent.name)
    rel_part = str((d / "0").relative_to(srv))
    with MisbehavingServer(srv) as http:
        repo = _repo(py, tmp_path / "repo", f"{http.url}/repo")
        py(f"--repo={repo}", "pull", "--disable-static-deltas", "origin", f"main@{env.v1}")
        if behaviour == "truncated":
            http.set(rel_part, "truncated")
        elif behaviour == "404":
            http.set(rel_part, "404")
        elif behaviour == "wrong-part":
            data = bytearray((d / "0").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (d / "0").write_bytes(bytes(data))
        else:
            data = bytearray((d / "superblock").read_bytes())
            data[-5] ^= 0xFF
            (d / "superblock").write_bytes(bytes(data))
        r = py(f"--repo={repo}", "pull", "--require-static-deltas", "origin", "main", check=False)
        assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err, r.err
        expect = {"truncated": f"part 0 ({http.url}/{rel_part}) is ",
                  "wrong-part": "Checksum mismatch in static delta part",
                  "wrong-superblock": "Invalid checksum for static delta",
                  "404": f"Server returned HTTP 404: {http.url}/{rel_part}"}[behaviour]
        assert expect in r.err
        assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == env.v1
        assert not (repo / "objects" / env.v2[:2] / f"{env.v2[2:]}.commit").exists()
        assert py(f"--repo={repo}", "fsck").rc == 0 and c(f"--repo={repo}", "fsck").rc == 0
        http.reset()
        py(f"--repo={repo}", "pull", "--disable-static-deltas", "origin", "main")
        assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == env.v2
        assert py(f"--repo={repo}", "fsck").rc == 0 and c(f"--repo={repo}", "fsck").rc == 0
