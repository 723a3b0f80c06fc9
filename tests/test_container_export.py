"""``container export``: commits and imported images back to OCI images.

Proven with real umoci (``umoci unpack`` of the export equals the commit's
checkout), real skopeo + podman (``skopeo copy`` into containers-storage, then
``podman create`` + ``podman mount`` equals it) and a round trip through
``container import`` (same flattened tree checksum).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_root
from pyostree.store.repo import Repo
from test_container import _base_layers, build_layout

TOOLS = all(shutil.which(t) for t in ("skopeo", "podman", "umoci"))
pytestmark = [needs_root, pytest.mark.skipif(not TOOLS, reason="needs skopeo, podman and umoci")]


def _run(*args: str | Path) -> str:
    cp = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        raise AssertionError(f"{args} failed: {cp.stdout}{cp.stderr}")
    return cp.stdout


def view(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (type, perms, uid, gid, content/target/rdev, xattrs (no security.*)); hardlink groups apart."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in [*dirs, *files]:
            p = Path(dirpath) / n
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                extra: Any = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            else:
                extra = None
            xa = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                              for k in os.listxattr(p, follow_symlinks=False) if k.startswith("user.")))
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                             st.st_uid, st.st_gid, extra, xa)
    return out


def make_tree(t: Path, *, whiteouts: bool = True) -> Path:
    for d in ("etc", "dev", "usr/bin", "usr/lib/big", "srv/data", "opt/empty"):
        (t / d).mkdir(parents=True)
    (t / "etc/motd").write_text("hello\n")
    os.chown(t / "etc/motd", 5, 6)
    os.chmod(t / "etc/motd", 0o640)
    os.setxattr(t / "etc/motd", "user.tag", b"v1")
    os.setxattr(t / "srv/data", "user.dir", b"d")
    os.chown(t / "srv/data", 1000, 1000)
    os.chmod(t / "srv/data", 0o750)
    os.mknod(t / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(t / "dev/sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    os.mkfifo(t / "dev/fifo", 0o600)
    (t / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(t / "usr/bin/tool", 0o4755)
    os.link(t / "usr/bin/tool", t / "usr/bin/tool-hl")
    os.symlink("tool", t / "usr/bin/tool-rel")
    os.symlink("/etc/motd", t / "usr/bin/abs")
    for i in range(6):
        (t / f"usr/lib/big/f{i}").write_bytes(os.urandom(20000))
    (t / "srv/data/blob").write_bytes(os.urandom(50000))
    if whiteouts:
        os.mknod(t / "etc/gone", 0o600 | stat.S_IFCHR, 0)
        (t / "opaque").mkdir()
        (t / "opaque/f").write_text("o\n")
        os.setxattr(t / "opaque", "trusted.overlay.opaque", b"y")
    return t


def _commit(py: Any, repo: Path, tree: Path, branch: str) -> str:
    return str(py(f"--repo={repo}", "commit", "-b", branch, "--retarget-whiteouts", "--quote-special-files",
                  "--add-metadata-string=version=1.2", "--add-metadata-string=org.example.x=y", tree)
               .out.strip())


def _checkout(py: Any, repo: Path, ref: str, dest: Path) -> None:
    py(f"--repo={repo}", "checkout", "--process-passthrough-whiteouts", "--unquote-special-files", ref, dest)


def _layout_manifest(layout: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    idx = json.loads((layout / "index.json").read_text())
    m = next(x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs/sha256" / m["digest"][7:]).read_text())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    return manifest, config


def test_commit_export_umoci_unpack_and_round_trip(tmp_path: Path, py) -> None:
    tree = make_tree(tmp_path / "tree")
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    csum = _commit(py, r, tree, "os")
    out = py(f"--repo={r}", "container", "export", "--cmd=/bin/sh", "--cmd=-c", "--label=a=b", "--arch=arm64",
             "os", f"oci:{tmp_path}/out:v1").out
    assert out.startswith("Exported 1 layers")
    _checkout(py, r, "os", tmp_path / "co")
    want = view(tmp_path / "co")
    _run("umoci", "unpack", "--image", f"{tmp_path}/out:v1", tmp_path / "unpacked")
    got = view(tmp_path / "unpacked/rootfs")
    assert got == want
    assert got["etc/gone"][:1] == (stat.S_IFCHR,) and got["etc/gone"][4] == 0  # the whiteout, a char 0:0
    u = tmp_path / "unpacked/rootfs/usr/bin"
    assert os.lstat(u / "tool").st_ino == os.lstat(u / "tool-hl").st_ino  # hardlink kept
    manifest, config = _layout_manifest(tmp_path / "out", "v1")
    assert config["architecture"] == "arm64" and config["config"]["Cmd"] == ["/bin/sh", "-c"]
    labels = config["config"]["Labels"]
    assert labels["a"] == "b" and labels["version"] == "1.2" and labels["ostree.commit"] == csum
    # the opaque dir keeps its xattr (umoci refuses to set trusted.overlay.*, so read the tar)
    with tarfile.open(tmp_path / "out/blobs/sha256" / manifest["layers"][0]["digest"][7:]) as tf:
        assert tf.getmember("opaque/").pax_headers["SCHILY.xattr.trusted.overlay.opaque"] == "y"

    # export then import gives the same flattened tree (a tree without whiteouts / opaque dirs,
    # which a flattened image cannot hold)
    plain = make_tree(tmp_path / "plain", whiteouts=False)
    _commit(py, r, plain, "plain")
    py(f"--repo={r}", "container", "export", "plain", f"oci:{tmp_path}/out:plain")
    py(f"--repo={r}", "container", "import", "--quote-special-files", f"oci:{tmp_path}/out:plain", "back")
    repo = Repo.open(str(r))
    a, b = (repo.load_commit(repo.resolve_rev(x) or "") for x in ("plain", "back"))
    assert (a.root_contents, a.root_meta) == (b.root_contents, b.root_meta)


def test_max_layers_split_by_content(tmp_path: Path, py) -> None:
    tree = make_tree(tmp_path / "tree", whiteouts=False)
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    _commit(py, r, tree, "os")
    out = py(f"--repo={r}", "container", "export", "--max-layers=3", "os", f"oci:{tmp_path}/out:a").out
    n = int(out.split()[1])
    assert 2 <= n <= 3
    _checkout(py, r, "os", tmp_path / "co")
    _run("umoci", "unpack", "--image", f"{tmp_path}/out:a", tmp_path / "unpacked")
    assert view(tmp_path / "unpacked/rootfs") == view(tmp_path / "co")
    # an update inside one directory changes one layer
    (tree / "srv/data/blob").write_bytes(os.urandom(50000))
    _commit(py, r, tree, "os")
    py(f"--repo={r}", "container", "export", "--max-layers=3", "os", f"oci:{tmp_path}/out:b")
    la = [d["digest"] for d in _layout_manifest(tmp_path / "out", "a")[0]["layers"]]
    lb = [d["digest"] for d in _layout_manifest(tmp_path / "out", "b")[0]["layers"]]
    assert len(la) == len(lb) and sum(x != y for x, y in zip(la, lb, strict=True)) == 1


def test_imported_image_export_keeps_layers_and_whiteouts(tmp_path: Path, py) -> None:
    l0, l1, _ = _base_layers()
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip")], tag="t")
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:t", "img")
    py(f"--repo={r}", "container", "export", "img", f"oci:{tmp_path}/out:t")
    manifest, config = _layout_manifest(tmp_path / "out", "t")
    assert len(manifest["layers"]) == 2 and config["created"] == "2024-01-02T03:04:05Z"
    with tarfile.open(tmp_path / "out/blobs/sha256" / manifest["layers"][1]["digest"][7:]) as tf:
        names = tf.getnames()
    assert "etc/.wh.gone" in names and "lib/old/.wh..wh..opq" in names
    _run("umoci", "unpack", "--image", f"{tmp_path}/img:t", tmp_path / "ref")
    _run("umoci", "unpack", "--image", f"{tmp_path}/out:t", tmp_path / "unpacked")
    assert view(tmp_path / "unpacked/rootfs") == view(tmp_path / "ref/rootfs")
    py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/out:t", "again")
    repo = Repo.open(str(r))
    a, b = (repo.load_commit(repo.resolve_rev(x) or "") for x in ("img", "again"))
    assert (a.root_contents, a.root_meta) == (b.root_contents, b.root_meta)


def test_export_through_skopeo_archives_and_podman(tmp_path: Path, py) -> None:
    tree = make_tree(tmp_path / "tree", whiteouts=False)
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    _commit(py, r, tree, "os")
    _checkout(py, r, "os", tmp_path / "co")
    want = view(tmp_path / "co")
    py(f"--repo={r}", "container", "export", "os", f"oci-archive:{tmp_path}/img.ociarchive:v1")
    py(f"--repo={r}", "container", "export", "os", f"docker-archive:{tmp_path}/img.tar:localhost/os:v1")
    for src in (f"oci-archive:{tmp_path}/img.ociarchive:v1", f"docker-archive:{tmp_path}/img.tar"):
        py(f"--repo={r}", "container", "import", "--quote-special-files", src, "back")
        _checkout(py, r, "back", tmp_path / "back")
        assert view(tmp_path / "back") == want
        shutil.rmtree(tmp_path / "back")
    assert not [n for n in os.listdir(r / "tmp") if n.startswith("container-")]
    # into containers-storage, then podman create + podman mount
    run = tempfile.mkdtemp(prefix="pyo-run-")  # podman wants a short runroot
    root = tmp_path / "storage"
    pod = ["podman", "--root", str(root), "--runroot", run, "--storage-driver", "overlay"]
    try:
        py(f"--repo={r}", "container", "export", "os", f"containers-storage:[overlay@{root}+{run}]localhost/os:v1")
        cid = _run(*pod, "create", "localhost/os:v1", "/bin/true").strip()
        mnt = _run(*pod, "mount", cid).strip()
        assert view(Path(mnt)) == want
        _run(*pod, "umount", cid)
    finally:
        subprocess.run([*pod, "system", "reset", "-f"], capture_output=True)
        subprocess.run(["umount", str(root / "overlay")], capture_output=True)
        shutil.rmtree(run, ignore_errors=True)
