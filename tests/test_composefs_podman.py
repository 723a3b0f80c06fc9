"""The seed on composefs: containers-storage committed with --retarget-whiteouts, its composefs image
(with --process-passthrough-whiteouts) mounted by the kernel and named in additionalimagestores;
podman lists the image and a container made from it shows the deleted files absent."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import needs_overlayfs, needs_root
from test_composefs_mount import mounted
from test_container import snapshot
from test_container_lifecycle import _run, needs_tools, seed_image


@needs_root
@needs_overlayfs
@needs_tools
@pytest.mark.parametrize("mode", ["bare", "bare-user"])
def test_containers_storage_through_composefs(tmp_path: Path, py, mode: str) -> None:
    want = seed_image(tmp_path)
    root, run = tmp_path / "storage", tmp_path / "run"
    gr = tmp_path / "graphroot"
    try:
        _run("skopeo", "copy", f"oci:{tmp_path}/img:t",
             f"containers-storage:[overlay@{root}+{run}]localhost/seed:t")
        subprocess.run(["umount", str(root / "overlay")], capture_output=True, check=False)
        repo = tmp_path / "repo"
        py("init", f"--repo={repo}", f"--mode={mode}")
        py("commit", f"--repo={repo}", "-b", "storage", "--retarget-whiteouts", "--generate-composefs-metadata",
           "--process-passthrough-whiteouts", root)
        image = tmp_path / "storage.cfs"
        py("checkout", f"--repo={repo}", "--composefs", "--process-passthrough-whiteouts", "storage", image)
        with mounted(image, repo / "objects", tmp_path / "store") as store:
            # layer 2's whiteout is an empty regular file carrying the escaped marks
            wh = [p for p in (store / "overlay").glob("*/diff/etc/deleted")
                  if "trusted.overlay.whiteout" in os.listxattr(p)]
            assert len(wh) == 1 and stat.S_ISREG(os.lstat(wh[0]).st_mode) and os.lstat(wh[0]).st_size == 0
            conf = tmp_path / "storage.conf"
            conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{gr}"\n'
                            f'runroot = "{tmp_path}/rr"\n[storage.options]\n'
                            f'additionalimagestores = ["{store}"]\n')
            env = {"CONTAINERS_STORAGE_CONF": str(conf)}
            images = _run("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", env=env)
            assert "localhost/seed:t" in images.split(), images
            cid = _run("podman", "create", "localhost/seed:t", "/bin/true", env=env).strip()
            try:
                merged = Path(_run("podman", "mount", cid, env=env).strip())
                try:
                    got = snapshot(merged)
                    got.pop(".")
                    # a trusted-xattr overlay (podman as root) consumes the escaped trusted.overlay.*
                    # marks; the user.overlay.* twins libcomposefs adds for userxattr mounts stay
                    # visible as plain xattrs on the directory that held the whiteout
                    t, perms, uid, gid, extra, xa = got["etc"]
                    assert xa == (("user.overlay.opaque", b"x"), ("user.overlay.whiteouts", b""))
                    got["etc"] = (t, perms, uid, gid, extra, ())
                    assert got == want
                    assert not (merged / "etc/deleted").exists() and not (merged / "opt/dir/old").exists()
                    assert "deleted" not in os.listdir(merged / "etc")
                    assert os.listdir(merged / "opt/dir") == ["new"]
                finally:
                    _run("podman", "umount", cid, env=env)
            finally:
                _run("podman", "rm", "-f", cid, env=env)
                subprocess.run(["umount", str(gr / "overlay")], capture_output=True, check=False)
    finally:
        subprocess.run(["umount", str(root / "overlay")], capture_output=True, check=False)
        subprocess.run(["umount", str(gr / "overlay")], capture_output=True, check=False)
