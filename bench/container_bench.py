"""Container rows of bench.py: pyostree against the container tools, on one real multi-layer image.

The image (built once with umoci, cached): layer 1 the Debian minbase rootfs,
layer 2 a Python stdlib tree plus deletions (/usr/share/doc, /usr/share/locale),
layer 3 more deletions and changes.  The C ostree has no container command, so
each row times pyostree alone, with the container tool as the row's floor:

* ``container-import``       ``container import oci:`` into a new bare repo vs ``umoci unpack``
* ``container-import-cs``    the same vs ``skopeo copy`` into containers-storage (overlay)
* ``container-checkout``     ``container checkout`` (layers) vs the flat hardlink ``checkout``
* ``container-export``       ``container export`` of the rootfs (one layer) vs ``umoci repack``

Stdlib only; *bm* is the bench.py module (its Op, measure, helpers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(r.stdout + r.stderr).strip()[-300:]}")


def build_image(bm: Any, cache: str) -> str:
    """The cached 3-layer OCI layout (tag ``t``); returns its path."""
    dest = os.path.join(cache, "container-image")
    if os.path.isdir(dest):
        return dest
    if not shutil.which("umoci"):
        raise bm.SetupError("umoci is not installed")
    debian = bm.prepare_debian(cache)
    stdlib = bm.prepare_stdlib(cache)
    tmp = dest + ".tmp"
    bm.rm_rf(tmp)
    os.makedirs(tmp)
    img, bundle = os.path.join(tmp, "img"), os.path.join(tmp, "bundle")
    print("bench: building the container image (once, cached in .cache/bench)", file=sys.stderr)
    _run(["umoci", "init", "--layout", img])
    _run(["umoci", "new", "--image", f"{img}:t"])
    _run(["umoci", "unpack", "--image", f"{img}:t", bundle])
    rootfs = os.path.join(bundle, "rootfs")
    bm.rm_rf(rootfs)
    _run(["cp", "-a", debian.path, rootfs])
    _run(["umoci", "repack", "--refresh-bundle", "--image", f"{img}:t", bundle])
    _run(["cp", "-a", stdlib.path, os.path.join(rootfs, "usr/lib/pybench")])
    for d in ("usr/share/doc", "usr/share/locale"):
        bm.rm_rf(os.path.join(rootfs, d))
    _run(["umoci", "repack", "--refresh-bundle", "--image", f"{img}:t", bundle])
    for d in ("var/cache/apt", "usr/share/man", "usr/lib/pybench/test"):
        bm.rm_rf(os.path.join(rootfs, d))
    with open(os.path.join(rootfs, "etc/motd"), "w") as f:
        f.write("changed in layer 3\n")
    _run(["umoci", "repack", "--refresh-bundle", "--image", f"{img}:t", bundle])
    os.rename(img, os.path.join(tmp, "layout"))
    bm.rm_rf(bundle)
    os.rename(tmp, dest)
    return dest


def _umount(path: str) -> None:
    subprocess.run(["umount", path], capture_output=True)


def results(bm: Any, b: Any) -> list[Any]:
    """Measure the container rows wanted by *b* (a bench.Bench); [] if the set-up is impossible."""
    names = ("container-import", "container-import-cs", "container-checkout", "container-export")
    if not any(b.want(n) for n in names):
        return []
    if os.geteuid() != 0:
        print("bench: container rows need root; skipped", file=sys.stderr)
        return []
    try:
        layout = os.path.join(build_image(bm, b.cache), "layout")
    except (bm.SetupError, RuntimeError, OSError) as e:
        print(f"bench: container rows: {e}; skipped", file=sys.stderr)
        return []
    py = b.tools[0]
    wdir = os.path.join(b.work, "container")
    bm.rm_rf(wdir)
    os.makedirs(wdir)
    src = f"oci:{layout}:t"
    repo, fdest = os.path.join(wdir, "repo"), os.path.join(wdir, "floor")
    ops = []

    def new_repo(_t: Any) -> None:
        bm.rm_rf(repo)
        bm.quiet(py.cmd(repo, "init", "--mode=bare"))

    def clean_floor() -> None:
        bm.rm_rf(fdest)

    def imp(t: Any) -> list[str]:
        return list(t.cmd(repo, "container", "import", "--quiet", src, "img"))

    if b.want("container-import"):
        ops.append(bm.Op("container-import", "container import (3 layers, bare)", imp, pre=new_repo,
                         floor=["umoci", "unpack", "--image", f"{layout}:t", fdest], floor_pre=clean_floor,
                         floor_label="umoci unpack"))
    if b.want("container-import-cs"):
        run = os.path.join("/run", f"bench-cs-{os.getpid()}")
        store = os.path.join(wdir, "storage")

        def clean_store() -> None:
            _umount(os.path.join(store, "overlay"))
            bm.rm_rf(store)
            bm.rm_rf(run)

        ops.append(bm.Op("container-import-cs", "container import (3 layers, bare)", imp, pre=new_repo,
                         floor=["skopeo", "copy", "--quiet", src,
                                f"containers-storage:[overlay@{store}+{run}]bench:t"],
                         floor_pre=clean_store, floor_label="skopeo copy to c-storage"))
    co, flat = os.path.join(wdir, "co"), os.path.join(wdir, "flat")
    repo2 = os.path.join(wdir, "repo2")  # the import rows re-create *repo* before each run
    if b.want("container-checkout") or b.want("container-export"):
        bm.quiet(py.cmd(repo2, "init", "--mode=bare"))
        bm.quiet(py.cmd(repo2, "container", "import", "--quiet", src, "img"))
        bm.quiet(py.cmd(repo2, "commit", "-b", "flat", "--tree=ref=img", "-s", "flat rootfs"))

    def clean_co(_t: Any) -> None:
        bm.rm_rf(co)

    def clean_flat() -> None:
        bm.rm_rf(flat)

    if b.want("container-checkout"):
        ops.append(bm.Op("container-checkout", "container checkout (layers, bare)",
                         lambda t: t.cmd(repo2, "container", "checkout", "img", co), pre=clean_co,
                         floor=py.cmd(repo2, "checkout", "img", flat), floor_pre=clean_flat,
                         floor_label="flat hardlink checkout"))
    if b.want("container-export"):
        out = os.path.join(wdir, "out")
        ulayout, ubundle = os.path.join(wdir, "ulayout"), os.path.join(wdir, "ubundle")

        def clean_out(_t: Any) -> None:
            bm.rm_rf(out)

        def umoci_pre() -> None:
            bm.rm_rf(ulayout)
            bm.rm_rf(ubundle)
            _run(["umoci", "init", "--layout", ulayout])
            _run(["umoci", "new", "--image", f"{ulayout}:t"])
            _run(["umoci", "unpack", "--image", f"{ulayout}:t", ubundle])
            bm.rm_rf(os.path.join(ubundle, "rootfs"))
            bm.quiet(py.cmd(repo2, "checkout", "flat", os.path.join(ubundle, "rootfs")))

        ops.append(bm.Op("container-export", "container export (rootfs, one layer)",
                         lambda t: t.cmd(repo2, "container", "export", "flat", f"oci:{out}:t"), pre=clean_out,
                         floor=["umoci", "repack", "--image", f"{ulayout}:t", ubundle], floor_pre=umoci_pre,
                         floor_label="umoci repack"))
    res = []
    try:
        for op in ops:
            res.append(bm.measure("container", op, [py], b.args.reps, b.args.warmup, True))
    finally:
        _umount(os.path.join(wdir, "storage", "overlay"))
        if not b.args.keep:
            bm.rm_rf(wdir)
    return res
