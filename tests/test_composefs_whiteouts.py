"""The seed's whiteouts on composefs (beyond ostree): ``--process-passthrough-whiteouts`` turns
``.ostree-wh.NAME`` into an escaped whiteout that overlayfs honours when the composefs mount is
itself a lower layer.  Checked on the real kernel against the hardlink checkout."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import needs_overlayfs, needs_root
from test_composefs_mount import entries, mounted

pytestmark = [needs_root, needs_overlayfs]

ESCAPED = {"trusted.overlay.whiteout": b"", "user.overlay.whiteout": b""}
DIR_MARKS = {"trusted.overlay.whiteouts": b"", "trusted.overlay.opaque": b"x",
             "user.overlay.whiteouts": b"", "user.overlay.opaque": b"x"}


def make_layer(root: Path) -> Path:
    """An upper layer as container storage holds it: whiteouts, opaque dirs, a deleted root file."""
    (root / "d").mkdir(parents=True)
    (root / "d" / ".ostree-wh.victim").touch()  # quoted by hand (PR 2717's workflow)
    (root / "d" / "kept").write_text("kept\n")
    (root / "d2").mkdir()
    os.mknod(root / "d2" / "retargeted", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # --retarget-whiteouts
    os.chown(root / "d2" / "retargeted", 12, 34)
    (root / "opq").mkdir()
    (root / "opq" / ".ostree-wh..wh..opq").touch()  # opaque marker
    (root / "opq" / "new").write_text("new\n")
    (root / "opq2").mkdir()
    os.setxattr(root / "opq2", "trusted.overlay.opaque", b"y")  # opaque dir kept in the dirmeta
    (root / "opq2" / ".ostree-wh.gone").touch()  # a whiteout inside an opaque dir hides nothing
    (root / ".ostree-wh.rootgone").touch()
    (root / "ünï").mkdir()
    (root / "ünï" / ".ostree-wh.日本").touch()
    for d in ("usr", "etc", "boot", "var", "sysroot"):
        (root / d).mkdir()
    return root


def make_lower(root: Path) -> Path:
    for rel, text in (("d/victim", "hidden"), ("d/other", "visible"), ("d2/retargeted", "hidden"),
                      ("d2/stay", "visible"), ("opq/old", "hidden"), ("opq2/old2", "hidden"),
                      ("rootgone", "hidden"), ("ünï/日本", "hidden"), ("ünï/x", "visible")):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    return root


@contextmanager
def overlay(lowers: list[Path], mnt: Path) -> Iterator[Path]:
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "nested", "-o", "ro,lowerdir=" + ":".join(map(str, lowers)),
                    str(mnt)], check=True, capture_output=True, timeout=60)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)


@pytest.fixture
def layer_repo(py, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    py("--repo", repo, "init", "--mode=bare")
    layer = make_layer(tmp_path / "layer")
    py("--repo", repo, "commit", "--retarget-whiteouts", "-b", "layer", "--generate-composefs-metadata",
       "--process-passthrough-whiteouts", layer)
    py("--repo", repo, "commit", "--retarget-whiteouts", "-b", "plain", "--generate-composefs-metadata", layer)
    return repo


def test_mount_shows_escaped_whiteouts(py, layer_repo: Path, tmp_path: Path) -> None:
    repo = layer_repo
    co = tmp_path / "co"
    py("--repo", repo, "checkout", "--process-passthrough-whiteouts", "layer", co)
    image = tmp_path / "layer.cfs"
    py("--repo", repo, "checkout", "--composefs", "--process-passthrough-whiteouts", "layer", image)
    with mounted(image, repo / "objects", tmp_path / "mnt") as mnt:
        ec, em = entries(co), entries(mnt)
        whiteouts = {k for k, e in ec.items() if stat.S_ISCHR(int(e["mode"], 8))}
        assert whiteouts == {"d/victim", "d2/retargeted", "rootgone", "opq2/gone", "ünï/日本"}
        # the whiteout inside the opaque directory is left out of the image
        assert set(ec) - set(em) == {"opq2/gone"}
        assert set(em) == set(ec) - {"opq2/gone"}
        for k in em:
            a, b = ec[k], em[k]
            if k in whiteouts:
                # a regular empty file with the device's permissions, owner and the escaped marks
                assert stat.S_ISREG(int(b["mode"], 8)) and b["size"] == 0, k
                assert stat.S_IMODE(int(a["mode"], 8)) == stat.S_IMODE(int(b["mode"], 8)), k
                assert (a["uid"], a["gid"]) == (b["uid"], b["gid"]), k
                assert b["xattrs"] == {**a["xattrs"], **ESCAPED}, k
            elif k in {"d", "d2", ".", "ünï"}:
                assert b["xattrs"] == {**a["xattrs"], **DIR_MARKS}, k
                assert {**a, "xattrs": None} == {**b, "xattrs": None}, k
            else:
                assert a == b, k
        assert em["opq"]["xattrs"]["trusted.overlay.opaque"] == b"y"
        assert em["opq2"]["xattrs"]["trusted.overlay.opaque"] == b"y"
        assert (tmp_path / "mnt" / "d2" / "retargeted").stat().st_uid == 12

        # as a lower layer, the composefs mount hides what the checkout hides (kernel 6.18)
        lower = make_lower(tmp_path / "lower")
        with overlay([mnt, lower], tmp_path / "merged-cfs") as m1, \
                overlay([co, lower], tmp_path / "merged-co") as m2:
            e1, e2 = entries(m1), entries(m2)
            # kernel 6.18: a whiteout inside an opaque lower directory is still listed by readdir
            # (the directory is not merged) but not found; the image leaves it out altogether
            assert e2.pop("opq2/gone") == {"readdir_only": True}
            assert sorted(e1) == sorted(e2)
            for k in e1:  # the composefs side still carries the xwhiteouts markers on directories
                x1 = {n: v for n, v in e1[k]["xattrs"].items() if n not in DIR_MARKS}
                assert {**e1[k], "xattrs": x1} == {**e2[k], "xattrs": e2[k]["xattrs"]}, k
            for gone in ("d/victim", "d2/retargeted", "rootgone", "opq/old", "opq2/old2", "ünï/日本"):
                assert gone not in e1
                assert not os.path.lexists(m1 / gone)
            for there in ("d/other", "d2/stay", "d/kept", "opq/new", "ünï/x"):
                assert there in e1


def test_default_image_is_ostrees(py, layer_repo: Path, tmp_path: Path) -> None:
    """Without the flag the markers stay regular .ostree-wh. files, as ostree 2026.4 builds them."""
    image = tmp_path / "plain.cfs"
    py("--repo", layer_repo, "checkout", "--composefs", "plain", image)
    with mounted(image, layer_repo / "objects", tmp_path / "mnt") as mnt:
        assert (mnt / "d" / ".ostree-wh.victim").is_file()
        assert not os.path.lexists(mnt / "d" / "victim")
        assert "trusted.overlay.whiteouts" not in os.listxattr(mnt / "d")


def test_digest_records_how_it_was_made(py, layer_repo: Path, tmp_path: Path) -> None:
    repo = layer_repo
    show = ["show", "--print-metadata-key", "pyostree.composefs.process-passthrough-whiteouts"]
    assert py("--repo", repo, *show, "layer").out.strip() == "true"
    assert py("--repo", repo, *show, "plain", check=False).rc == 1
    d1 = py("--repo", repo, "show", "--print-hex", "--print-metadata-key", "ostree.composefs.digest.v0",
            "layer").out.strip()
    d2 = py("--repo", repo, "show", "--print-hex", "--print-metadata-key", "ostree.composefs.digest.v0",
            "plain").out.strip()
    assert d1 != d2
    py("--repo", repo, "checkout", "--composefs", "--process-passthrough-whiteouts", "layer", tmp_path / "a.cfs")
    r = py("--repo", repo, "checkout", "--composefs", "layer", tmp_path / "b.cfs", check=False)
    assert r.rc == 1 and "doesn't match expected digest" in r.err
    assert "made with --process-passthrough-whiteouts" in r.err
    assert not (tmp_path / "b.cfs").exists()
    py("--repo", repo, "checkout", "--composefs", "plain", tmp_path / "c.cfs")
    assert "Verifying composefs digests of 2 commits" in py("--repo", repo, "fsck").out
    r = py("--repo", repo, "commit", "--process-passthrough-whiteouts", "-b", "x", tmp_path / "layer",
           check=False)
    assert r.rc == 1 and "requires --generate-composefs-metadata" in r.err


def test_bad_whiteout_name_is_an_error(py, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    py("--repo", repo, "init", "--mode=bare")
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / ".ostree-wh.").touch()
    py("--repo", repo, "commit", "-b", "bad", layer)
    r = py("--repo", repo, "checkout", "--composefs", "--process-passthrough-whiteouts", "bad",
           tmp_path / "bad.cfs", check=False)
    assert r.rc == 1 and r.err.startswith("error: ") and "Invalid empty overlayfs whiteout" in r.err
    assert not (tmp_path / "bad.cfs").exists()
