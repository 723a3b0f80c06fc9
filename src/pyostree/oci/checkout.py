"""``container checkout``: an image's layers as overlayfs lower dirs, and the overlay mount.

Each layer commit is checked out with whiteouts (char 0:0), opaque dirs and
special files restored.  From ``bare`` repositories (and ``bare-user`` ones in
user mode) files are hardlinked from ``objects/`` by the ordinary checkout
(:func:`pyostree.tree.checkout.checkout_tree`), so a layer costs directories
and inodes only, and files that share content (a layer's hardlinks among them)
share an inode.  ``--userxattr`` layers, and repositories that cannot be
hardlinked from, are copied; files with the same content in one layer are
then hardlinked to each other, so in-layer hardlinks survive.

The checkout is written to ``DEST/layers.new`` and renamed into place, so a
failure leaves the previous checkout (or nothing) behind, never a half-written
one; a re-run reuses the layer directories whose commit did not change.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shlex
import shutil
import stat
from dataclasses import dataclass

from pyostree.errors import OstreeError
from pyostree.oci.image import MD_IMPLICIT, MD_LAYERS, strs_metadata
from pyostree.store import objects as obj
from pyostree.store import refs
from pyostree.store.objects import FileInfo
from pyostree.store.repo import Repo, RepoMode
from pyostree.tree.quoting import (
    make_whiteout_at,
    quoted_kind,
    restore_opaque_at,
    restore_special_at,
)

MAX_DEPTH = 256  # OSTREE_MAX_RECURSION
STATE_FILE = "layers.json"

__all__ = ["LayersCheckout", "checkout_layers", "checkout_tree", "mount_overlay", "overlay_mount_command"]


def _set_meta(dfd: int, name: str | None, info: FileInfo, set_owner: bool, is_link: bool = False) -> None:
    target: str | int = dfd if name is None else f"/proc/self/fd/{dfd}/{name}"
    try:
        if set_owner:
            if name is None:
                os.fchown(dfd, info.uid, info.gid)
            else:
                os.chown(name, info.uid, info.gid, dir_fd=dfd, follow_symlinks=False)
        if not is_link:
            if name is None:
                os.fchmod(dfd, stat.S_IMODE(info.mode))
            else:
                os.chmod(name, stat.S_IMODE(info.mode), dir_fd=dfd)
        for xname, value in info.xattrs:
            n = obj.xattr_name(xname).decode("utf-8", "surrogateescape")
            if isinstance(target, int):
                os.setxattr(target, n, value)
            else:
                os.setxattr(target, n, value, follow_symlinks=False)
    except OSError as e:
        raise OstreeError(f"Setting metadata of {name or '.'}: {e.strerror}", errno=e.errno) from None


def _user_overlay(xattrs: obj.Xattrs) -> obj.Xattrs:
    """``trusted.overlay.*`` -> ``user.overlay.*`` (overlayfs ``userxattr`` mounts)."""
    pre = b"trusted.overlay."
    return obj.normalize_xattrs((b"user.overlay." + n[len(pre):] if n.startswith(pre) else n, v)
                                for n, v in xattrs)


class _CopyCheckout:
    """The copying checkout (``--userxattr``, archive repos); same content -> one inode per layer."""

    def __init__(self, repo: Repo, root_fd: int, set_owner: bool, userxattr: bool) -> None:
        self.repo = repo
        self.root_fd = root_fd
        self.set_owner = set_owner
        self.userxattr = userxattr
        self.first: dict[str, str] = {}  # content checksum -> path (relative to the root) written first

    def dir(self, contents: str, meta: str, dfd: int, rel: str, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise OstreeError(f"Exceeded maximum recursion depth of {MAX_DEPTH}")
        tree = self.repo.load_dirtree(contents)
        opaque: bytes | None = None
        for name, csum in tree.files:
            obj.validate_filename(name)
            co = self.repo.load_file(csum)
            info = co.info
            k = quoted_kind(name) if not info.is_symlink else None
            if k is not None and k[0] == "opaque":
                opaque = co.read()
                continue
            if k is not None and k[0] == "whiteout":
                make_whiteout_at(dfd, k[1], info, set_owner=self.set_owner)
                continue
            if k is not None and k[0] == "special":
                restore_special_at(dfd, k[1], info, co.read(), set_owner=self.set_owner)
                continue
            if info.is_symlink:
                os.symlink(info.symlink_target, name, dir_fd=dfd)
                _set_meta(dfd, name, info, self.set_owner, is_link=True)
                continue
            prev = self.first.get(csum)
            if prev is not None and not (self.userxattr and info.xattrs):
                try:
                    os.link(prev, name, src_dir_fd=self.root_fd, dst_dir_fd=dfd, follow_symlinks=False)
                    continue
                except OSError:
                    pass
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600,
                         dir_fd=dfd)
            try:
                with co.open() as f:
                    while True:
                        chunk = f.read(1 << 20)
                        if not chunk:
                            break
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            _set_meta(dfd, name, info, self.set_owner)
            self.first.setdefault(csum, f"{rel}{name}")
        for name, tc, mc in tree.dirs:
            obj.validate_filename(name)
            os.mkdir(name, 0o700, dir_fd=dfd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                self.dir(tc, mc, sub, f"{rel}{name}/", depth + 1)
            finally:
                os.close(sub)
        dm = self.repo.load_dirmeta(meta)
        xattrs = _user_overlay(dm.xattrs) if self.userxattr else dm.xattrs
        _set_meta(dfd, None, FileInfo(dm.mode, dm.uid, dm.gid, 0, "", xattrs), self.set_owner)
        if opaque is not None:
            restore_opaque_at(dfd, opaque, userxattr=self.userxattr)


def _hardlinkable(repo: Repo, userxattr: bool) -> bool:
    if userxattr:
        return False
    if repo.mode is RepoMode.BARE:
        return os.geteuid() == 0
    return False


def checkout_tree(repo: Repo, rev: str, dest: str, *, userxattr: bool = False) -> None:
    """Write commit *rev* to the new directory *dest*, unquoting whiteouts, opaque dirs, nodes.

    With *userxattr*, overlayfs xattrs are written as ``user.overlay.*``.
    Hardlinks from the repository where its mode allows (see the module doc).
    """
    csum = refs.resolve_rev(repo, rev)
    assert csum is not None
    c = repo.load_commit(csum)
    if _hardlinkable(repo, userxattr):
        from pyostree.tree.checkout import CheckoutOptions
        from pyostree.tree.checkout import checkout_tree as plain_checkout

        if os.path.lexists(dest):
            raise OstreeError(f"{dest}: already exists")
        plain_checkout(repo, csum, dest, CheckoutOptions(process_passthrough_whiteouts=True,
                                                         unquote_special_files=True))
        return
    try:
        os.mkdir(dest, 0o700)
    except OSError as e:
        raise OstreeError(f"mkdir {dest}: {e.strerror}", errno=e.errno) from None
    dfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _CopyCheckout(repo, dfd, os.geteuid() == 0, userxattr).dir(c.root_contents, c.root_meta, dfd, "")
    finally:
        os.close(dfd)


def _escape_lower(p: str) -> str:
    return p.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lowers_top_first: list[str], userxattr: bool = False) -> str:
    return ("ro,userxattr," if userxattr else "ro,") + "lowerdir=" + \
        ":".join(_escape_lower(p) for p in lowers_top_first)


def overlay_mount_command(lowers_top_first: list[str], target: str, userxattr: bool = False) -> str:
    return shlex.join(["mount", "-t", "overlay", "overlay", "-o",
                       overlay_options(lowers_top_first, userxattr), target])


def mount_overlay(lowers_top_first: list[str], target: str, userxattr: bool = False) -> None:
    """Mount the read-only overlay of *lowers_top_first* at *target* (mount(2), no subprocess)."""
    opts = overlay_options(lowers_top_first, userxattr)
    if len(opts) >= 4096:
        raise OstreeError(f"overlay mount options too long ({len(opts)} bytes); use shorter paths")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    ms_rdonly = 1
    if libc.mount(b"overlay", os.fsencode(target), b"overlay", ctypes.c_ulong(ms_rdonly),
                  opts.encode()) != 0:
        e = ctypes.get_errno()
        raise OstreeError(f"mount overlay at {target}: {os.strerror(e)}", errno=e)


@dataclass
class LayersCheckout:
    layers: list[str]  # bottom first
    merged: str
    lowers_top_first: list[str]
    mounted: bool = False
    userxattr: bool = False
    reused: int = 0

    @property
    def mount_command(self) -> str:
        return overlay_mount_command(self.lowers_top_first, self.merged, self.userxattr)


def _lower_dirmeta(repo: Repo, lowers: list[str], path: str) -> obj.DirMeta | None:
    """The metadata the layers *lowers* (bottom first) give directory *path*, or None."""
    parts = [p for p in path.split("/") if p]
    for lc in reversed(lowers):
        c = repo.load_commit(lc)
        contents, meta = c.root_contents, c.root_meta
        found = True
        for p in parts:
            tree = repo.load_dirtree(contents)
            sub = next(((tc, mc) for n, tc, mc in tree.dirs if n == p), None)
            if sub is None:
                if any(n == p for n, _ in tree.files):
                    return None  # a non-directory there hides everything below
                found = False
                break
            contents, meta = sub
        if found and path not in strs_metadata(c, MD_IMPLICIT):
            return repo.load_dirmeta(meta)
    return None


def _inherit_implicit_dirs(repo: Repo, layers: list[str], i: int, root: str, userxattr: bool) -> None:
    """Directories layer *i* never listed get the mode, owner and xattrs the lower layers gave them.

    The layer commit cannot carry them (it is shared by every image that has the
    layer, whatever is below it), so the stacked view is fixed up here, as the
    flattened one is by :func:`pyostree.oci.image.flatten_layers`.
    """
    set_owner = os.geteuid() == 0
    for path in strs_metadata(repo.load_commit(layers[i]), MD_IMPLICIT):
        dm = _lower_dirmeta(repo, layers[:i], path)
        if dm is None:
            continue
        xattrs = [x for x in dm.xattrs if not obj.xattr_name(x[0]).startswith(b"trusted.overlay.")]
        if userxattr:
            xattrs = list(_user_overlay(xattrs))
        target = os.path.join(root, path.lstrip("/")) if path != "/" else root
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _set_meta(fd, None, FileInfo(dm.mode, dm.uid, dm.gid, 0, "", xattrs), set_owner)
        finally:
            os.close(fd)


def _read_state(dest: str) -> dict[str, object] | None:
    try:
        with open(os.path.join(dest, STATE_FILE), "rb") as f:
            st = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    return st if isinstance(st, dict) else None


def checkout_layers(repo: Repo, ref: str, dest: str, *, mount: bool = False,
                    userxattr: bool = False) -> LayersCheckout:
    """``container checkout``: DEST/layers/0..N-1 (bottom first), DEST/merged; mount if asked.

    DEST may be absent, empty, or an earlier ``container checkout`` (not
    mounted): then it is replaced, reusing the unchanged layers.
    """
    csum = refs.resolve_rev(repo, ref)
    assert csum is not None
    c = repo.load_commit(csum)
    if c.get_metadata(MD_LAYERS) is None:
        raise OstreeError(f"Commit {csum} ({ref}) is not a container image (no {MD_LAYERS})")
    layers = strs_metadata(c, MD_LAYERS)
    for lc in layers:
        obj.validate_checksum(lc)
    dest = os.path.abspath(dest)
    merged = os.path.join(dest, "merged")
    created = not os.path.lexists(dest)
    old_state: dict[str, object] | None = None
    try:
        os.makedirs(dest, exist_ok=True)
        entries = set(os.listdir(dest))
        if entries:
            old_state = _read_state(dest)
            if old_state is None or not entries <= {"layers", "merged", STATE_FILE, "layers.new"}:
                raise OstreeError(f"{dest}: destination exists and is not empty "
                                  "(nor an earlier container checkout)")
            if os.path.ismount(merged):
                raise OstreeError(f"{merged} is mounted; unmount it first (umount {shlex.quote(merged)})")
        new = os.path.join(dest, "layers.new")
        if os.path.lexists(new):
            shutil.rmtree(new)
        os.mkdir(new, 0o755)
        if not os.path.isdir(merged):
            os.mkdir(merged, 0o755)
    except OSError as e:
        raise OstreeError(f"Creating {dest}: {e.strerror}", errno=e.errno) from None
    old_layers = old_state.get("layers") if old_state else None
    old_map: dict[str, int] = {}
    if isinstance(old_layers, list) and old_state and old_state.get("userxattr") == userxattr:
        old_map = {str(x): i for i, x in enumerate(old_layers)}
    reused = 0
    moved: list[tuple[str, str]] = []
    final_paths = [os.path.join(dest, "layers", str(i)) for i in range(len(layers))]
    try:
        for i, lc in enumerate(layers):
            p = os.path.join(new, str(i))
            j = old_map.pop(lc, None)
            same_stack = j == i and isinstance(old_layers, list) and old_layers[:i + 1] == layers[:i + 1]
            if j is not None and same_stack and os.path.isdir(os.path.join(dest, "layers", str(j))):
                os.rename(os.path.join(dest, "layers", str(j)), p)
                moved.append((p, os.path.join(dest, "layers", str(j))))
                reused += 1
                continue
            checkout_tree(repo, lc, p, userxattr=userxattr)
            _inherit_implicit_dirs(repo, layers, i, p, userxattr)
        if len(layers) < 2:  # a read-only overlay needs two lower dirs
            os.mkdir(os.path.join(new, "empty"), 0o755)
        old = os.path.join(dest, "layers")
        if os.path.lexists(old):
            trash = os.path.join(dest, "layers.old")
            os.rename(old, trash)
            os.rename(new, old)
            shutil.rmtree(trash)
        else:
            os.rename(new, old)
        with open(os.path.join(dest, STATE_FILE + ".tmp"), "w") as f:
            json.dump({"commit": csum, "layers": layers, "userxattr": userxattr}, f)
        os.rename(os.path.join(dest, STATE_FILE + ".tmp"), os.path.join(dest, STATE_FILE))
    except BaseException as e:
        for src, back in moved:  # give the earlier checkout its layers back
            try:
                os.rename(src, back)
            except OSError:
                pass
        shutil.rmtree(new, ignore_errors=True)
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, OSError):
            raise OstreeError(f"Checking out into {dest}: {e.strerror}", errno=e.errno) from None
        raise
    lowers = list(reversed(final_paths))
    if len(lowers) < 2:
        lowers.append(os.path.join(dest, "layers", "empty"))
    res = LayersCheckout(final_paths, merged, lowers, userxattr=userxattr, reused=reused)
    if mount:
        try:
            mount_overlay(lowers, res.merged, userxattr)
        except OstreeError as e:
            raise OstreeError(f"{e}; the layers are checked out, mount them with:\n  {res.mount_command}",
                              errno=e.errno) from None
        res.mounted = True
    return res
