"""prune leaves exactly the objects the real ostree's prune leaves, and prints the same summary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pyostree.store.prune import parse_branch_depth, parse_date


def _state(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in list((repo / "objects").glob("*/*")) + list((repo / "state").glob("*"))}


@pytest.fixture
def history(tmp_path, c):
    """An archive repo with two branches of dated commits, made by the real ostree."""
    repo = tmp_path / "base"
    c(f"--repo={repo}", "init", "--mode=archive")
    tree = tmp_path / "t"
    tree.mkdir()
    for i in range(1, 5):
        (tree / "f").write_text(f"{i}\n" * i)
        (tree / f"g{i}").write_text(f"{i}\n")
        for br in ("stable", "dev"):
            c(f"--repo={repo}", "commit", "-b", br, f"--tree=dir={tree}", "-s", f"{br}{i}",
              f"--timestamp=2020-01-0{i} 00:00:00 +0000")
    c(f"--repo={repo}", "commit", "--orphan", f"--tree=dir={tree}", "-s", "orphan")
    return repo


ARGS = [
    [],
    ["--refs-only"],
    ["--refs-only", "--depth=0"],
    ["--refs-only", "--depth=1", "--no-prune"],
    ["--depth=0"],
    ["--keep-younger-than=2020-01-03 00:00:00 +0000"],
    ["--refs-only", "--depth=0", "--commit-only"],
    ["--only-branch=dev", "--depth=1"],
    ["--retain-branch-depth=stable=2", "--depth=0"],
    ["--only-branch=dev", "--depth=0", "--retain-branch-depth=stable=1"],
]


@pytest.mark.parametrize("args", ARGS, ids=lambda a: " ".join(a) or "default")
def test_prune_matches_ostree(tmp_path, c, py, history, args):
    mine = tmp_path / "mine"
    theirs = tmp_path / "theirs"
    shutil.copytree(history, mine, symlinks=True)
    shutil.copytree(history, theirs, symlinks=True)
    r1 = py(f"--repo={mine}", "prune", *args)
    r2 = c(f"--repo={theirs}", "prune", *args)
    assert _state(mine) == _state(theirs)
    assert r1.out == r2.out
    assert c(f"--repo={mine}", "fsck", "-q").rc == 0


def test_delete_commit_refused_when_referenced_then_tombstone(tmp_path, py, history, c):
    repo = tmp_path / "r"
    shutil.copytree(history, repo, symlinks=True)
    head = py(f"--repo={repo}", "rev-parse", "dev").out.strip()
    r = py(f"--repo={repo}", "prune", f"--delete-commit={head}", check=False)
    assert r.rc == 1 and f"Commit '{head}' is referenced by 'dev'" in r.err
    parent = py(f"--repo={repo}", "rev-parse", "dev^").out.strip()
    py(f"--repo={repo}", "prune", f"--delete-commit={parent}")
    assert (repo / "objects" / parent[:2] / f"{parent[2:]}.tombstone-commit").exists()
    assert not (repo / "objects" / parent[:2] / f"{parent[2:]}.commit").exists()
    assert "tombstone-commits=true" in (repo / "config").read_text()
    assert c(f"--repo={repo}", "fsck").rc == 0


def test_option_errors(tmp_path, py, history):
    repo = tmp_path / "r"
    shutil.copytree(history, repo, symlinks=True)
    r = py(f"--repo={repo}", "prune", "--retain-branch-depth=stable=BACON", check=False)
    assert r.rc == 1 and "Invalid depth BACON" in r.err
    r = py(f"--repo={repo}", "prune", "--only-branch=BACON", check=False)
    assert r.rc == 1 and "BACON" in r.err and "not found" in r.err
    r = py(f"--repo={repo}", "prune", "--static-deltas-only", check=False)
    assert r.rc == 1 and "--static-deltas-only requires --delete-commit" in r.err
    r = py(f"--repo={repo}", "prune", "--no-prune", "--delete-commit=abc", check=False)
    assert r.rc == 1 and "Cannot specify both --delete-commit and --no-prune" in r.err


def test_parse_helpers():
    assert parse_branch_depth("stable=-1") == ("stable", -1)
    now = 1_700_000_000
    assert parse_date("1 week ago", now) == now - 7 * 86400
    assert parse_date("2 days ago", now) == now - 2 * 86400
    assert parse_date("2005-10-29 12:43:29 +0000") == 1130589809
    assert parse_date("October 25 1985") < parse_date("October 21 2015")


def _b64(csum: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(csum)).decode().rstrip("=").replace("/", "_")


def test_static_deltas_pruned_with_their_commit(tmp_path, py, history):
    repo = tmp_path / "r"
    shutil.copytree(history, repo, symlinks=True)
    head = py(f"--repo={repo}", "rev-parse", "dev").out.strip()
    parent = py(f"--repo={repo}", "rev-parse", "dev^").out.strip()
    gone = "ab" * 32
    deltas = {}
    for frm, to in ((None, head), (parent, head), (None, gone), (head, gone)):
        b = _b64(frm) + "-" + _b64(to) if frm else _b64(to)
        d = repo / "deltas" / b[:2] / b[2:]
        d.mkdir(parents=True)
        (d / "superblock").write_bytes(b"x")
        deltas[(frm, to)] = d
    py(f"--repo={repo}", "prune", "--refs-only")
    assert deltas[(None, head)].exists() and deltas[(parent, head)].exists()
    assert not deltas[(None, gone)].exists() and not deltas[(head, gone)].exists()
    py(f"--repo={repo}", "prune", "--static-deltas-only", f"--delete-commit={head}")
    assert not deltas[(None, head)].exists() and not deltas[(parent, head)].exists()
    assert (repo / "objects" / head[:2] / f"{head[2:]}.commit").exists()
