"""``container import`` / ``container checkout``: OCI images -> layer commits -> overlayfs.

Proven against umoci (image builder and reference unpacker), the real ostree
(checkout of the flattened commit) and the kernel's overlayfs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from conftest import needs_ostree, needs_overlayfs, needs_root
from pyostree.errors import OstreeError
from pyostree.oci import checkout_layers, import_image, layer_ref
from pyostree.store.refs import list_refs
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree import quoting

UMOCI = shutil.which("umoci")
needs_umoci = pytest.mark.skipif(UMOCI is None, reason="needs umoci")


# ---------------------------------------------------------------------------
# helpers


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
          uid: int = 0, gid: int = 0, link: str = "", pax: dict[str, str] | None = None,
          dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    ti.mtime = 1700000000
    if pax:
        ti.pax_headers = dict(pax)
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def build_layout(root: Path, layers: list[tuple[bytes, str]], tag: str = "t",
                 tamper: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write an OCI layout with *layers* ((tar, 'gzip'|'zstd'|'none') bottom first)."""
    tamper = tamper or {}
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> str:
        d = _sha(data)
        (blobs / d[7:]).write_bytes(data)
        return d

    descs, diff_ids = [], []
    for tar, comp in layers:
        diff_ids.append(_sha(tar))
        blob = {"gzip": lambda b: gzip.compress(b, mtime=0), "zstd": zstandard.ZstdCompressor().compress,
                "none": lambda b: b}[comp](tar)
        mt = "application/vnd.oci.image.layer.v1.tar" + {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[comp]
        descs.append({"mediaType": mt, "digest": put(blob), "size": len(blob)})
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
              "rootfs": {"type": "layers", "diff_ids": tamper.get("diff_ids", diff_ids)}, "config": {}}
    cb = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cb),
                           "size": len(cb)}, "layers": descs}
    mb = json.dumps(manifest).encode()
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m["annotations"]["org.opencontainers.image.ref.name"] != tag]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": put(mb), "size": len(mb),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))
    return {"manifest": manifest, "diff_ids": diff_ids, "config_digest": manifest["config"]["digest"]}


def snapshot(root: Path, *, with_mode_of_root: bool = True) -> dict[str, tuple[Any, ...]]:
    """path -> (type, perms, uid, gid, content or link target or rdev, overlay xattrs)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in [*dirs, *files, *([""] if dirpath == str(root) and with_mode_of_root else [])]:
            p = Path(dirpath) / n if n else Path(dirpath)
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
                              for k in os.listxattr(p, follow_symlinks=False) if "overlay" in k))
            rel = str(p.relative_to(root)) if n else "."
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra, xa)
    return out


def new_repo(tmp_path: Path, mode: str = "bare") -> Repo:
    return Repo.create(str(tmp_path / f"repo-{mode}"), RepoMode.parse(mode))


def _umount(p: Path) -> None:
    subprocess.run(["umount", str(p)], check=False, capture_output=True)


# ---------------------------------------------------------------------------
# the real thing: umoci-built images


def _umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def umoci_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer image: umoci layers that delete/replace/chmod/chown + a hand-built opaque layer."""
    if UMOCI is None or os.geteuid() != 0:
        pytest.skip("needs umoci and root")
    base = tmp_path_factory.mktemp("umoci")
    img, bundle = base / "img", base / "bundle"
    _umoci("init", "--layout", str(img))
    _umoci("new", "--image", f"{img}:t")
    _umoci("unpack", "--image", f"{img}:t", str(bundle))
    r = bundle / "rootfs"
    for d in ("etc/conf.d", "usr/bin", "usr/lib/mod", "opt/app/data", "var/empty", "srv"):
        (r / d).mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "etc/conf.d/a.conf").write_text("a\n")
    (r / "etc/conf.d/b.conf").write_text("b\n")
    (r / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(r / "usr/bin/tool", 0o4755)
    os.link(r / "usr/bin/tool", r / "usr/bin/tool-hl")
    os.symlink("tool", r / "usr/bin/tool-rel")
    os.symlink("/etc/passwd", r / "usr/bin/abs-link")
    (r / "usr/lib/mod/x.so").write_bytes(os.urandom(3000))
    (r / "opt/app/data/blob").write_bytes(b"\0" * 70000)
    (r / "opt/app/readme name with spaces").write_text("hi\n")
    os.chown(r / "opt/app/data", 1000, 1000)
    (r / "srv/file-becomes-dir").write_text("f\n")
    _umoci("repack", "--refresh-bundle", "--image", f"{img}:t", str(bundle))
    # layer 2: deletions, directory replaced, file <-> dir swaps, mode and owner changes
    os.unlink(r / "etc/conf.d/a.conf")
    shutil.rmtree(r / "usr/lib/mod")
    (r / "usr/lib/mod").mkdir()
    (r / "usr/lib/mod/new.so").write_text("new\n")
    os.unlink(r / "srv/file-becomes-dir")
    (r / "srv/file-becomes-dir").mkdir()
    (r / "srv/file-becomes-dir/inner").write_text("inner\n")
    shutil.rmtree(r / "var/empty")
    (r / "var/empty").write_text("now a file\n")
    os.chmod(r / "etc/passwd", 0o600)
    os.chown(r / "opt/app/readme name with spaces", 5, 6)
    _umoci("repack", "--refresh-bundle", "--image", f"{img}:t", str(bundle))
    # layer 3 (hand-built): opaque dir + explicit whiteout + new content
    l3 = make_tar([
        entry("opt/", tarfile.DIRTYPE, mode=0o755),
        entry("opt/app/", tarfile.DIRTYPE, mode=0o750, uid=7, gid=7),
        entry("opt/app/.wh..wh..opq"),
        entry("opt/app/fresh", data=b"fresh\n"),
        entry("etc/", tarfile.DIRTYPE, mode=0o755),
        entry("etc/.wh.passwd"),
        entry("etc/shadow", data=b"s\n", mode=0o400),
    ])
    (base / "l3.tar").write_bytes(l3)
    _umoci("raw", "add-layer", "--image", f"{img}:t", str(base / "l3.tar"))
    # layer 4 (umoci again): re-create a deleted file on top of the whiteout
    _umoci("unpack", "--image", f"{img}:t", str(base / "bundle2"))
    (base / "bundle2/rootfs/etc/passwd").write_text("again\n")
    _umoci("repack", "--refresh-bundle", "--image", f"{img}:t", str(base / "bundle2"))
    _umoci("unpack", "--image", f"{img}:t", str(base / "reference"))
    return base


@needs_root
@needs_overlayfs
@needs_ostree
@needs_umoci
@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_umoci_image_round_trip(tmp_path: Path, umoci_image: Path, py, c, mode: str) -> None:
    ref_root = umoci_image / "reference" / "rootfs"
    want = snapshot(ref_root)
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", f"--mode={mode}")
    out = py("--repo", str(repo), "container", "import", f"oci:{umoci_image}/img:t", "img").out
    assert "4 layers (4 new, 0 already present)" in out
    # overlayfs mount of the layer checkout == umoci unpack
    dest = tmp_path / "ct"
    py(f"--repo={repo}", "container", "checkout", "--mount", "img", dest)
    try:
        assert snapshot(dest / "merged") == want
    finally:
        _umount(dest / "merged")
    # layers on disk: bottom first, whiteouts as char 0:0, the opaque dir with its xattr
    assert _is_whiteout(dest / "layers/1/etc/conf.d/a.conf")
    assert os.getxattr(dest / "layers/2/opt/app", "trusted.overlay.opaque") == b"y"
    assert _is_whiteout(dest / "layers/2/etc/passwd")
    assert not (dest / "layers/2/opt/app" / quoting.OPAQUE_MARKER).exists()
    # the flattened image: real ostree's checkout and ours == umoci unpack
    for tool, name in ((c, "real"), (py, "ours")):
        tool("checkout", f"--repo={repo}", "img", tmp_path / name)
        got = snapshot(tmp_path / name)
        got.pop(".")
        want_no_root = dict(want)
        want_no_root.pop(".")
        assert got == want_no_root, name
    # importing again reuses every layer and gives the same image commit
    again = py("--repo", str(repo), "container", "import", f"oci:{umoci_image}/img:t", "img2").out
    assert "(0 new, 4 already present)" in again
    assert again.split()[-1] == out.split()[-1]


def _is_whiteout(p: Path) -> bool:
    st = os.lstat(p)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# ---------------------------------------------------------------------------
# hand-built layouts: compression, sharing, verification, archives


def _base_layers() -> list[bytes]:
    l0 = make_tar([
        entry("./", tarfile.DIRTYPE, mode=0o755),
        entry("bin/", tarfile.DIRTYPE, mode=0o755),
        entry("bin/sh", data=b"#!sh\n", mode=0o755),
        entry("etc/", tarfile.DIRTYPE, mode=0o755),
        entry("etc/motd", data=b"hello\n"),
        entry("etc/gone", data=b"bye\n"),
        entry("etc/x", data=b"x", pax={"SCHILY.xattr.user.tag": "v1"}),
        entry("lib/", tarfile.DIRTYPE, mode=0o755),
        entry("lib/old/", tarfile.DIRTYPE, mode=0o755),
        entry("lib/old/f", data=b"old"),
    ])
    l1 = make_tar([
        entry("etc/.wh.gone"),
        entry("lib/old/", tarfile.DIRTYPE, mode=0o700),
        entry("lib/old/.wh..wh..opq"),
        entry("lib/old/n", data=b"n"),
        entry("etc/sh-link", tarfile.SYMTYPE, link="../bin/sh"),
    ])
    l2 = make_tar([entry("usr/share/doc/readme", data=b"implicit parents\n")])
    return [l0, l1, l2]


@pytest.mark.parametrize("mode", ["bare-user", "bare-user-only", "archive"])
def test_compressions_and_flattening(tmp_path: Path, mode: str) -> None:
    l0, l1, l2 = _base_layers()
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "zstd"), (l2, "none")])
    repo = new_repo(tmp_path, mode)
    res = import_image(repo, f"oci:{tmp_path}/img:t", "app/img")
    assert res.layers_imported == 3
    names = set(list_refs(repo))
    for tar in (l0, l1, l2):
        assert layer_ref(_sha(tar)) in names
    c = repo.load_commit(res.commit)
    assert c.timestamp == 1704164645  # config "created"
    md = dict(c.metadata)
    assert md["pyostree.container.layers"].value == res.layer_commits
    assert json.loads(md["pyostree.container.config"].value)["os"] == "linux"
    assert md["pyostree.container.diff-ids"].value == [_sha(t) for t in (l0, l1, l2)]
    # the flattened tree
    co = tmp_path / "flat"
    from pyostree.oci import checkout_tree
    checkout_tree(repo, "app/img", str(co))
    assert sorted(str(p.relative_to(co)) for p in co.rglob("*")) == [
        "bin", "bin/sh", "etc", "etc/motd", "etc/sh-link", "etc/x", "lib", "lib/old", "lib/old/n",
        "usr", "usr/share", "usr/share/doc", "usr/share/doc/readme"]
    assert stat.S_IMODE(os.stat(co / "lib/old").st_mode) == 0o700
    if mode != "bare-user-only":
        assert os.getxattr(co / "etc/x", "user.tag") == b"v1"


@needs_root
def test_shared_layers_and_checkout_without_mount(tmp_path: Path, py) -> None:
    l0, l1, l2 = _base_layers()
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip")], tag="a")
    build_layout(tmp_path / "img", [(l0, "zstd"), (l2, "gzip")], tag="b")  # same diff_id, other blob
    py("init", f"--repo={tmp_path}/r", "--mode=bare")
    assert "(2 new, 0 already" in py(f"--repo={tmp_path}/r", "container", "import",
                                     f"oci:{tmp_path}/img:a", "a").out
    assert "(1 new, 1 already" in py(f"--repo={tmp_path}/r", "container", "import",
                                     f"oci:{tmp_path}/img:b", "b").out
    layer_refs = [ln for ln in py("refs", f"--repo={tmp_path}/r").out.split() if "/layer/" in ln]
    assert len(layer_refs) == 3
    out = py(f"--repo={tmp_path}/r", "container", "checkout", "a", tmp_path / "co").out
    assert out.strip() == (f"mount -t overlay overlay -o ro,lowerdir={tmp_path}/co/layers/1:"
                           f"{tmp_path}/co/layers/0 {tmp_path}/co/merged")
    assert _is_whiteout(tmp_path / "co/layers/1/etc/gone")
    assert os.getxattr(tmp_path / "co/layers/1/lib/old", "trusted.overlay.opaque") == b"y"
    # re-run into the same destination: replaced, the unchanged layers reused; then another image
    py(f"--repo={tmp_path}/r", "container", "checkout", "a", tmp_path / "co")
    assert _is_whiteout(tmp_path / "co/layers/1/etc/gone")
    ino0 = os.lstat(tmp_path / "co/layers/0").st_ino
    py(f"--repo={tmp_path}/r", "container", "checkout", "b", tmp_path / "co")
    assert os.lstat(tmp_path / "co/layers/0").st_ino == ino0  # the shared bottom layer was kept
    assert not (tmp_path / "co/layers/1/etc/gone").exists()
    assert sorted(os.listdir(tmp_path / "co")) == ["layers", "layers.json", "merged"]
    # a directory that is not an earlier checkout is refused and left alone
    (tmp_path / "other").mkdir()
    (tmp_path / "other/keep").write_text("x")
    r = py(f"--repo={tmp_path}/r", "container", "checkout", "a", tmp_path / "other", check=False)
    assert r.rc == 1 and "not empty" in r.err
    assert os.listdir(tmp_path / "other") == ["keep"]


def test_digests_verified(tmp_path: Path) -> None:
    l0, l1, _ = _base_layers()
    info = build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip")])
    repo = new_repo(tmp_path, "archive")
    # a layer blob with one flipped byte (same size)
    blob = tmp_path / "img/blobs/sha256" / info["manifest"]["layers"][1]["digest"][7:]
    good = blob.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    blob.write_bytes(bytes(bad))
    with pytest.raises(OstreeError, match=r"layer 1 .*(digest mismatch|corrupt)"):
        import_image(repo, f"oci:{tmp_path}/img:t", "x")
    blob.write_bytes(good + b"\0")
    with pytest.raises(OstreeError, match="larger than its declared size"):
        import_image(repo, f"oci:{tmp_path}/img:t", "x")
    blob.write_bytes(good)
    assert "x" not in set(list_refs(repo))
    # diff_ids that do not match the uncompressed layers
    build_layout(tmp_path / "img2", [(l0, "none")], tamper={"diff_ids": [_sha(b"other")]})
    with pytest.raises(OstreeError, match="diff_id mismatch"):
        import_image(repo, f"oci:{tmp_path}/img2:t", "y")
    # a tampered config (manifest digest no longer matches)
    cfg = tmp_path / "img/blobs/sha256" / info["config_digest"][7:]
    cfg.write_bytes(cfg.read_bytes().replace(b"linux", b"LINUX"))
    with pytest.raises(OstreeError, match=r"config .*digest mismatch"):
        import_image(repo, f"oci:{tmp_path}/img:t", "x")
    with pytest.raises(OstreeError, match="No image tagged 'nope'"):
        import_image(repo, f"oci:{tmp_path}/img2:nope", "x")
    refs = set(list_refs(repo))
    assert "x" not in refs and "y" not in refs
    assert not any("sha256_" + hashlib.sha256(b"other").hexdigest() in r for r in refs)


def test_oci_archive_and_docker_archive(tmp_path: Path) -> None:
    l0, l1, l2 = _base_layers()
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "none"), (l2, "zstd")])
    repo = new_repo(tmp_path, "bare-user")
    direct = import_image(repo, f"oci:{tmp_path}/img:t", "direct")
    with tarfile.open(tmp_path / "img.tar", "w") as tf:
        tf.add(tmp_path / "img", arcname=".")
    via_archive = import_image(repo, f"oci-archive:{tmp_path}/img.tar:t", "archived")
    assert via_archive.commit == direct.commit
    assert via_archive.layers_reused == 3
    # docker-archive (the layout docker save writes)
    cfg = json.dumps({"os": "linux", "rootfs": {"type": "layers",
                                                "diff_ids": [_sha(t) for t in (l0, l1, l2)]}}).encode()
    with tarfile.open(tmp_path / "docker.tar", "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add(hashlib.sha256(cfg).hexdigest() + ".json", cfg)
        for i, t in enumerate((l0, l1, l2)):
            add(f"{i}.tar", t)
            link = tarfile.TarInfo(f"layer{i}/layer.tar")  # as skopeo writes them
            link.type = tarfile.SYMTYPE
            link.linkname = f"../{i}.tar"
            tf.addfile(link)
        add("manifest.json", json.dumps([{"Config": hashlib.sha256(cfg).hexdigest() + ".json",
                                          "RepoTags": ["x:latest"],
                                          "Layers": [f"layer{i}/layer.tar" for i in range(3)]}]).encode())
    docker = import_image(Repo.open(repo.path), f"docker-archive:{tmp_path}/docker.tar", "docker")
    c1, c2 = repo.load_commit(direct.commit), repo.load_commit(docker.commit)
    assert (c1.root_contents, c1.root_meta) == (c2.root_contents, c2.root_meta)
    assert docker.layers_reused == 3


# ---------------------------------------------------------------------------
# tar safety

UNSAFE = [
    ("dotdot", [entry("a/../../etc/passwd", data=b"x")], "a/../../etc/passwd", "'..'"),
    ("absolute", [entry("/etc/passwd", data=b"x")], "/etc/passwd", "absolute"),
    ("hardlink-out", [entry("h", tarfile.LNKTYPE, link="../../etc/passwd")], "'h'", "leads out"),
    ("hardlink-abs", [entry("h", tarfile.LNKTYPE, link="/etc/passwd")], "'h'", "leads out"),
    ("hardlink-missing", [entry("h", tarfile.LNKTYPE, link="nothere")], "'h'", "not a regular file"),
    ("symlink-out", [entry("a/", tarfile.DIRTYPE), entry("a/l", tarfile.SYMTYPE, link="../../x")],
     "'a/l'", "leads out of the layer"),
    ("through-symlink", [entry("l", tarfile.SYMTYPE, link="/etc"), entry("l/passwd", data=b"x")],
     "'l/passwd'", "through the symlink 'l'"),
    ("chardev", [entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))], "'dev/null'",
     "char device 1:3; use --quote-special-files"),
    ("blockdev", [entry("sda", tarfile.BLKTYPE, dev=(8, 0))], "'sda'", "block device 8:0"),
    ("fifo", [entry("p", tarfile.FIFOTYPE)], "'p'", "FIFO"),
    ("reserved", [entry(".ostree-wh.x", data=b"")], "'.ostree-wh.x'", "reserved"),
    ("oversized-pax", [entry("big", data=b"x", pax={"comment": "A" * (2 << 20)})], "big",
     "Oversized tar header"),
    ("long-component", [entry("d/" + "n" * 300, data=b"x")], "nnnn", "longer than 255"),
    ("too-deep", [entry("a/" * 300 + "f", data=b"x")], "a/a/a/", "deeper than 255 directories"),
]


@pytest.mark.parametrize("case", UNSAFE, ids=[u[0] for u in UNSAFE])
def test_unsafe_layers_refused(tmp_path: Path, case: tuple[str, list[Any], str, str]) -> None:
    _, entries, named, why = case
    (tmp_path / "outside").mkdir()
    build_layout(tmp_path / "img", [(make_tar(entries), "gzip")])
    repo = new_repo(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(OstreeError) as ei:
        import_image(repo, f"oci:{tmp_path}/img:t", "x")
    msg = str(ei.value)
    assert named in msg and why in msg, msg
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(tmp_path / "outside") == []
    assert list_refs(repo) == {}


def test_unsafe_cli_error(tmp_path: Path, py) -> None:
    build_layout(tmp_path / "img", [(make_tar([entry("../x", data=b"x")]), "gzip")])
    py("init", f"--repo={tmp_path}/r")
    r = py(f"--repo={tmp_path}/r", "container", "import", f"oci:{tmp_path}/img:t", "x", check=False)
    assert r.rc == 1 and r.err.startswith("error: layer 0") and "'../x'" in r.err
    assert "Traceback" not in r.err


@needs_root
def test_special_files_opt_in(tmp_path: Path, py) -> None:
    layer = make_tar([entry("dev/", tarfile.DIRTYPE), entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
                      entry("dev/fifo", tarfile.FIFOTYPE, mode=0o600)])
    build_layout(tmp_path / "img", [(layer, "gzip")])
    py("init", f"--repo={tmp_path}/r")
    r = py(f"--repo={tmp_path}/r", "container", "import", f"oci:{tmp_path}/img:t", "x", check=False)
    assert r.rc == 1 and "--quote-special-files" in r.err
    py(f"--repo={tmp_path}/r", "container", "import", "--quote-special-files", f"oci:{tmp_path}/img:t", "x")
    assert py("cat", f"--repo={tmp_path}/r", "x", "/dev/.ostree-dev.null").out == "c 1 3\n"
    py(f"--repo={tmp_path}/r", "container", "checkout", "x", tmp_path / "co")
    st = os.lstat(tmp_path / "co/layers/0/dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(tmp_path / "co/layers/0/dev/fifo").st_mode)


@needs_overlayfs
def test_single_layer_mount(tmp_path: Path) -> None:
    build_layout(tmp_path / "img", [(make_tar([entry("f", data=b"only")]), "none")])
    repo = new_repo(tmp_path)
    import_image(repo, f"oci:{tmp_path}/img:t", "one")
    res = checkout_layers(repo, "one", str(tmp_path / "co"), mount=True)
    try:
        assert (Path(res.merged) / "f").read_bytes() == b"only"
        with pytest.raises(OSError):
            (Path(res.merged) / "new").write_text("read-only")
    finally:
        _umount(Path(res.merged))


@needs_overlayfs
@pytest.mark.parametrize("mode", ["bare", "bare-user-only"])
def test_same_layer_whiteouts_and_opaque_marker_route(tmp_path: Path, mode: str) -> None:
    """A whiteout next to a new entry of the same name only hides the lower layers (OCI spec)."""
    l0 = make_tar([entry("a", data=b"old a"), entry("d/", tarfile.DIRTYPE), entry("d/old", data=b"o"),
                   entry("o/", tarfile.DIRTYPE), entry("o/old", data=b"o")])
    l1 = make_tar([entry(".wh.a"), entry("a", data=b"new a"), entry(".wh.d"), entry("d/", tarfile.DIRTYPE),
                   entry("d/new", data=b"n"), entry("o/", tarfile.DIRTYPE), entry("o/.wh..wh..opq"),
                   entry("o/new", data=b"n")])
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip")])
    repo = new_repo(tmp_path, mode)
    import_image(repo, f"oci:{tmp_path}/img:t", "img")
    res = checkout_layers(repo, "img", str(tmp_path / "co"), mount=True)
    try:
        merged = Path(res.merged)
        assert (merged / "a").read_bytes() == b"new a"
        assert os.listdir(merged / "d") == ["new"] and os.listdir(merged / "o") == ["new"]
    finally:
        _umount(Path(res.merged))
    top = tmp_path / "co/layers/1"
    assert sorted(os.listdir(top)) == ["a", "d", "o"]
    for d in ("d", "o"):
        assert os.getxattr(top / d, "trusted.overlay.opaque") == b"y"
        assert quoting.OPAQUE_MARKER not in os.listdir(top / d)
    from pyostree.oci import checkout_tree
    checkout_tree(repo, "img", str(tmp_path / "flat"))
    assert os.listdir(tmp_path / "flat/d") == ["new"] and os.listdir(tmp_path / "flat/o") == ["new"]
    with pytest.raises(OSError):
        os.getxattr(tmp_path / "flat/o", "trusted.overlay.opaque")


def test_checkout_of_non_image_refused(tmp_path: Path, py) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t/f").write_text("x")
    py("init", f"--repo={tmp_path}/r", "--mode=archive")
    py("commit", f"--repo={tmp_path}/r", "-b", "plain", tmp_path / "t")
    r = py(f"--repo={tmp_path}/r", "container", "checkout", "plain", tmp_path / "co", check=False)
    assert r.rc == 1 and "is not a container image" in r.err
    r = py(f"--repo={tmp_path}/r", "container", "import", f"oci:{tmp_path}/nope", "x", check=False)
    assert r.rc == 1 and r.err == f"error: {tmp_path}/nope: not a directory\n"
    r = py(f"--repo={tmp_path}/r", "container", "import", "nosuch:busybox", "x", check=False)
    assert r.rc == 1 and 'unknown transport "nosuch"' in r.err and "\\" not in r.err
    r = py(f"--repo={tmp_path}/r", "container", "import", "docker://127.0.0.1:1/x:y", "x", check=False)
    assert r.rc == 1 and r.err.startswith("error: Inspecting docker://127.0.0.1:1/x:y: ")
    assert "connection refused" in r.err


@needs_overlayfs
def test_userxattr_checkout_and_mount(tmp_path: Path, py) -> None:
    l0 = make_tar([entry("o/", tarfile.DIRTYPE), entry("o/old", data=b"o"), entry("gone", data=b"g")])
    l1 = make_tar([entry("o/", tarfile.DIRTYPE), entry("o/.wh..wh..opq"), entry("o/new", data=b"n"),
                   entry(".wh.gone")])
    build_layout(tmp_path / "img", [(l0, "none"), (l1, "none")])
    py("init", f"--repo={tmp_path}/r", "--mode=bare-user-only")  # the marker route
    py(f"--repo={tmp_path}/r", "container", "import", f"oci:{tmp_path}/img:t", "img")
    out = py(f"--repo={tmp_path}/r", "container", "checkout", "--userxattr", "img", tmp_path / "co").out
    assert out.startswith("mount -t overlay overlay -o ro,userxattr,lowerdir=")
    top = tmp_path / "co/layers/1"
    assert os.getxattr(top / "o", "user.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(top / "o", "trusted.overlay.opaque")
    merged = tmp_path / "co/merged"
    subprocess.run(out.split(), check=True)
    try:
        assert sorted(os.listdir(merged)) == ["o"] and os.listdir(merged / "o") == ["new"]
    finally:
        _umount(merged)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
def test_skopeo_written_archives(tmp_path: Path) -> None:
    """docker-archive and oci-archive files as skopeo writes them give the same rootfs."""
    l0, l1, l2 = _base_layers()
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip"), (l2, "none")])  # docker: no zstd
    subprocess.run(["skopeo", "copy", f"oci:{tmp_path}/img:t", f"docker-archive:{tmp_path}/d.tar:a/b:c"],
                   check=True, capture_output=True)
    subprocess.run(["skopeo", "copy", f"oci:{tmp_path}/img:t", f"oci-archive:{tmp_path}/o.tar:t"],
                   check=True, capture_output=True)
    repo = new_repo(tmp_path, "archive")
    roots = set()
    for src in (f"oci:{tmp_path}/img:t", f"docker-archive:{tmp_path}/d.tar", f"oci-archive:{tmp_path}/o.tar:t"):
        c = repo.load_commit(import_image(repo, src, "x").commit)
        roots.add((c.root_contents, c.root_meta))
    assert len(roots) == 1


def test_image_index_and_tag_selection(tmp_path: Path) -> None:
    """A nested image index picks linux/<host arch>; several images need a :TAG."""
    import platform

    l0, l1, _ = _base_layers()
    img = tmp_path / "img"
    a = build_layout(img, [(l0, "gzip")], tag="amd")
    b = build_layout(img, [(l1, "gzip")], tag="other")
    repo = new_repo(tmp_path, "archive")
    with pytest.raises(OstreeError, match="holds 2 images; name one with :TAG"):
        import_image(repo, f"oci:{img}", "x")
    # wrap both manifests in a nested index with platforms; the host's must win
    index = json.loads((img / "index.json").read_text())
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    m_host, m_other = index["manifests"]
    m_host["platform"] = {"os": "linux", "architecture": host}
    m_other["platform"] = {"os": "linux", "architecture": "s390x-not-this-one"}
    nested = json.dumps({"schemaVersion": 2, "manifests": [m_other, m_host]}).encode()
    (img / "blobs/sha256" / hashlib.sha256(nested).hexdigest()).write_bytes(nested)
    (img / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": _sha(nested), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    res = import_image(repo, f"oci:{img}:multi", "multi")
    c = repo.load_commit(res.commit)
    assert dict(c.metadata)["pyostree.container.diff-ids"].value == a["diff_ids"] != b["diff_ids"]


@needs_root
def test_symlink_in_lower_layer_never_followed(tmp_path: Path) -> None:
    """Layer 0 has ``etc -> OUTSIDE``; layer 1 writes ``etc/evil``: it lands in the tree, not outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    l0 = make_tar([entry("etc", tarfile.SYMTYPE, link=str(outside)), entry("lnk", tarfile.SYMTYPE, link=str(outside))])
    l1 = make_tar([entry("etc/", tarfile.DIRTYPE), entry("etc/evil", data=b"x")])
    build_layout(tmp_path / "img", [(l0, "none"), (l1, "none")])
    repo = new_repo(tmp_path)
    import_image(repo, f"oci:{tmp_path}/img:t", "img")
    checkout_layers(repo, "img", str(tmp_path / "co"))
    from pyostree.oci import checkout_tree
    checkout_tree(repo, "img", str(tmp_path / "flat"))
    assert os.listdir(outside) == []
    assert (tmp_path / "co/layers/1/etc/evil").read_bytes() == b"x"
    assert (tmp_path / "flat/etc").is_dir() and not (tmp_path / "flat/etc").is_symlink()
    assert (tmp_path / "flat/lnk").is_symlink()


@needs_umoci
def test_umoci_insert_layer_without_tar_trailer(tmp_path: Path) -> None:
    """``umoci insert`` writes a layer whose tar stream stops right after the last file's data (no
    padding, no end-of-archive blocks); umoci unpack and containers/storage accept it, so must we."""
    os.makedirs(tmp_path / "content" / "etc")
    (tmp_path / "content" / "etc" / "motd").write_text("hi\n")
    for cmd in (["init", "--layout", "img"], ["new", "--image", "img:latest"],
                ["insert", "--rootless", "--image", "img:latest", "content", "/"],
                ["unpack", "--rootless", "--image", "img:latest", "bundle"]):
        subprocess.run(["umoci", *cmd], cwd=tmp_path, check=True, capture_output=True)
    layers = [p for p in (tmp_path / "img" / "blobs" / "sha256").iterdir()
              if p.read_bytes()[:2] == b"\x1f\x8b"]
    assert len(layers) == 1
    raw = gzip.decompress(layers[0].read_bytes())
    assert len(raw) % 512 != 0  # the case: the stream really ends inside a block
    repo = Repo.create(str(tmp_path / "repo"), RepoMode.BARE)
    res = import_image(repo, f"oci:{tmp_path}/img:latest", "app")
    assert len(res.layer_commits) == 1
    out = tmp_path / "out"
    from pyostree.oci import checkout_tree

    checkout_tree(repo, "app", str(out))
    assert (out / "etc" / "motd").read_text() == (tmp_path / "bundle" / "rootfs" / "etc" / "motd").read_text()
