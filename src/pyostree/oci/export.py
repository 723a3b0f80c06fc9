"""``container export``: a commit or an imported image -> an OCI image.

* An **imported image** (a commit with ``pyostree.container.layers``) exports
  each of its layer commits as one layer, in overlay form: ``.ostree-wh.NAME``
  becomes the OCI whiteout ``.wh.NAME``, an opaque directory (its
  ``trusted.overlay.opaque`` xattr, or the opaque marker) becomes
  ``.wh..wh..opq``, ``.ostree-dev.NAME`` the device node/FIFO.  The image's own
  config is kept (diff_ids replaced: tar bytes are ours, not the original's).
* A **plain commit** is one layer, or with ``max_layers`` N up to N layers cut
  along directories (see :func:`_split`), as a rootfs: quoted whiteouts become
  char 0:0 devices, opaque markers the xattr again, quoted special files the
  nodes; every other xattr, owner and mode is kept.  The config gets the
  commit's string/number/bool metadata as labels (plus ``ostree.commit``).

Files with the same content in one layer are written as tar hardlinks.  Layers
are gzip-compressed into a temporary OCI layout under the repository's
``tmp/``; ``oci:DIR[:TAG]`` is written directly, any other destination
(``oci-archive:``, ``docker-archive:``, ``docker://``, ``containers-storage:``,
``dir:``) by ``skopeo copy`` from the temporary layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyostree.errors import OstreeError
from pyostree.oci.image import MD_CONFIG, MD_LAYERS, strs_metadata
from pyostree.oci.source import Platform
from pyostree.store import gvariant, refs
from pyostree.store import objects as obj
from pyostree.store.objects import DirMeta, FileInfo
from pyostree.store.repo import Repo
from pyostree.tree.quoting import OPAQUE_XATTRS, parse_opaque_marker, parse_special, quoted_kind

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_DEPTH = 256

__all__ = ["ExportOptions", "ExportResult", "export_image"]


@dataclass
class ExportOptions:
    max_layers: int = 1
    cmd: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    arch: str | None = None
    tag: str | None = None
    quiet: bool = True
    gzip_level: int = 6


@dataclass
class ExportResult:
    layers: int
    manifest_digest: str
    diff_ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# walking a commit into tar entries


@dataclass
class _Entry:
    path: str  # relative, no leading "/" ("" is the root)
    kind: str  # "dir", "file", "symlink", "whiteout", "opaque", "node"
    info: FileInfo | DirMeta
    csum: str = ""
    size: int = 0
    rdev: int = 0
    node_type: int = 0


def _walk(repo: Repo, contents: str, meta: str, path: str, overlay: bool, out: list[_Entry],
          depth: int = 0) -> int:
    """Append the entries of a tree in tar order (dir, its files, its subdirs); returns the content size."""
    if depth > MAX_DEPTH:
        raise OstreeError(f"Exceeded maximum recursion depth of {MAX_DEPTH} at /{path}")
    dm = repo.load_dirmeta(meta)
    tree = repo.load_dirtree(contents)
    dir_entry = _Entry(path, "dir", dm)
    out.append(dir_entry)
    opaque_x = [x for x in dm.xattrs if obj.xattr_name(x[0]).decode("utf-8", "replace") in OPAQUE_XATTRS]
    marker: bytes | None = None
    total = 0
    files: list[_Entry] = []
    for name, csum in tree.files:
        co = repo.load_file(csum)
        info = co.info
        rel = f"{path}/{name}" if path else name
        k = quoted_kind(name) if not info.is_symlink else None
        if k is not None and k[0] == "opaque":
            marker = co.read()
            continue
        if k is not None and k[0] == "whiteout":
            wpath = f"{path}/{k[1]}" if path else k[1]
            files.append(_Entry(wpath, "whiteout", info))
            continue
        if k is not None and k[0] == "special":
            ntype, rdev = parse_special(co.read(), rel)
            files.append(_Entry(f"{path}/{k[1]}" if path else k[1], "node", info, rdev=rdev, node_type=ntype))
            continue
        if info.is_symlink:
            files.append(_Entry(rel, "symlink", info))
            continue
        files.append(_Entry(rel, "file", info, csum, info.size))
        total += info.size
    if overlay and (opaque_x or marker is not None):
        dir_entry.info = DirMeta(dm.uid, dm.gid, dm.mode, [x for x in dm.xattrs if x not in opaque_x])
        out.append(_Entry(f"{path}/.wh..wh..opq" if path else ".wh..wh..opq", "opaque", FileInfo(0o100000)))
    elif marker is not None:
        xattrs = [(n.encode() + b"\0", v) for n, v in parse_opaque_marker(marker, f"/{path}")]
        dir_entry.info = DirMeta(dm.uid, dm.gid, dm.mode, obj.normalize_xattrs([*dm.xattrs, *xattrs]))
    out.extend(sorted(files, key=lambda e: e.path))
    for name, tc, mc in tree.dirs:
        total += _walk(repo, tc, mc, f"{path}/{name}" if path else name, overlay, out, depth + 1)
    return total


# ---------------------------------------------------------------------------
# tar writing


class _LayerWriter:
    """uncompressed tar -> sha256 (diff_id) -> gzip -> sha256 (blob digest) -> file."""

    def __init__(self, f: io.BufferedWriter, level: int = 6) -> None:
        self.f = f
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        self.z = zlib.compressobj(level, zlib.DEFLATED, 31)  # gzip framing

    def _out(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.f.write(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self._out(self.z.compress(data))
        return len(data)

    def close(self) -> None:
        self._out(self.z.flush())


def _pax_xattrs(xattrs: obj.Xattrs) -> dict[str, str]:
    out = {}
    for n, v in xattrs:
        name = obj.xattr_name(n).decode("utf-8", "surrogateescape")
        out["SCHILY.xattr." + name] = v.decode("utf-8", "surrogateescape")
    return out


def _tarinfo(e: _Entry, mtime: int) -> tarfile.TarInfo:
    name = e.path if e.kind != "dir" else (e.path + "/" if e.path else "./")
    ti = tarfile.TarInfo(name)
    info = e.info
    ti.mode = stat.S_IMODE(info.mode)
    ti.uid, ti.gid = info.uid, info.gid
    ti.uname = ti.gname = ""
    ti.mtime = mtime
    xattrs = info.xattrs
    if e.kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif e.kind == "file":
        ti.type = tarfile.REGTYPE
        ti.size = e.size
    elif e.kind == "symlink":
        assert isinstance(info, FileInfo)
        ti.type = tarfile.SYMTYPE
        ti.linkname = info.symlink_target
        ti.mode = 0o777
    elif e.kind == "opaque":
        ti.type = tarfile.REGTYPE
        ti.mode, ti.uid, ti.gid = 0o644, 0, 0
        xattrs = []
    elif e.kind == "node" or e.kind == "whiteout":
        ti.type = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE,
                   stat.S_IFIFO: tarfile.FIFOTYPE}.get(e.node_type or stat.S_IFCHR, tarfile.FIFOTYPE)
        if e.node_type == stat.S_IFSOCK:
            raise OstreeError(f"/{e.path}: sockets cannot be put in a tar layer")
        ti.devmajor, ti.devminor = os.major(e.rdev), os.minor(e.rdev)
    if xattrs:
        ti.pax_headers = _pax_xattrs(xattrs)
    return ti


def _write_layer(repo: Repo, entries: list[_Entry], overlay: bool, blobs: str, mtime: int,
                 level: int = 6) -> dict[str, object]:
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    try:
        with os.fdopen(fd, "wb") as raw:
            w = _LayerWriter(raw, level)
            with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                first: dict[str, str] = {}
                for e in entries:
                    if e.kind == "whiteout" and overlay:
                        d, _, n = e.path.rpartition("/")
                        e = _Entry(f"{d}/.wh.{n}" if d else f".wh.{n}", "opaque", e.info)
                    ti = _tarinfo(e, mtime)
                    if e.kind == "file":
                        prev = first.get(e.csum)
                        if prev is not None:
                            ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, prev, 0
                            tf.addfile(ti)
                            continue
                        first[e.csum] = e.path
                        with repo.load_file(e.csum).open() as f:
                            tf.addfile(ti, f)
                    else:
                        tf.addfile(ti)
            w.close()
        digest = "sha256:" + w.blob.hexdigest()
        os.rename(tmp, os.path.join(blobs, w.blob.hexdigest()))
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return {"mediaType": MEDIA_LAYER, "digest": digest, "size": w.size,
            "diff_id": "sha256:" + w.diff.hexdigest()}


# ---------------------------------------------------------------------------
# splitting a plain commit


def _split(entries: list[_Entry], sizes: dict[str, int], n: int) -> list[list[_Entry]]:
    """Up to *n* layers cut along directories, in path order, each about total/n bytes.

    A directory subtree of at most total/n bytes is kept whole; bigger ones are
    cut between their files and subdirectories.  Consecutive pieces fill a layer
    up to total/n.  So a change inside one directory changes one layer, and an
    unchanged subtree lands in a layer with the same bytes as before.
    """
    total = sizes.get("", 0)
    if n <= 1 or total == 0:
        return [entries]
    target = max(1, total // n)
    # the "unit" of each entry: the outermost directory at most target bytes big
    unit_of: dict[str, str] = {}

    def unit(path: str) -> str:
        parts = path.split("/") if path else []
        for i in range(len(parts) + 1):
            d = "/".join(parts[:i])
            if sizes.get(d, 0) <= target:
                return d
        return path
    units: list[str] = []
    unit_size: dict[str, int] = {}
    for e in entries:
        parent = e.path if e.kind == "dir" else e.path.rpartition("/")[0]
        u = unit(parent)
        unit_of[e.path] = u
        if u not in unit_size:
            units.append(u)
            unit_size[u] = 0
        if e.kind == "file":
            unit_size[u] += e.size
    layer_of_unit: dict[str, int] = {}
    layer, filled = 0, 0
    for u in units:
        if filled and filled + unit_size[u] > target and layer < n - 1:
            layer, filled = layer + 1, 0
        layer_of_unit[u] = layer
        filled += unit_size[u]
    count = layer + 1
    dirs = {e.path: e for e in entries if e.kind == "dir"}
    out: list[list[_Entry]] = [[] for _ in range(count)]
    emitted: list[set[str]] = [set() for _ in range(count)]
    for e in entries:
        li = layer_of_unit[unit_of[e.path]]
        parent = e.path if e.kind == "dir" else e.path.rpartition("/")[0]
        chain = []
        p = parent
        while p not in emitted[li]:
            chain.append(p)
            if not p:
                break
            p = p.rpartition("/")[0]
        for d in reversed(chain):
            emitted[li].add(d)
            out[li].append(dirs[d])
        if e.kind != "dir":
            out[li].append(e)
    return [layer for layer in out if layer]


def _dir_sizes(entries: list[_Entry]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for e in entries:
        if e.kind == "dir":
            sizes.setdefault(e.path, 0)
        elif e.kind == "file":
            p = e.path
            while True:
                p = p.rpartition("/")[0] if "/" in p else ""
                sizes[p] = sizes.get(p, 0) + e.size
                if not p:
                    break
    return sizes


# ---------------------------------------------------------------------------
# config, manifest, layout


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels_from_metadata(c: obj.Commit, csum: str) -> dict[str, str]:
    labels = {"ostree.commit": csum}
    for k, v in c.metadata:
        if k.startswith("pyostree.container."):
            continue
        val = v.value if isinstance(v, gvariant.Variant) else v
        if isinstance(val, bool):
            labels[k] = "true" if val else "false"
        elif isinstance(val, (str, int)):
            labels[k] = str(val)
    return labels


def _config(repo: Repo, c: obj.Commit, csum: str, image: bool, diff_ids: list[str],
            opts: ExportOptions) -> dict[str, object]:
    cfg: dict[str, object] = {}
    if image:
        raw = c.get_metadata(MD_CONFIG)
        text = raw.value if isinstance(raw, gvariant.Variant) else raw
        try:
            parsed = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            cfg = parsed
    if not cfg:
        cfg = {"created": _iso(c.timestamp), "architecture": Platform.host().arch, "os": "linux",
               "config": {"Labels": _labels_from_metadata(c, csum)}}
    hist = cfg.get("history")
    if not isinstance(hist, list) or len([h for h in hist if isinstance(h, dict)
                                          and not h.get("empty_layer")]) != len(diff_ids):
        cfg["history"] = [{"created": cfg.get("created", _iso(c.timestamp)),
                           "created_by": "pyostree container export"} for _ in diff_ids]
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    if opts.arch:
        cfg["architecture"] = opts.arch
    rc = cfg.get("config")
    runtime: dict[str, object] = rc if isinstance(rc, dict) else {}
    cfg["config"] = runtime
    if opts.cmd is not None:
        runtime["Cmd"] = list(opts.cmd)
    if opts.labels:
        lab = runtime.get("Labels")
        labels: dict[str, object] = lab if isinstance(lab, dict) else {}
        labels.update(opts.labels)
        runtime["Labels"] = labels
    return cfg


def _put_blob(blobs: str, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(data)
    return "sha256:" + hexd


def _write_layout(repo: Repo, csum: str, layout: str, tag: str, opts: ExportOptions) -> ExportResult:
    c = repo.load_commit(csum)
    image = c.get_metadata(MD_LAYERS) is not None
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    if image:
        groups = []
        for lc in strs_metadata(c, MD_LAYERS):
            obj.validate_checksum(lc)
            layer = repo.load_commit(lc)
            entries: list[_Entry] = []
            _walk(repo, layer.root_contents, layer.root_meta, "", True, entries)
            groups.append(entries)
    else:
        entries = []
        _walk(repo, c.root_contents, c.root_meta, "", False, entries)
        groups = _split(entries, _dir_sizes(entries), opts.max_layers)
    descs = [_write_layer(repo, g, image, blobs, 0, opts.gzip_level) for g in groups]  # mtime 0: same content, same layer
    diff_ids = [str(d.pop("diff_id")) for d in descs]
    cfg = json.dumps(_config(repo, c, csum, image, diff_ids, opts), sort_keys=True).encode()
    cdesc = {"mediaType": MEDIA_CONFIG, "digest": _put_blob(blobs, cfg), "size": len(cfg)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": cdesc,
                           "layers": descs}, sort_keys=True).encode()
    mdigest = _put_blob(blobs, manifest)
    index_path = os.path.join(layout, "index.json")
    index: dict[str, object] = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path, "rb") as f:
            try:
                old = json.loads(f.read(4 << 20))
            except ValueError:
                raise OstreeError(f"{index_path}: invalid JSON") from None
        if isinstance(old, dict) and isinstance(old.get("manifests"), list):
            index = old
    ann = "org.opencontainers.image.ref.name"
    old_mans = index.get("manifests")
    mans = [m for m in (old_mans if isinstance(old_mans, list) else [])
            if isinstance(m, dict) and (m.get("annotations") or {}).get(ann) != tag]
    mans.append({"mediaType": MEDIA_MANIFEST, "digest": mdigest, "size": len(manifest),
                 "annotations": {ann: tag}})
    index["manifests"] = mans
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(index_path + ".tmp", "w") as f:
        json.dump(index, f)
    os.rename(index_path + ".tmp", index_path)
    return ExportResult(len(descs), mdigest, diff_ids)


def export_image(repo: Repo, rev: str, dest: str, opts: ExportOptions | None = None) -> ExportResult:
    """Write commit/image *rev* as an OCI image to *dest* (any skopeo destination)."""
    opts = opts or ExportOptions()
    csum = refs.resolve_rev(repo, rev)
    assert csum is not None
    transport, sep, rest = dest.partition(":")
    if not sep or not rest:
        raise OstreeError(f"Invalid destination '{dest}' (expected e.g. oci:DIR[:TAG], oci-archive:FILE, "
                          "docker-archive:FILE, docker://HOST/NAME:TAG, containers-storage:NAME)")
    if transport == "oci":
        path, _, tag = rest.partition(":")
        os.makedirs(path, exist_ok=True)
        return _write_layout(repo, csum, path, tag or opts.tag or "latest", opts)
    from pyostree.oci.skopeo import skopeo_copy

    tmp = tempfile.mkdtemp(prefix="container-export-", dir=os.path.join(repo.path, "tmp"))
    try:
        res = _write_layout(repo, csum, os.path.join(tmp, "layout"), "image", opts)
        import sys

        skopeo_copy(f"oci:{os.path.join(tmp, 'layout')}:image", dest,
                    quiet=opts.quiet or not sys.stderr.isatty())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res
