"""Layers umoci and containers/storage accept, refused imports, the image lifecycle, hardlinked checkouts.

Proven against real umoci 0.4.7 (builder and reference unpacker), the kernel's
overlayfs (the stacked view) and the real ostree (checkout of the flattened view).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import needs_ostree, needs_overlayfs, needs_root
from pyostree.oci import image_ref
from pyostree.store.repo import Repo
from test_container import _umount, build_layout, entry, make_tar, snapshot

needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci")


def _umoci(*args: str | Path) -> None:
    subprocess.run(["umoci", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def swap_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """umoci 0.4.7: a directory replaced by a file (it writes 'swap' then 'swap/.wh.inner'),
    and a layer naming 'd/x' without 'd' (mode 0700, owner 7:8, an xattr, from the layer below)."""
    if shutil.which("umoci") is None or os.geteuid() != 0:
        pytest.skip("needs umoci and root")
    base = tmp_path_factory.mktemp("swap")
    img, b = base / "img", base / "bundle"
    _umoci("init", "--layout", img)
    _umoci("new", "--image", f"{img}:t")
    _umoci("unpack", "--image", f"{img}:t", b)
    r = b / "rootfs"
    (r / "swap-file-to-dir/sub").mkdir(parents=True)
    (r / "swap-file-to-dir/inner").write_text("x\n")
    (r / "swap-file-to-dir/sub/deep").write_text("y\n")
    (r / "d").mkdir()
    (r / "d/x").write_text("1\n")
    os.chmod(r / "d", 0o700)
    os.chown(r / "d", 7, 8)
    os.setxattr(r / "d", "user.kept", b"lower")
    _umoci("repack", "--refresh-bundle", "--image", f"{img}:t", b)
    shutil.rmtree(r / "swap-file-to-dir")
    (r / "swap-file-to-dir").write_text("now a file\n")
    (r / "d/x").write_text("2\n")
    _umoci("repack", "--refresh-bundle", "--image", f"{img}:t", b)
    _umoci("unpack", "--image", f"{img}:t", base / "reference")
    return base


def _last_layer_names(img: Path) -> list[str]:
    idx = json.loads((img / "index.json").read_text())
    m = json.loads((img / "blobs/sha256" / idx["manifests"][0]["digest"][7:]).read_text())
    with tarfile.open(img / "blobs/sha256" / m["layers"][-1]["digest"][7:]) as tf:
        return tf.getnames()


@needs_root
@needs_overlayfs
@needs_ostree
@needs_umoci
@pytest.mark.parametrize("mode", ["bare", "archive"])
def test_umoci_swap_and_implicit_parent(tmp_path: Path, swap_image: Path, py, c, mode: str) -> None:
    names = _last_layer_names(swap_image / "img")
    assert "swap-file-to-dir" in names and "swap-file-to-dir/.wh.inner" in names  # the umoci 0.4.7 shape
    assert "d/x" in names and "d" not in names and "d/" not in names
    ref_root = swap_image / "reference/rootfs"
    want = snapshot(ref_root)
    want.pop(".")
    assert want["d"][1:4] == (0o700, 7, 8)
    py("init", f"--repo={tmp_path}/r", f"--mode={mode}")
    py(f"--repo={tmp_path}/r", "container", "import", f"oci:{swap_image}/img:t", "img")
    # stacked view: the kernel's overlay of the layer checkouts
    py(f"--repo={tmp_path}/r", "container", "checkout", "--mount", "img", tmp_path / "co")
    try:
        merged = snapshot(tmp_path / "co/merged")
        merged.pop(".")
        assert merged == want
        assert os.getxattr(tmp_path / "co/merged/d", "user.kept") == b"lower"
    finally:
        _umount(tmp_path / "co/merged")
    # flattened view, checked out by the real ostree
    c("checkout", f"--repo={tmp_path}/r", "img", tmp_path / "flat")
    flat = snapshot(tmp_path / "flat")
    flat.pop(".")
    assert flat == want
    assert os.getxattr(tmp_path / "flat/d", "user.kept") == b"lower"


@needs_root
def test_whiteout_under_non_dir_is_no_op_but_other_entries_are_not(tmp_path: Path) -> None:
    from pyostree.errors import OstreeError
    from pyostree.oci import import_image

    l0 = make_tar([entry("a/", tarfile.DIRTYPE, mode=0o755), entry("a/b", data=b"b")])
    ok = make_tar([entry("a", data=b"file now"), entry("a/.wh.b"), entry("a/.wh..wh..opq")])
    bad = make_tar([entry("a", data=b"file now"), entry("a/c", data=b"c")])
    build_layout(tmp_path / "img", [(l0, "gzip"), (ok, "gzip")], tag="ok")
    build_layout(tmp_path / "img", [(l0, "gzip"), (bad, "gzip")], tag="bad")
    repo = Repo.create(str(tmp_path / "r"))
    import_image(repo, f"oci:{tmp_path}/img:ok", "ok")
    assert [n for n, _ in repo.load_dirtree(repo.load_commit(repo.resolve_rev("ok") or "").root_contents).files] \
        == ["a"]
    with pytest.raises(OstreeError, match="entry 'a/c': parent 'a' is not a directory"):
        import_image(repo, f"oci:{tmp_path}/img:bad", "bad")


def _refs(py, repo: Path) -> list[str]:
    return sorted(py(f"--repo={repo}", "refs").out.split())


def _objects(repo: Path) -> int:
    return sum(len(f) for _, _, f in os.walk(repo / "objects"))


@needs_root
def test_refused_import_leaves_no_ref_and_prune_layers(tmp_path: Path, py) -> None:
    good = [make_tar([entry("etc/", tarfile.DIRTYPE, mode=0o755), entry(f"etc/f{i}", data=os.urandom(4000))])
            for i in range(2)]
    evil = make_tar([entry("../escape", data=b"x")])
    build_layout(tmp_path / "img", [(good[0], "gzip"), (good[1], "gzip"), (evil, "gzip")], tag="bad")
    build_layout(tmp_path / "img", [(good[0], "gzip")], tag="one")
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    before = set(os.listdir(tmp_path))
    res = py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:bad", "bad", check=False)
    assert res.rc == 1 and "'..' in path" in res.err
    assert _refs(py, r) == []  # neither the image nor the two layers it had stored
    assert set(os.listdir(tmp_path)) == before  # nothing outside the repository
    assert not [n for n in os.listdir(r / "tmp") if n.startswith(("staging", "container"))]
    assert _objects(r) > 0  # what the refused import stored is cache ...
    out = py(f"--repo={r}", "container", "prune-layers").out
    assert out.startswith("Removed 0 layers, ") and _objects(r) == 0  # ... that prune-layers removes

    # list / remove / prune-layers
    py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:one", "one")
    py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:one")
    listing = py(f"--repo={r}", "container", "list").out.splitlines()
    assert listing[0].split() == ["IMAGE", "SOURCE", "DIGEST", "CREATED", "SIZE"]
    default_ref = image_ref(f"oci:{tmp_path}/img:one")
    assert default_ref.startswith("ostree/container/image/oci_3a_2ftmp_2f") and ":" not in default_ref
    assert [ln.split()[0] for ln in listing[1:]] == ["one", default_ref]
    assert f"oci:{tmp_path}/img:one" in listing[2] and "2024-01-02 03:04:05" in listing[2]
    js = json.loads(py(f"--repo={r}", "container", "list", "--json").out)
    assert js[1]["source"] == f"oci:{tmp_path}/img:one" and js[1]["layers"] == 1 and js[1]["size"] > 4000
    assert "up to date" in py(f"--repo={r}", "container", "import", "--check", default_ref).out
    build_layout(tmp_path / "img", [(good[0], "gzip"), (good[1], "gzip")], tag="one")  # a newer "one"
    out = py(f"--repo={r}", "container", "import", "--check", f"oci:{tmp_path}/img:one").out
    assert "newer manifest" in out
    assert "(1 new, 1 already present)" in py(f"--repo={r}", "container", "import",
                                             f"oci:{tmp_path}/img:one").out
    res = py(f"--repo={r}", "container", "remove", "one", "nosuch", check=False)
    assert res.rc == 1 and "No image ref 'nosuch'" in res.err and "one" in _refs(py, r)  # all checked first
    py(f"--repo={r}", "container", "remove", "one", default_ref)
    assert py(f"--repo={r}", "container", "list").out.splitlines()[1:] == []
    n = _objects(r)
    out = py(f"--repo={r}", "container", "prune-layers", "--dry-run").out
    assert out.startswith("Would remove 2 layers") and _objects(r) == n
    out = py(f"--repo={r}", "container", "prune-layers").out
    assert out.startswith("Removed 2 layers, ") and _refs(py, r) == [] and _objects(r) == 0
    res = py(f"--repo={r}", "container", "remove", "nosuch", check=False)
    assert res.rc == 1


@needs_root
def test_checkout_hardlinks_from_bare_and_keeps_in_layer_hardlinks(tmp_path: Path, py) -> None:
    l0 = make_tar([entry("bin/", tarfile.DIRTYPE, mode=0o755),
                   entry("bin/tool", data=b"#!/bin/sh\n" * 100, mode=0o4755),
                   entry("bin/tool-hl", tarfile.LNKTYPE, link="bin/tool"),
                   entry("etc/", tarfile.DIRTYPE, mode=0o755), entry("etc/.wh.x")])
    build_layout(tmp_path / "img", [(l0, "gzip")], tag="t")
    for mode in ("bare", "archive"):
        r = tmp_path / f"r-{mode}"
        py("init", f"--repo={r}", f"--mode={mode}")
        py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:t", "t")
        co = tmp_path / f"co-{mode}"
        py(f"--repo={r}", "container", "checkout", "t", co)
        a, b = os.lstat(co / "layers/0/bin/tool"), os.lstat(co / "layers/0/bin/tool-hl")
        assert a.st_ino == b.st_ino and stat.S_IMODE(a.st_mode) == 0o4755  # in-layer hardlink kept
        assert stat.S_ISCHR(os.lstat(co / "layers/0/etc/x").st_mode)
        objs = [os.path.join(d, f) for d, _, fs in os.walk(r / "objects") for f in fs if f.endswith(".file")]
        if mode == "bare":  # the very object file of the repo
            assert any(os.lstat(o).st_ino == a.st_ino for o in objs)
            assert a.st_nlink >= 3
        else:
            assert a.st_nlink == 2


@needs_root
@needs_overlayfs
def test_failed_mount_keeps_a_whole_checkout_and_prints_the_command(tmp_path: Path, py) -> None:
    l0 = make_tar([entry("f", data=b"f")])
    build_layout(tmp_path / "img", [(l0, "gzip")], tag="t")
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:t", "t")
    co = tmp_path / "co"
    py(f"--repo={r}", "container", "checkout", "--mount", "t", co)
    try:
        # merged is mounted: a re-run refuses before writing anything and says how to unmount
        res = py(f"--repo={r}", "container", "checkout", "--mount", "t", co, check=False)
        assert res.rc == 1 and f"umount {co}/merged" in res.err
        assert sorted(os.listdir(co)) == ["layers", "layers.json", "merged"]
    finally:
        _umount(co / "merged")
    # a mount that fails (options longer than a page): the checkout is whole, the command is printed
    deep = tmp_path.joinpath(*["x" * 200] * 11)
    res = py(f"--repo={r}", "container", "checkout", "--mount", "t", deep, check=False)
    assert res.rc == 1 and "overlay mount options too long" in res.err
    assert "mount them with:" in res.err and f"lowerdir={deep}/layers/0:{deep}/layers/empty" in res.err
    assert (deep / "layers/0/f").read_bytes() == b"f" and not (deep / "layers.new").exists()
    assert not os.path.ismount(deep / "merged")


def test_help_lists_container_and_says_pyostree(py) -> None:
    """``pyostree --help`` lists ``container``; every usage line, of every (sub)command, says pyostree."""
    import re

    seen = 0

    def walk(cmd: list[str]) -> None:
        nonlocal seen
        r = py(*cmd, "--help")
        seen += 1
        assert r.rc == 0, (cmd, r)
        usage = r.out.split("Usage:\n", 1)[1].splitlines()[0]
        assert usage.startswith("  pyostree " + " ".join(cmd)), (cmd, usage)
        block = re.search(r'^Builtin (?:"[^"]*" )?Commands:\n((?:  .*\n)+)', r.out, re.M)
        for line in (block.group(1).splitlines() if block else []):
            sub = line.split()[0]
            if sub != "trivial-httpd":
                walk([*cmd, sub])

    top = py("--help").out
    assert re.search(r"^  container +Import, check out", top, re.M)
    walk([])
    assert seen > 60


def _run_with_tty_stderr(args: list[str]) -> tuple[int, str]:
    import pty
    import sys

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "pyostree", *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        p.wait(timeout=120)
    finally:
        os.close(master)
    return p.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_a_terminal_only(tmp_path: Path, py) -> None:
    layers = [make_tar([entry("d/", tarfile.DIRTYPE, mode=0o755)]
                       + [entry(f"d/f{j}-{i}", data=os.urandom(100)) for j in range(50)]) for i in range(2)]
    build_layout(tmp_path / "img", [(t, "gzip") for t in layers], tag="t")
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    rc, err = _run_with_tty_stderr([f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:t", "a"])
    assert rc == 0
    lines = [ln.rsplit("\r", 1)[-1] for ln in err.replace("\r\n", "\n").split("\n") if ln.strip()]
    assert lines, repr(err)
    assert lines[0].startswith("Layer 1/2: ") and " 51 entries, " in lines[0] and " MB/s" in lines[0]
    assert lines[1].startswith("Layer 2/2: ") and " 51 entries, " in lines[1]
    py(f"--repo={r}", "container", "remove", "a")
    py(f"--repo={r}", "container", "prune-layers")
    rc, err = _run_with_tty_stderr([f"--repo={r}", "container", "import", "--quiet", f"oci:{tmp_path}/img:t", "a"])
    assert rc == 0 and err == ""
    py(f"--repo={r}", "container", "remove", "a")
    py(f"--repo={r}", "container", "prune-layers")
    assert py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:t", "a").err == ""  # not a tty
