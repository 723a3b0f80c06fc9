"""PR 2717's lifecycle without the hand-written rename loop.

skopeo writes an image into containers-storage (real char 0:0 whiteouts and
opaque xattrs in ROOT/overlay/*/diff); ``commit --retarget-whiteouts`` stores
ROOT; ``checkout --process-passthrough-whiteouts`` (pyostree's and the real
ostree's) gives it back; podman uses the checkout as an additional image store.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_ostree, needs_overlayfs, needs_root
from test_container import build_layout, entry, make_tar, snapshot

TOOLS = all(shutil.which(t) for t in ("skopeo", "podman", "umoci"))
needs_tools = pytest.mark.skipif(not TOOLS, reason="needs skopeo, podman and umoci")


def seed_image(tmp_path: Path) -> dict[str, Any]:
    """The seed's two-layer image in ``tmp_path/img:t`` (a file deleted by a whiteout, an opaque
    directory), and umoci's unpack of it as the reference tree (``snapshot`` without ``.``)."""
    layers = [
        make_tar([entry("etc/", tarfile.DIRTYPE, mode=0o755), entry("etc/keep", data=b"keep\n"),
                  entry("etc/deleted", data=b"gone\n"), entry("opt/", tarfile.DIRTYPE, mode=0o755),
                  entry("opt/dir/", tarfile.DIRTYPE, mode=0o755), entry("opt/dir/old", data=b"old\n"),
                  entry("bin/", tarfile.DIRTYPE, mode=0o755), entry("bin/true", data=b"#!/bin/sh\n", mode=0o755)]),
        make_tar([entry("etc/", tarfile.DIRTYPE, mode=0o755), entry("etc/.wh.deleted"),
                  entry("opt/dir/", tarfile.DIRTYPE, mode=0o700), entry("opt/dir/.wh..wh..opq"),
                  entry("opt/dir/new", data=b"new\n")]),
    ]
    build_layout(tmp_path / "img", [(t, "gzip") for t in layers])
    _run("umoci", "unpack", "--image", f"{tmp_path}/img:t", tmp_path / "reference")
    want = snapshot(tmp_path / "reference/rootfs")
    want.pop(".")
    return want


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    full = dict(os.environ)
    full.update(env or {})
    cp = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=full)
    if cp.returncode != 0:
        raise AssertionError(f"{args} failed: {cp.stdout}{cp.stderr}")
    return cp.stdout


@needs_root
@needs_overlayfs
@needs_ostree
@needs_tools
@pytest.mark.parametrize("mode", ["bare", "bare-user-only", "archive"])
def test_skopeo_commit_checkout_podman(tmp_path: Path, py, c, mode: str) -> None:
    want = seed_image(tmp_path)

    root, run = tmp_path / "storage", tmp_path / "run"
    try:
        _lifecycle(tmp_path, root, run, want, py, c, mode)
    finally:
        # containers-storage leaves ROOT/overlay bind-mounted onto itself
        for d in (root, tmp_path / "gr-pyostree", tmp_path / "gr-ostree"):
            subprocess.run(["umount", str(d / "overlay")], capture_output=True, check=False)


def _lifecycle(tmp_path: Path, root: Path, run: Path, want: dict[str, object], py: Any, c: Any,
               mode: str) -> None:
    _run("skopeo", "copy", f"oci:{tmp_path}/img:t",
         f"containers-storage:[overlay@{root}+{run}]localhost/lifecycle:t")
    diffs = list((root / "overlay").glob("*/diff"))
    whiteouts = [p for d in diffs for p in d.rglob("*")
                 if stat.S_ISCHR(os.lstat(p).st_mode) and os.lstat(p).st_rdev == 0]
    assert [p.name for p in whiteouts] == ["deleted"]
    opaque = [d / "opt/dir" for d in diffs if (d / "opt/dir/new").exists()]
    assert os.getxattr(opaque[0], "trusted.overlay.opaque") == b"y"

    py("init", f"--repo={tmp_path}/repo", f"--mode={mode}")
    py("commit", f"--repo={tmp_path}/repo", "-b", "storage", "--retarget-whiteouts", root)
    checkouts = {"pyostree": tmp_path / "co-py", "ostree": tmp_path / "co-real"}
    py("checkout", f"--repo={tmp_path}/repo", "--process-passthrough-whiteouts", "storage", checkouts["pyostree"])
    if mode == "bare-user-only":
        # no xattrs in the repo: only pyostree knows the opaque marker
        del checkouts["ostree"]
    else:
        c("checkout", f"--repo={tmp_path}/repo", "--process-passthrough-whiteouts", "storage",
          checkouts["ostree"])

    for tool, co in checkouts.items():
        rel = whiteouts[0].relative_to(root)
        st = os.lstat(co / rel)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, tool
        assert os.getxattr(co / opaque[0].relative_to(root), "trusted.overlay.opaque") == b"y"
        conf = tmp_path / f"storage-{tool}.conf"
        conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp_path}/gr-{tool}"\n'
                        f'runroot = "{tmp_path}/rr-{tool}"\n[storage.options]\n'
                        f'additionalimagestores = ["{co}"]\n')
        env = {"CONTAINERS_STORAGE_CONF": str(conf)}
        images = _run("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", env=env)
        assert "localhost/lifecycle:t" in images.split(), (tool, images)
        cid = _run("podman", "create", "localhost/lifecycle:t", "/bin/true", env=env).strip()
        try:
            merged = Path(_run("podman", "mount", cid, env=env).strip())
            try:
                got = snapshot(merged)
                got.pop(".")
                assert got == want, tool
                assert not (merged / "etc/deleted").exists() and not (merged / "opt/dir/old").exists()
            finally:
                _run("podman", "umount", cid, env=env)
        finally:
            _run("podman", "rm", "-f", cid, env=env)
