"""The transaction machinery of a repository: publishing staged objects into ``objects/``,
the ``with repo.transaction()`` context, the repository lock and the threaded object writer.

The staging directory and its bookkeeping live on the Repo (repo.py); this
module needs nothing of it but the few methods of :class:`_Transactional`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Callable

from pyostree.store.files import rm_rf_at

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from concurrent.futures import Future
    from typing import Protocol

    class _Transactional(Protocol):
        """What a transaction needs of the repository (a Repo)."""

        def prepare_transaction(self) -> None: ...
        def commit_transaction(self) -> None: ...
        def abort_transaction(self) -> None: ...
        def _abandon_transaction(self) -> None: ...


def publish_staged(staging_dfd: int, objects_dfd: int, staged: set[str], staged_dirs: set[str], *,
                   fsync: bool) -> None:
    """Move a committing transaction's staged objects (*staged*: checksum + type, in the
    *staged_dirs* XX/ of *staging_dfd*) into ``objects/``."""
    # move staged objects into objects/; commit objects last, so that an
    # interrupted rename never leaves a commit whose tree is missing.
    # A staged XX/ that objects/ lacks (a fresh repository) and that holds no
    # commit moves in one rename of the directory instead of one per object.
    # rename(2) replaces no non-empty directory (then ours go one by one), and
    # writers (ostree's too) move objects in by path, so an objects/XX/ another
    # writer has just made, still empty, may be replaced without losing anything.
    present = set(os.listdir(objects_dfd))
    commit_prefixes = {k[:2] for k in staged if k[64:] == "commit"}
    per_object: list[str] = []
    for prefix in sorted(staged_dirs):
        if prefix not in present and prefix not in commit_prefixes:
            try:
                os.rename(prefix, prefix, src_dir_fd=staging_dfd, dst_dir_fd=objects_dfd)
                continue
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        per_object.append(prefix)
    for commits_pass in (False, True):
        for prefix in per_object:
            if not commits_pass:
                try:
                    os.mkdir(prefix, 0o755, dir_fd=objects_dfd)
                except FileExistsError:
                    pass
            pdfd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=staging_dfd)
            try:
                for name in os.listdir(pdfd):
                    if name.endswith(".commit") == commits_pass:
                        os.rename(name, f"{prefix}/{name}", src_dir_fd=pdfd, dst_dir_fd=objects_dfd)
            finally:
                os.close(pdfd)
    if fsync:
        if len(per_object) < len(staged_dirs):
            os.fsync(objects_dfd)  # the moved directories' own entries
        for prefix in per_object:
            fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=objects_dfd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class _Transaction:
    """``with repo.transaction():`` prepare on entry; commit on success, abort on error."""

    def __init__(self, repo: _Transactional) -> None:
        self.repo = repo

    def __enter__(self) -> _Transactional:
        self.repo.prepare_transaction()
        return self.repo

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.repo.commit_transaction()
            except BaseException:
                self._fail()
                raise
        else:
            self._fail()

    def _fail(self) -> None:
        # leave the staging dir as ostree does for debugging only when the test hook asks
        if os.environ.get("OSTREE_REPO_TEST_ERROR"):
            self.repo._abandon_transaction()
        else:
            self.repo.abort_transaction()


_FLOCK = "hhxxxxqqi4x"  # struct flock on Linux x86-64/aarch64


class _RepoLock:
    def __init__(self, dfd: int, exclusive: bool) -> None:
        self.dfd = dfd
        self.exclusive = exclusive
        self.fd: int | None = None

    def __enter__(self) -> _RepoLock:
        fd = os.open(".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=self.dfd)
        ltype = fcntl.F_WRLCK if self.exclusive else fcntl.F_RDLCK
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack(_FLOCK, ltype, os.SEEK_SET, 0, 0, 0))
        except OSError:
            fcntl.flock(fd, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
        self.fd = fd
        return self

    def __exit__(self, *a: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the fd releases the OFD lock
            self.fd = None


_WRITE_THREADS = min(4, os.cpu_count() or 1) if os.environ.get("PYOSTREE_WRITE_THREADS") is None \
    else int(os.environ["PYOSTREE_WRITE_THREADS"])
_MAX_INFLIGHT = 64
_MAX_INFLIGHT_BYTES = 16 << 20


class _AsyncWriter:
    """Object writes running in a few threads; bounded in count and bytes held.

    ``wait_for`` blocks until a given object is on disk, ``drain`` until all
    are; the first failure is re-raised in the caller's thread.
    """

    def __init__(self) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=_WRITE_THREADS, thread_name_prefix="pyostree-write")
        self._pending: dict[str, Future[None]] = {}
        self._queue: deque[tuple[str, Future[None], int]] = deque()
        self._bytes = 0

    def submit(self, key: str, nbytes: int, fn: Callable[..., None], *args: object) -> None:
        fut = self._pool.submit(fn, *args)
        self._pending[key] = fut
        self._queue.append((key, fut, nbytes))
        self._bytes += nbytes
        while self._queue and (len(self._queue) > _MAX_INFLIGHT or self._bytes > _MAX_INFLIGHT_BYTES):
            self._pop()

    def _pop(self) -> None:
        key, fut, nbytes = self._queue.popleft()
        self._bytes -= nbytes
        self._pending.pop(key, None)
        fut.result()

    def wait_for(self, key: str) -> None:
        fut = self._pending.get(key)
        if fut is not None:
            fut.result()

    def drain(self) -> None:
        while self._queue:
            self._pop()

    def shutdown(self) -> None:
        """Wait for every write (errors ignored: the transaction is going away)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._queue.clear()
        self._pending.clear()


# ---------------------------------------------------------------------------
# tmp/ housekeeping, as libostree's cleanup_tmpdir

_TMP_EXPIRY_SECONDS = 24 * 60 * 60


def lock_tmpdir(tmp_dfd: int, name: str, *, wait: bool = True) -> int | None:
    """Lock ``NAME-lock`` beside a staging dir; None when another process holds it (no wait)."""
    fd = os.open(f"{name}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=tmp_dfd)
    try:
        # an open-file-description write lock, as glnx_make_lock_file takes (flock(2) locks
        # would not conflict with libostree's)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK,
                    struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock_tmpdir(tmp_dfd: int, name: str, fd: int) -> None:
    """Remove the lock file while still holding it (as glnx_release_lock_file), then let it go."""
    try:
        os.unlink(f"{name}-lock", dir_fd=tmp_dfd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def cleanup_tmpdir(tmp_dfd: int) -> None:
    """After a transaction: remove staging dirs no transaction holds (other boots' and crashed
    ones), and other entries of ``tmp/`` older than a day; ``cache`` stays.

    libostree keeps an unlocked staging dir of the current boot for a later transaction to reuse;
    pyostree starts each transaction in a fresh dir, so such a dir is only left-over and goes too.
    """
    import time

    now = time.time()
    for entry in os.scandir(tmp_dfd):
        name = entry.name
        if name == "cache":
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # another cleanup won
        if name.startswith("staging-") and stat.S_ISDIR(st.st_mode):
            fd = lock_tmpdir(tmp_dfd, name, wait=False)
            if fd is None:
                continue  # a live transaction (ours or another process's)
            try:
                rm_rf_at(tmp_dfd, name)
            finally:
                unlock_tmpdir(tmp_dfd, name, fd)
            continue
        if name.startswith("staging-") and name.endswith("-lock"):
            continue  # a live transaction's lock, or removed with its dir
        if st.st_mtime > now or now - st.st_mtime <= _TMP_EXPIRY_SECONDS:
            continue
        rm_rf_at(tmp_dfd, name)
