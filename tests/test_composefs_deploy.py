"""admin deploy with composefs: .ostree.cfs in the deployment, mounted as ostree-prepare-root does."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from conftest import needs_ostree, needs_overlayfs, needs_root
from test_admin import ENV, REF, _deploy, _deployment_dir, _sysroot, osrepo  # noqa: F401 (fixture)
from test_composefs_mount import entries

pytestmark = [needs_root, needs_ostree, needs_overlayfs]


def _mount(py, sr: Path, mnt: Path) -> None:
    mnt.mkdir()
    py("admin", "composefs-mount", f"--sysroot={sr}", "0", mnt, env=ENV)


def _umount(mnt: Path) -> None:
    subprocess.run(["umount", str(mnt)], check=True, timeout=60)


def test_deploy_writes_image_and_mount_matches(osrepo: Path, tmp_path: Path, py, c) -> None:  # noqa: F811
    sr = _sysroot(tmp_path, "sr", py, c, osrepo)
    py(f"--repo={sr}/ostree/repo", "config", "set", "ex-integrity.composefs", "true")
    _deploy(py, sr, "--karg=root=LABEL=foo")
    dep = _deployment_dir(sr)
    image = dep / ".ostree.cfs"
    assert image.is_file() and stat.S_IMODE(image.stat().st_mode) == 0o644
    # the same image checkout --composefs-noverity gives (no object has fs-verity here: "maybe")
    py(f"--repo={sr}/ostree/repo", "checkout", "--composefs-noverity", f"testos:{REF}", tmp_path / "x.cfs")
    assert image.read_bytes() == (tmp_path / "x.cfs").read_bytes()
    mnt = tmp_path / "mnt"
    _mount(py, sr, mnt)
    try:
        em, ed = entries(mnt), entries(dep)
        only_dep = set(ed) - set(em)
        only_mnt = set(em) - set(ed)
        # the deployment's own: the image, /etc (from /usr/etc), the whiteouts made from markers
        assert only_dep - {".ostree.cfs"} == {p for p in only_dep if p.startswith("etc")} | {
            "usr/container/layers/abcd/whiteout", "usr/container/layers/abcd/whiteout2"}
        assert only_mnt <= {"usr/container/layers/abcd/.ostree-wh.whiteout",
                            "usr/container/layers/abcd/.ostree-wh.whiteout2", "sysroot", "boot", "var"}
        for k in set(em) & set(ed) - {"."}:
            if k == "etc":
                continue
            assert em[k] == ed[k], k
        assert (mnt / "usr/bin/sh").read_text() == "an executable 1\n"
    finally:
        _umount(mnt)


def test_no_image_without_composefs(osrepo: Path, tmp_path: Path, py, c) -> None:  # noqa: F811
    sr = _sysroot(tmp_path, "sr", py, c, osrepo)
    _deploy(py, sr)
    assert not (_deployment_dir(sr) / ".ostree.cfs").exists()
    r = py("admin", "composefs-mount", f"--sysroot={sr}", "0", tmp_path, env=ENV, check=False)
    assert r.rc == 1 and "No composefs image in deployment" in r.err


def test_prepare_root_conf_verity_with_passthrough_digest(osrepo: Path, tmp_path: Path, py, c) -> None:  # noqa: F811
    """composefs.enabled=verity in the tree: every digest, checked against the commit's."""
    sr = _sysroot(tmp_path, "sr", py, c, osrepo)
    repo = f"--repo={sr}/ostree/repo"
    co = tmp_path / "tree"
    py(repo, "checkout", f"testos:{REF}", co)
    (co / "usr/lib/ostree").mkdir(parents=True)
    (co / "usr/lib/ostree/prepare-root.conf").write_text("[composefs]\nenabled = verity\n")
    py(repo, "commit", "-b", "cfs", "--generate-composefs-metadata", "--process-passthrough-whiteouts", co)
    py("admin", "deploy", f"--sysroot={sr}", "--os=testos", "cfs", env=ENV)
    dep = _deployment_dir(sr)
    assert (dep / ".ostree.cfs").is_file()
    digest = py(repo, "show", "--print-hex", "--print-metadata-key", "ostree.composefs.digest.v0", "cfs").out.strip()
    out = subprocess.run(["fsverity", "digest", "--compact", str(dep / ".ostree.cfs")], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == digest
    mnt = tmp_path / "mnt"
    _mount(py, sr, mnt)
    try:
        wh = mnt / "usr/container/layers/abcd/whiteout2"
        assert stat.S_ISREG(wh.lstat().st_mode) and wh.lstat().st_uid == 42
        assert os.getxattr(wh, "trusted.overlay.whiteout") == b""
        assert not (mnt / "usr/container/layers/abcd/.ostree-wh.whiteout2").exists()
    finally:
        _umount(mnt)
    # a commit whose digest does not match its tree is refused at deploy
    bad = "[byte " + ", ".join(["0x00"] * 32) + "]"
    py(repo, "commit", "-b", "bad", "--tree=ref=cfs", f"--add-metadata=ostree.composefs.digest.v0={bad}")
    r = py("admin", "deploy", f"--sysroot={sr}", "--os=testos", "bad", env=ENV, check=False)
    assert r.rc == 1 and "doesn't match expected digest" in r.err
