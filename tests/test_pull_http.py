"""``pyostree pull`` over HTTP from ostree-trivial-httpd serving repos written by the real ostree."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REAL_OSTREE, Result, make_sample_tree, needs_ostree, needs_root

HTTPD = "/usr/libexec/libostree/ostree-trivial-httpd"
TRAVERSE_TAR = "/usr/libexec/installed-tests/libostree/ostree-path-traverse.tar.gz"

pytestmark = [
    needs_ostree,
    pytest.mark.skipif(not os.path.exists(HTTPD), reason="needs ostree-trivial-httpd"),
]

Run = Callable[..., Result]


def _ostree(*args: str | Path) -> str:
    assert REAL_OSTREE is not None
    cp = subprocess.run([REAL_OSTREE, *map(str, args)], capture_output=True, text=True, check=True)
    return cp.stdout


def _serve(root: Path, *extra: str) -> str:
    portfile = root.parent / f"{root.name}.port"
    subprocess.run([HTTPD, "--autoexit", "--daemonize", "-p", str(portfile), *extra, str(root)],
                   check=True, capture_output=True)
    return f"http://127.0.0.1:{portfile.read_text().strip()}"


class Server:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.srv = base / "srv"
        self.srv.mkdir()
        tree = make_sample_tree(base / "tree")
        arch = self.srv / "archive"
        _ostree("init", f"--repo={arch}", "--mode=archive")
        _ostree(f"--repo={arch}", "commit", "-b", "main", "-s", "first", f"--tree=dir={tree}",
                "--timestamp=2005-10-29 12:43:29 +0000")
        (tree / "baz" / "cow").write_text("moo2\n")
        (tree / "newfile").write_text("new\n")
        _ostree(f"--repo={arch}", "commit", "-b", "main", "-s", "second", f"--tree=dir={tree}",
                "--add-detached-metadata-string=SIG=HANCOCK")
        _ostree(f"--repo={arch}", "commit", "-b", "other", "-s", "other", f"--tree=dir={tree / 'baz'}")
        _ostree(f"--repo={arch}", "summary", "-u")
        self.main = _ostree(f"--repo={arch}", "rev-parse", "main").strip()
        self.parent = _ostree(f"--repo={arch}", "rev-parse", "main^").strip()
        # the same commits without a summary: refs come from refs/heads/
        shutil.copytree(arch, self.srv / "nosummary", symlinks=True)
        os.unlink(self.srv / "nosummary" / "summary")
        # a bare-user repo: libostree refuses to pull from it over HTTP
        bu = self.srv / "bareuser"
        _ostree("init", f"--repo={bu}", "--mode=bare-user")
        _ostree(f"--repo={bu}", "commit", "-b", "main", f"--tree=dir={tree}")
        _ostree(f"--repo={bu}", "summary", "-u")
        # a corrupted content object (bytes swapped inside the deflate stream)
        corrupt = self.srv / "corrupt"
        shutil.copytree(arch, corrupt, symlinks=True)
        ls = _ostree(f"--repo={arch}", "ls", "-R", "-C", "main", "/baz/big")
        self.big = ls.split()[4]
        p = corrupt / "objects" / self.big[:2] / f"{self.big[2:]}.filez"
        data = bytearray(p.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(reversed(data[mid:mid + 64]))
        p.write_bytes(bytes(data))
        # upstream's dirtree with "../afile"
        with tarfile.open(TRAVERSE_TAR) as t:
            t.extractall(self.srv, filter="tar")
        # a commit object far over the metadata size limit
        huge = self.srv / "huge"
        shutil.copytree(arch, huge, symlinks=True)
        (huge / "objects" / self.main[:2] / f"{self.main[2:]}.commit").write_bytes(b"\0" * (11 << 20))
        # one content object above the in-memory limit (spooled to a temp file, inflated in bounded steps)
        bigtree = base / "bigtree"
        bigtree.mkdir()
        (bigtree / "huge-file").write_bytes(os.urandom(3 << 20) * 6)
        bigrepo = self.srv / "big"
        _ostree("init", f"--repo={bigrepo}", "--mode=archive")
        _ostree(f"--repo={bigrepo}", "commit", "-b", "main", f"--tree=dir={bigtree}")
        self.url = _serve(self.srv)
        arch_only = [str(arch)]
        self.range_url = _serve_copy(self.base, "range", arch_only, "--force-range-requests")
        self.flaky_url = _serve_copy(self.base, "flaky", arch_only, "--random-500s=50", "--random-500s-max=4")
        with socket.socket() as sk:  # a loopback port nobody listens on
            sk.bind(("127.0.0.1", 0))
            self.dead_url = f"http://127.0.0.1:{sk.getsockname()[1]}"


def _serve_copy(base: Path, name: str, repos: list[str], *flags: str) -> str:
    d = base / f"srv-{name}"
    d.mkdir()
    for r in repos:
        shutil.copytree(r, d / Path(r).name, symlinks=True)
    return _serve(d, *flags)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("pullsrv")
    s = Server(base)
    yield s
    shutil.rmtree(base)  # --autoexit: the servers go away with their directories


def _local(py: Run, path: Path, mode: str, url: str, name: str = "origin") -> Path:
    py("init", f"--repo={path}", f"--mode={mode}")
    py(f"--repo={path}", "remote", "add", "--set=gpg-verify=false", name, url)
    return path


def _no_staging_left(repo: Path) -> bool:
    tmp = repo / "tmp"
    return not tmp.exists() or not [n for n in os.listdir(tmp) if n.startswith("staging-")]


@needs_root
@pytest.mark.parametrize("mode", ["archive", "bare", "bare-user", "bare-user-only"])
def test_pull_into_every_mode_fscks_clean(py: Run, c: Run, tmp_path: Path, server: Server, mode: str) -> None:
    repo = _local(py, tmp_path / "repo", mode, f"{server.url}/archive")
    r = py(f"--repo={repo}", "pull", "origin", "main")
    assert "content objects fetched" in r.out and "content written" in r.out
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == server.main
    assert c(f"--repo={repo}", "fsck").rc == 0
    assert not (repo / "state" / f"{server.main}.commitpartial").exists()
    # the real ostree sees the same tree
    ls_local = c(f"--repo={repo}", "ls", "-R", "-C", "origin:main").out
    ls_remote = c(f"--repo={server.srv / 'archive'}", "ls", "-R", "-C", "main").out
    assert ls_local == ls_remote
    md = c(f"--repo={repo}", "show", "--print-detached-metadata-key=SIG", server.main).out
    assert "HANCOCK" in md
    # nothing left to fetch the second time
    again = py(f"--repo={repo}", "pull", "origin:main")
    # counted as the real ostree counts them: the delta index and .commitmeta requests (404s included)
    theirs = tmp_path / "theirs"
    c("init", f"--repo={theirs}", f"--mode={mode}")
    c(f"--repo={theirs}", "remote", "add", "--set=gpg-verify=false", "origin", f"{server.url}/archive")
    assert c(f"--repo={theirs}", "pull", "origin", "main").out.split(";")[0] == r.out.split(";")[0]
    assert c(f"--repo={theirs}", "pull", "origin", "main").out.split(";")[0] == again.out.split(";")[0]
    assert " metadata, 0 content objects fetched" in again.out


def test_pull_archive_objects_stored_as_served(py: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "origin", "main")
    rel = Path("objects") / server.big[:2] / f"{server.big[2:]}.filez"
    assert (repo / rel).read_bytes() == (server.srv / "archive" / rel).read_bytes()
    assert _no_staging_left(repo)


def test_pull_depth(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "origin", "main")
    assert not (repo / "objects" / server.parent[:2] / f"{server.parent[2:]}.commit").exists()
    py(f"--repo={repo}", "pull", "--depth=-1", "origin", "main")
    assert (repo / "objects" / server.parent[:2] / f"{server.parent[2:]}.commit").exists()
    assert c(f"--repo={repo}", "fsck").rc == 0
    log = c(f"--repo={repo}", "log", "origin:main").out
    assert log.count("commit ") == 2


def test_pull_commit_metadata_only_then_full(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "bare-user", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "--commit-metadata-only", "--depth=1", "origin", "main")
    assert (repo / "state" / f"{server.main}.commitpartial").exists()
    assert not list(repo.glob("objects/*/*.dirtree"))
    assert not list(repo.glob("objects/*/*.file"))
    # the partial commit is completed by a normal pull
    r = py(f"--repo={repo}", "pull", "origin", "main")
    assert not re.search(r"\b0 content objects", r.out)
    assert not (repo / "state" / f"{server.main}.commitpartial").exists()
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_pull_subpath(py: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "--subpath=/baz/deeper", "origin", "main")
    assert (repo / "state" / f"{server.main}.commitpartial").exists()
    ok = py(f"--repo={repo}", "ls", "origin:main", "/baz/deeper/ohyeahx")
    assert "ohyeahx" in ok.out
    assert py(f"--repo={repo}", "ls", "origin:main", "/firstfile", check=False).rc == 1
    assert py(f"--repo={repo}", "ls", "origin:main", "/baz/cow", check=False).rc == 1


def test_pull_without_summary_uses_refs_heads(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "bare-user", f"{server.url}/nosummary")
    py(f"--repo={repo}", "pull", "origin", "main", "other")
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == server.main
    assert c(f"--repo={repo}", "fsck").rc == 0
    r = py(f"--repo={repo}", "pull", "origin", "nosuchref", check=False)
    assert r.rc == 1 and r.err.startswith("error: ") and "nosuchref" in r.err and "404" in r.err


def test_pull_missing_ref_in_summary(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/archive")
    r = py(f"--repo={repo}", "pull", "origin", "nosuchref", check=False)
    want = c(f"--repo={repo}", "pull", "origin", "nosuchref", check=False)
    assert r.rc == want.rc == 1
    assert r.err.strip() == want.err.strip() == "error: No such branch 'nosuchref' in repository summary"


def test_pull_mirror_all_refs(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "--mirror", "origin")
    assert py(f"--repo={repo}", "rev-parse", "main").out.strip() == server.main
    assert py(f"--repo={repo}", "rev-parse", "other").rc == 0
    assert not (repo / "refs" / "remotes" / "origin").exists() or not os.listdir(repo / "refs" / "remotes" / "origin")
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_pull_localcache(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    cache = _local(py, tmp_path / "cache", "archive", f"{server.url}/archive")
    py(f"--repo={cache}", "pull", "origin", "main")
    repo = _local(py, tmp_path / "repo", "bare-user", f"{server.url}/archive")
    r = py(f"--repo={repo}", "pull", f"--localcache-repo={cache}", "origin", "main")
    assert "content objects fetched (" in r.out and "content local)" in r.out
    theirs = tmp_path / "theirs"
    c("init", f"--repo={theirs}", "--mode=bare-user")
    c(f"--repo={theirs}", "remote", "add", "--set=gpg-verify=false", "origin", f"{server.url}/archive")
    r2 = c(f"--repo={theirs}", "pull", f"--localcache-repo={cache}", "origin", "main")
    assert r.out.split(";")[0] == r2.out.split(";")[0]
    # the commit came from the cache, and so did its whole tree
    assert not (repo / "state" / f"{server.main}.commitpartial").exists()
    assert c(f"--repo={repo}", "fsck").rc == 0
    c(f"--repo={repo}", "checkout", "origin:main", tmp_path / "co")


def test_pull_corrupted_object_is_refused(py: Run, tmp_path: Path, server: Server) -> None:
    for mode in ("bare-user", "archive"):
        repo = _local(py, tmp_path / f"repo-{mode}", mode, f"{server.url}/corrupt")
        r = py(f"--repo={repo}", "pull", "origin", "main", check=False)
        assert r.rc == 1, r
        assert r.err.startswith("error: ") and "Corrupted" in r.err and server.big in r.err
        assert "Traceback" not in r.err
        assert py(f"--repo={repo}", "rev-parse", "origin:main", check=False).rc == 1
        assert not list(repo.glob("objects/*/*.commit"))
        assert not list(repo.glob(f"objects/{server.big[:2]}/{server.big[2:]}.*"))
        assert _no_staging_left(repo)


def test_pull_http_trusted_mirror_skips_checksum(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/corrupt")
    py(f"--repo={repo}", "pull", "--mirror", "--http-trusted", "origin", "main")
    assert c(f"--repo={repo}", "fsck", check=False).rc == 1


def test_pull_path_traversal_dirtree(py: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/ostree-path-traverse/repo")
    r = py(f"--repo={repo}", "pull", "origin", "pathtraverse-test", check=False)
    assert r.rc == 1
    assert ("ae9a5d2701a02740aa2ee317ba53b13e3efb0f29609cd4896e1bafeee4caddb5.dirtree: "
            "Invalid / in filename ../afile") in r.err
    assert not list(repo.glob("**/*9a5d2701a02740aa2ee317ba53b13e3efb0f29609cd4896e1bafeee4caddb5.dirtree"))


def test_pull_from_bare_user_remote_refused_like_ostree(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/bareuser")
    r = py(f"--repo={repo}", "pull", "origin", "main", check=False)
    want = c(f"--repo={repo}", "pull", "origin", "main", check=False)
    assert r.rc == want.rc == 1
    assert 'Can\'t pull from archives with mode "bare-user"' in r.err
    assert 'Can\'t pull from archives with mode "bare-user"' in want.err


def test_pull_bad_scheme_and_missing_remote(py: Run, tmp_path: Path) -> None:
    repo = _local(py, tmp_path / "repo", "archive", "badscheme://something", name="broken")
    r = py(f"--repo={repo}", "pull", "broken", "main", check=False)
    assert r.rc == 1 and "Invalid URI scheme in badscheme://something" in r.err
    r = py(f"--repo={repo}", "pull", "nosuchremote", "main", check=False)
    assert r.rc == 1 and r.err.startswith("error: ") and "nosuchremote" in r.err


def test_pull_resumes_truncated_downloads(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "bare-user", f"{server.range_url}/archive")
    py(f"--repo={repo}", "pull", "origin", "main")
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_pull_timestamp_check_refuses_older_commit(py: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "origin", "main")
    r = py(f"--repo={repo}", "pull", "-T", "origin", f"main@{server.parent}", check=False)
    assert r.rc == 1 and "chronologically older" in r.err
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == server.main
    py(f"--repo={repo}", "pull", "origin", f"main@{server.parent}")
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == server.parent


def test_pull_retries_server_errors(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "bare-user", f"{server.flaky_url}/archive")
    py(f"--repo={repo}", "pull", "--network-retries=5", "origin", "main")
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_pull_gives_up_after_network_retries(py: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.dead_url}/archive")
    r = py(f"--repo={repo}", "pull", "--network-retries=1", "origin", "main", check=False)
    assert r.rc == 1
    assert r.err.startswith(f"error: While fetching {server.dead_url}/archive/") and "Traceback" not in r.err
    assert py(f"--repo={repo}", "rev-parse", "origin:main", check=False).rc == 1


def test_pull_refuses_oversized_metadata(py: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "archive", f"{server.url}/huge")
    r = py(f"--repo={repo}", "pull", "origin", "main", check=False)
    assert r.rc == 1 and "Exceeded maximum size" in r.err and f"{server.main[2:]}.commit" in r.err
    assert not list(repo.glob("objects/*/*.commit"))
    assert _no_staging_left(repo)


def test_pull_file_remote_override_and_subpath(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = _local(py, tmp_path / "repo", "bare-user", f"file://{server.srv / 'archive'}")
    r = py(f"--repo={repo}", "pull", "--subpath=/baz", "origin", f"main@{server.parent}")
    assert "content objects imported" in r.out
    assert py(f"--repo={repo}", "rev-parse", "origin:main").out.strip() == server.parent
    assert (repo / "state" / f"{server.parent}.commitpartial").exists()
    assert py(f"--repo={repo}", "ls", "origin:main", "/baz/cow").rc == 0
    py(f"--repo={repo}", "pull", "origin", "main")
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_pull_contenturl(py: Run, c: Run, tmp_path: Path, server: Server) -> None:
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=bare-user")
    py(f"--repo={repo}", "remote", "add", "--set=gpg-verify=false",
       f"--set=contenturl={server.range_url}/archive", "origin", f"{server.url}/archive")
    py(f"--repo={repo}", "pull", "origin", "main")
    assert c(f"--repo={repo}", "fsck").rc == 0
    # content objects come from contenturl only
    bad = tmp_path / "bad"
    py("init", f"--repo={bad}", "--mode=archive")
    py(f"--repo={bad}", "remote", "add", "--set=gpg-verify=false",
       f"--set=contenturl={server.dead_url}/archive", "origin", f"{server.url}/archive")
    r = py(f"--repo={bad}", "pull", "--network-retries=0", "origin", "main", check=False)
    assert r.rc == 1 and f"While fetching {server.dead_url}/archive/objects/" in r.err and ".filez" in r.err


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_pull_large_object_spooled(py: Run, c: Run, tmp_path: Path, server: Server, mode: str) -> None:
    repo = _local(py, tmp_path / "repo", mode, f"{server.url}/big")
    py(f"--repo={repo}", "pull", "origin", "main")
    assert c(f"--repo={repo}", "fsck").rc == 0
    src = server.srv / "big"
    if mode == "archive":
        served = sorted(p.relative_to(src) for p in src.glob("objects/*/*.filez"))
        assert served and all((repo / p).read_bytes() == (src / p).read_bytes() for p in served)
    assert not os.listdir(repo / "tmp") or all(not n.startswith("tmp") for n in os.listdir(repo / "tmp"))


def test_remote_cookies_sent_like_ostree(tmp_path: Path, py: Run, c: Run) -> None:
    """``remote add-cookie/delete-cookie/list-cookies`` keep REPO/NAME.cookies.txt as ostree does,
    and a pull sends the jar's cookies: both tools pull from a server that demands them, with a
    jar written by either tool, and both fail once one cookie is deleted."""
    srv = tmp_path / "srv"
    srv.mkdir()
    tree = make_sample_tree(tmp_path / "tree")
    _ostree("init", f"--repo={srv}/repo", "--mode=archive")
    _ostree(f"--repo={srv}/repo", "commit", "-b", "main", f"--tree=dir={tree}")
    url = _serve(srv, "--expected-cookies", "foo=bar", "--expected-cookies", "baz=badger") + "/repo"
    for writer, reader in ((py, py), (py, c), (c, py)):
        repo = tmp_path / f"repo-{id(writer)}-{id(reader)}"
        reader("init", f"--repo={repo}", "--mode=archive")
        reader(f"--repo={repo}", "remote", "add", "--set=gpg-verify=false", "origin", url)
        assert reader(f"--repo={repo}", "pull", "origin", "main", check=False).rc != 0
        writer(f"--repo={repo}", "remote", "add-cookie", "origin", "127.0.0.1", "/", "foo", "bar")
        writer(f"--repo={repo}", "remote", "add-cookie", "origin", "127.0.0.1", "/", "baz", "badger")
        reader(f"--repo={repo}", "pull", "origin", "main")
        writer(f"--repo={repo}", "remote", "delete-cookie", "origin", "127.0.0.1", "/", "baz", "badger")
        jar = (repo / "origin.cookies.txt").read_text()
        assert "foo\tbar" in jar and "badger" not in jar
        reader(f"--repo={repo}", "prune", "--refs-only", "--depth=0")
        os.unlink(repo / "refs/remotes/origin/main")
        reader(f"--repo={repo}", "prune", "--refs-only")
        assert reader(f"--repo={repo}", "pull", "origin", "main", check=False).rc != 0
    listed = py(f"--repo={repo}", "remote", "list-cookies", "origin").out
    assert re.fullmatch(r"--\nDomain: 127\.0\.0\.1\nPath: /\nName: foo\nSecure: FALSE\n"
                        r"Expires: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\nValue: bar\n", listed)
    bad = py(f"--repo={repo}", "remote", "add-cookie", "../x", "h", "/", "n", "v", check=False)
    assert bad.rc == 1 and bad.err.startswith("error: ") and not (tmp_path / "x.cookies.txt").exists()
