"""The 3-way ``/etc`` merge done when a new deployment is created.

The changes an administrator made in the merge deployment (its ``/usr/etc``
versus ``/etc``, ignoring xattrs) are applied to the new deployment's
``/etc``: removed paths are deleted, modified and added ones copied over
(the local version always wins; no content merge), as
``merge_configuration_from`` in libostree.  Symlinks are copied as symlinks
and never followed; other special files are skipped.
"""

from __future__ import annotations

import os
import shutil
import stat

from pyostree.errors import OstreeError
from pyostree.store.files import list_xattrs, random_token, set_xattrs
from pyostree.store.objects import Record
from pyostree.store.repo import Repo
from pyostree.tree.diff import DiffOptions, diff_dirs, open_side


class MergeStats(Record):
    def __init__(self, modified: int, removed: int, added: int) -> None:
        self.modified = modified
        self.removed = removed
        self.added = added



def _copy_attrs(src: str, dst: str, no_xattrs: bool) -> None:
    if not no_xattrs:
        set_xattrs(dst, list_xattrs(src, follow=True), follow=True)
    st = os.stat(src)
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))


def _copy_file(src: str, dst: str, no_xattrs: bool) -> None:
    st = os.lstat(src)
    if (os.path.lexists(dst) and not os.path.isdir(dst)) or os.path.islink(dst):
        os.unlink(dst)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        os.lchown(dst, st.st_uid, st.st_gid)
        if not no_xattrs:
            set_xattrs(dst, list_xattrs(src))
        return
    if not stat.S_ISREG(st.st_mode):
        raise OstreeError(f"Cannot copy non-regular/non-symlink file: {src}")
    parent = os.path.dirname(dst) or "."
    tmp = os.path.join(parent, f".{os.path.basename(dst)}.{random_token(8)}.tmp")
    with open(src, "rb") as fi, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                                             | os.O_NOFOLLOW, 0o600), "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        fd = fo.fileno()
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        if not no_xattrs:
            set_xattrs(fd, list_xattrs(src))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(tmp, dst)


def _copy_dir(src: str, dst: str, no_xattrs: bool) -> None:
    try:
        os.mkdir(dst, 0o700)
    except FileExistsError:
        if not os.path.isdir(dst) or os.path.islink(dst):
            raise OstreeError(f"Copying {dst}: File exists") from None
    _copy_attrs(src, dst, no_xattrs)
    for ent in os.scandir(src):
        s, d = ent.path, os.path.join(dst, ent.name)
        if ent.is_dir(follow_symlinks=False):
            _copy_dir(s, d, no_xattrs)
        else:
            try:
                _copy_file(s, d, no_xattrs)
            except OSError as e:
                raise OstreeError(f"Copying {ent.name}: {e.strerror}") from None


def _ensure_dir_from_template(modified: str, new: str, path: str, no_xattrs: bool) -> None:
    while True:
        try:
            os.mkdir(os.path.join(new, path), 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent:
                _ensure_dir_from_template(modified, new, parent, no_xattrs)
                continue
            raise
        break
    _copy_attrs(os.path.join(modified, path), os.path.join(new, path), no_xattrs)


def _check_no_symlink_parents(new: str, path: str) -> None:
    """Refuse to write through a symlinked directory of the new /etc (it may point anywhere)."""
    parts = path.split("/")[:-1]
    cur = new
    for p in parts:
        cur = os.path.join(cur, p)
        if os.path.islink(cur):
            raise OstreeError(f"Refusing to merge /etc/{path}: /etc/{os.path.relpath(cur, new)} is a symlink")


def _copy_modified(modified: str, new: str, path: str, no_xattrs: bool) -> None:
    _check_no_symlink_parents(new, path)
    src = os.path.join(modified, path)
    try:
        mst = os.lstat(src)
    except OSError as e:
        raise OstreeError(f"Reading modified config file: {e.strerror}") from None
    if "/" in path:
        _ensure_dir_from_template(modified, new, os.path.dirname(path), no_xattrs)
    dst = os.path.join(new, path)
    try:
        nst = os.lstat(dst)
    except FileNotFoundError:
        nst = None
    if nst is not None:
        if stat.S_ISDIR(nst.st_mode):
            if not stat.S_ISDIR(mst.st_mode):
                raise OstreeError(f"Modified config file newly defaults to directory '{path}', cannot merge")
            return
        os.unlink(dst)
    if stat.S_ISDIR(mst.st_mode):
        _copy_dir(src, dst, no_xattrs)
    elif stat.S_ISLNK(mst.st_mode) or stat.S_ISREG(mst.st_mode):
        try:
            _copy_file(src, dst, no_xattrs)
        except OSError as e:
            raise OstreeError(f"Copying {path}: {e.strerror}") from None
    # other file types are ignored, as ostree does


def merge_etc(repo: Repo, merge_root: str, new_root: str, *, no_xattrs: bool = False) -> MergeStats:
    """Apply the ``/usr/etc`` -> ``/etc`` changes of *merge_root* to *new_root*'s ``/etc``."""
    try:
        orig = os.path.join(merge_root, "usr/etc")
        modified = os.path.join(merge_root, "etc")
        new = os.path.join(new_root, "etc")
        res = diff_dirs(repo, open_side(repo, os.path.abspath(orig)),
                        open_side(repo, os.path.abspath(modified)), DiffOptions(ignore_xattrs=True))
        for p in res.removed:
            _check_no_symlink_parents(new, p)
            target = os.path.join(new, p)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
        for _, p in res.modified:
            _copy_modified(modified, new, p, no_xattrs)
        for p in res.added:
            _copy_modified(modified, new, p, no_xattrs)
    except OstreeError as e:
        raise OstreeError(f"During /etc merge: {e}", errno=e.errno) from None
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise OstreeError(f"During /etc merge: {e.strerror}{where}", errno=e.errno) from None
    return MergeStats(len(res.modified), len(res.removed), len(res.added))
