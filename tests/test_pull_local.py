"""pull-local between every pair of repository modes; the real ostree fscks the result."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_root

MODES = ["bare", "archive", "bare-user", "bare-user-only"]


def _objects(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in (repo / "objects").glob("*/*")}


@needs_root
@pytest.mark.parametrize("dst", MODES)
@pytest.mark.parametrize("src", MODES)
def test_pull_local_mode_matrix(tmp_path, c, py, sample_tree, src, dst):
    s = tmp_path / "src"
    d = tmp_path / "dst"
    c(f"--repo={s}", "init", f"--mode={src}")
    rev = c(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x",
            "--canonical-permissions" if "only" in src else "--no-xattrs").out.strip()
    py(f"--repo={d}", "init", f"--mode={dst}")
    r = py(f"--repo={d}", "pull-local", str(s))
    assert "metadata, " in r.out and "content objects imported; " in r.out and "content written" in r.out
    assert c(f"--repo={d}", "fsck").rc == 0
    assert c(f"--repo={d}", "rev-parse", "main").out.strip() == rev
    # the same objects as the real ostree would have copied
    e = tmp_path / "expect"
    c(f"--repo={e}", "init", f"--mode={dst}")
    c(f"--repo={e}", "pull-local", str(s))
    assert _objects(d) == _objects(e)
    assert r.out == c(f"--repo={tmp_path / 'again'}", "init", f"--mode={dst}").out + \
        c(f"--repo={tmp_path / 'again'}", "pull-local", str(s)).out


def test_untrusted_hardlinks_and_detects_corruption(tmp_path, py, sample_tree):
    s = tmp_path / "src"
    py(f"--repo={s}", "init", "--mode=bare-user")
    py(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x")
    d = tmp_path / "dst"
    py(f"--repo={d}", "init", "--mode=bare-user")
    py(f"--repo={d}", "pull-local", "--untrusted", str(s), "main")
    for rel in _objects(s):
        assert os.stat(s / rel).st_ino == os.stat(d / rel).st_ino
    # corrupt a copy of one content object in a third repo
    t = tmp_path / "third"
    py(f"--repo={t}", "init", "--mode=bare-user")
    py(f"--repo={t}", "pull-local", str(s))
    victim = next(p for p in sorted((t / "objects").glob("*/*.file")) if p.stat().st_size > 100)
    data = victim.read_bytes()
    meta = os.getxattr(victim, "user.ostreemeta")
    victim.unlink()
    victim.write_bytes(data + b"blah")
    os.setxattr(victim, "user.ostreemeta", meta)
    csum = victim.parent.name + victim.name.split(".")[0]
    d2 = tmp_path / "dst2"
    py(f"--repo={d2}", "init", "--mode=bare-user")
    r = py(f"--repo={d2}", "pull-local", "--untrusted", str(t), check=False)
    assert r.rc == 1 and "Corrupted" in r.err and csum in r.err and "Traceback" not in r.err
    py(f"--repo={d2}", "pull-local", str(t))
    r = py(f"--repo={d2}", "fsck", check=False)
    assert r.rc == 1 and csum in r.err


def test_commit_metadata_only_depth_and_remote(tmp_path, py, sample_tree):
    s = tmp_path / "src"
    py(f"--repo={s}", "init", "--mode=archive")
    first = py(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "1").out.strip()
    (sample_tree / "new").write_text("new\n")
    second = py(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "2").out.strip()
    d = tmp_path / "dst"
    py(f"--repo={d}", "init", "--mode=archive")
    py(f"--repo={d}", "pull-local", "--commit-metadata-only", "--depth=1", str(s), "main")
    assert (d / "state" / f"{first}.commitpartial").exists()
    assert (d / "state" / f"{second}.commitpartial").exists()
    assert not list((d / "objects").glob("*/*.filez"))
    py(f"--repo={d}", "pull-local", "--depth=-1", str(s))
    assert not list((d / "state").glob("*.commitpartial"))
    py(f"--repo={d}", "fsck")
    py(f"--repo={d}", "pull-local", "--remote=aremote", str(s), "main")
    assert py(f"--repo={d}", "rev-parse", "aremote:main").out.strip() == second


def test_bareuseronly_files_rejects_suid(tmp_path, py):
    tree = tmp_path / "tree"
    tree.mkdir()
    f = tree / "suid"
    f.write_text("x\n")
    f.chmod(0o4755)
    s = tmp_path / "src"
    py(f"--repo={s}", "init", "--mode=archive")
    py(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={tree}", "-s", "x")
    d = tmp_path / "dst"
    py(f"--repo={d}", "init", "--mode=archive")
    r = py(f"--repo={d}", "pull-local", "--bareuseronly-files", str(s), "main", check=False)
    assert r.rc == 1
    assert "Content object" in r.err and "invalid mode" in r.err and "with bits 04000" in r.err
    assert stat.S_IMODE(f.stat().st_mode) == 0o4755


def test_missing_head_commit_and_bad_source(tmp_path, py, sample_tree):
    s = tmp_path / "src"
    py(f"--repo={s}", "init", "--mode=archive")
    rev = py(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x").out.strip()
    (s / "objects" / rev[:2] / f"{rev[2:]}.commit").unlink()
    d = tmp_path / "dst"
    py(f"--repo={d}", "init", "--mode=archive")
    r = py(f"--repo={d}", "pull-local", "--depth=-1", str(s), check=False)
    assert r.rc == 1 and rev in r.err
    r = py(f"--repo={d}", "pull-local", str(tmp_path / "nonexistent"), check=False)
    assert r.rc == 1 and r.err.startswith("error: ")


def test_trusted_same_mode_links_incrementally(tmp_path, c, py, sample_tree):
    """Trusted same-mode pulls hardlink every object; a second pull into a populated
    repository (some objects/XX/ present, one present but empty) stores what the
    real ostree stores; objects the source keeps in its parent repository are found
    (pyostree's way, older than the fast path)."""
    s = tmp_path / "src"
    c(f"--repo={s}", "init", "--mode=bare-user")
    c(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "1")
    d, e = tmp_path / "dst", tmp_path / "expect"
    for repo in (d, e):
        c(f"--repo={repo}", "init", "--mode=bare-user")
    r = py(f"--repo={d}", "pull-local", str(s), "main")
    assert r.out == c(f"--repo={e}", "pull-local", str(s), "main").out
    for rel in _objects(s):
        assert os.stat(s / rel).st_ino == os.stat(d / rel).st_ino
    assert not [p for p in (d / "tmp").iterdir() if p.name.startswith("staging-")]
    (sample_tree / "new-file").write_text("new\n")
    (sample_tree / "newdir").mkdir()
    (sample_tree / "newdir" / "f").write_text("f\n")
    second = c(f"--repo={s}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "2").out.strip()
    # an empty objects/XX/ (left by prune, or a concurrent writer) for the new commit's prefix
    (d / "objects" / second[:2]).mkdir(exist_ok=True)
    r = py(f"--repo={d}", "pull-local", str(s), "main")
    assert r.out == c(f"--repo={e}", "pull-local", str(s), "main").out
    assert _objects(d) == _objects(e)
    assert c(f"--repo={d}", "fsck").rc == 0
    assert c(f"--repo={d}", "rev-parse", "main").out.strip() == second
    assert not list((d / "state").glob("*.commitpartial"))
    # a source whose objects are mostly in its parent
    child = tmp_path / "child"
    c(f"--repo={child}", "init", "--mode=bare-user")
    c(f"--repo={child}", "config", "set", "core.parent", str(s))
    (sample_tree / "child-file").write_text("child\n")
    third = c(f"--repo={child}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "3").out.strip()
    shared = [rel for rel in _objects(child) if (s / rel).exists()]
    assert shared
    for rel in shared:
        (child / rel).unlink()
    d2 = tmp_path / "dst2"
    c(f"--repo={d2}", "init", "--mode=bare-user")
    # (ostree 2022.7 fails here: "linkat: No such file or directory"; pyostree reads the parent)
    py(f"--repo={d2}", "pull-local", str(child), "main")
    assert _objects(d2) >= set(shared)
    assert c(f"--repo={d2}", "fsck").rc == 0
    assert c(f"--repo={d2}", "rev-parse", "main").out.strip() == third


def test_pull_verifies_ref_and_collection_bindings(tmp_path: Path, py: Callable[..., Result],
                                                   c: Callable[..., Result]) -> None:
    """A commit pulled by a ref must be bound to that ref, and from a repository with a
    collection ID to that collection (libostree's pull check); --disable-verify-bindings skips
    it. pull-local and pull (file://) of both tools agree on every case."""
    src = tmp_path / "src"
    c("init", f"--repo={src}", "--mode=archive", "--collection-id=org.example.Coll")
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("x")
    c(f"--repo={src}", "commit", "-b", "good", f"--tree=dir={tree}")
    good = c(f"--repo={src}", "rev-parse", "good").out.strip()
    c(f"--repo={src}", "refs", "--create=alias-not-bound", good)
    c(f"--repo={src}", "commit", "-b", "wrongcoll", f"--tree=dir={tree}",
      "--add-metadata-string=ostree.collection-binding=org.example.Other")
    c(f"--repo={src}", "summary", "-u")
    results: dict[str, list[int]] = {}
    for name, tool in (("py", py), ("c", c)):
        rcs = []
        for ref in ("good", "alias-not-bound", "wrongcoll"):
            for extra in ([], ["--disable-verify-bindings"]):
                dest = tmp_path / f"{name}-{ref}-{len(extra)}"
                tool("init", f"--repo={dest}", "--mode=archive")
                rcs.append(tool(f"--repo={dest}", "pull-local", *extra, str(src), ref, check=False).rc)
                tool(f"--repo={dest}", "remote", "add", "--no-gpg-verify",
                     "--collection-id=org.example.Coll", "o", f"file://{src}")
                r = tool(f"--repo={dest}", "pull", *extra, "o", ref, check=False)
                rcs.append(r.rc)
                if r.rc:
                    assert "binding" in r.err and r.err.startswith("error: ")
        results[name] = rcs
    assert results["py"] == results["c"]
    assert results["py"] == [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0]


def test_create_usb_like_ostree(tmp_path: Path, py: Callable[..., Result], c: Callable[..., Result]) -> None:
    """``create-usb``: the refs as mirrored collection refs in an archive repo on the mount, a
    summary, a repos.d link for a non-standard place; the real ostree pulls from what we wrote."""
    src = tmp_path / "src"
    c("init", f"--repo={src}", "--mode=archive", "--collection-id=org.example.C1")
    tree = tmp_path / "t"
    tree.mkdir()
    for i in (1, 2, 3):
        (tree / "a").write_text("a" * i)
        c(f"--repo={src}", "commit", f"--branch=test-{i}", f"--tree=dir={tree}")
    local = tmp_path / "local"
    c("init", f"--repo={local}", "--mode=archive")
    c(f"--repo={local}", "remote", "add", "--no-gpg-verify", "--collection-id=org.example.C1", "r1",
      f"file://{src}")
    c(f"--repo={local}", "pull", "r1", "test-1", "test-2", "test-3")
    listings = {}
    for name, tool in (("py", py), ("c", c)):
        mnt = tmp_path / f"mnt-{name}"
        mnt.mkdir()
        out = tool(f"--repo={local}", "create-usb", "--destination-repo=some-dest", str(mnt),
                   "org.example.C1", "test-1", "org.example.C1", "test-2").out
        assert out.startswith(f"Copied 2/2 refs successfully from \u2018{local}\u2019")
        link = mnt / ".ostree/repos.d/00-generated"
        assert os.readlink(link) == "../../some-dest"
        assert (mnt / "some-dest/summary").is_file()
        assert (mnt / "some-dest/config").read_text().count("mode=archive") == 1
        listings[name] = (c(f"--repo={link}", "refs", "--collections").out,
                          sorted(p.name for p in (mnt / "some-dest/refs/mirrors/org.example.C1").iterdir()))
        # the other tool pulls from what this one wrote
        other = c if tool is py else py
        dest = tmp_path / f"from-{name}"
        other("init", f"--repo={dest}", "--mode=archive")
        rev = (mnt / "some-dest/refs/mirrors/org.example.C1/test-1").read_text().strip()
        other(f"--repo={dest}", "pull-local", str(mnt / "some-dest"), rev)
        assert other(f"--repo={dest}", "cat", rev, "/a").out == "a"
        other(f"--repo={dest}", "fsck")
    assert listings["py"] == listings["c"]
    assert sorted(listings["py"][0].splitlines()) == ["(org.example.C1, test-1)", "(org.example.C1, test-2)"]
