"""HTTP(S) fetching for ``ostree pull``: one pooled urllib3 client per pull.

Every request ends in bounded time, whatever the server does:

* low-speed limits as libcurl's (ostree 2026.4's ``--low-speed-limit-bytes``
  and ``--low-speed-time-seconds``, defaults 1000 bytes/s over 30 s): a
  watchdog thread shuts the socket of a transfer (headers included) that
  received fewer than LIMIT*TIME bytes in its last TIME seconds, so a stall, a
  trickle (slow-loris) or a server that never answers ends with
  ``Operation too slow``;
* retries (``--network-retries``, default 5) for connection errors, timeouts
  and HTTP errors other than 403/404/410, unless retrying is disabled
  (``--disable-retry-on-network-errors``);
* a body cut short is resumed with a ``Range`` request; a resume that brings
  less than :data:`RESUME_PROGRESS` bytes counts as a failed attempt (a server
  answering each resume with one byte ends after ``retries`` resumes), and at
  most :data:`MAX_RESUMES` resumes are made per URL;
* bodies are bounded by a caller-supplied maximum (a declared
  ``Content-Length`` above it fails before reading, an endless body fails when
  it crosses it; ``size_bound`` lets the caller tighten the bound from the
  first bytes, e.g. from a ``.filez`` header);
* redirects (301/302/303/307/308) are followed as libcurl follows them, at
  most :data:`MAX_REDIRECTS` in a row, to http(s) URLs only.

Every error names the URL it is about.  :meth:`Fetcher.fetch_many` runs
requests in a bounded thread pool (urllib3's pool is thread safe) and yields
results in completion order; writing to the repository stays with the caller.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin, urlparse

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as _U3Error

from pyostree.errors import OstreeError

DEFAULT_TIMEOUT = 30.0
MAX_CONNECTIONS = 8
DEFAULT_RETRIES = 5
"""``--network-retries`` default (libostree's DEFAULT_N_NETWORK_RETRIES)."""
LOW_SPEED_LIMIT = 1000
"""``--low-speed-limit-bytes`` default (ostree 2026.4's OPT_LOWSPEEDLIMIT_DEFAULT)."""
LOW_SPEED_TIME = 30
"""``--low-speed-time-seconds`` default (ostree 2026.4's OPT_LOWSPEEDTIME_DEFAULT)."""
MAX_REDIRECTS = 30
"""libcurl's CURLOPT_MAXREDIRS default (ostree sets CURLOPT_FOLLOWLOCATION only)."""
RESUME_PROGRESS = 64 << 10
MAX_RESUMES = 64
USER_AGENT = "libostree/2022.7 pyostree"

K = TypeVar("K")


class NotFound(OstreeError):
    """The server answered 404 (or 403/410) for a URL."""


class FetchError(OstreeError):
    """A request failed for good (after its retries); the message names the URL."""


class FetchPolicy:
    """How hard to try: retries, low-speed limits, timeouts (one value per pull)."""

    __slots__ = ("low_speed_limit", "low_speed_time", "max_redirects", "retries", "retry_all", "timeout")

    def __init__(self, retries: int = DEFAULT_RETRIES, retry_all: bool = True,
                 low_speed_limit: int = LOW_SPEED_LIMIT, low_speed_time: int = LOW_SPEED_TIME,
                 timeout: float = DEFAULT_TIMEOUT, max_redirects: int = MAX_REDIRECTS) -> None:
        self.retries = max(0, retries)
        self.retry_all = retry_all
        self.low_speed_limit = max(0, low_speed_limit)
        self.low_speed_time = max(0, low_speed_time)
        self.timeout = timeout
        self.max_redirects = max(0, max_redirects)


class _Transfer:
    """One request in flight, watched for its speed."""

    __slots__ = ("cancelled", "conn", "too_slow", "window_bytes", "window_start")

    def __init__(self) -> None:
        self.conn: HTTPConnection | None = None
        self.window_start = time.monotonic()
        self.window_bytes = 0
        self.too_slow = False
        self.cancelled = False


_current = threading.local()


class _WatchedConn(HTTPConnection):
    def request(self, *a: Any, **kw: Any) -> None:
        t: _Transfer | None = getattr(_current, "transfer", None)
        if t is not None:
            t.conn = self
        super().request(*a, **kw)


class _WatchedSConn(HTTPSConnection):
    def request(self, *a: Any, **kw: Any) -> None:
        t: _Transfer | None = getattr(_current, "transfer", None)
        if t is not None:
            t.conn = self
        super().request(*a, **kw)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedConn


class _SPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedSConn


def _kill(t: _Transfer) -> None:
    conn = t.conn
    sock = getattr(conn, "sock", None) if conn is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watchdog:
    """Ends transfers slower than the low-speed limit (libcurl's CURLOPT_LOW_SPEED_*)."""

    def __init__(self, limit: int, seconds: int) -> None:
        self.limit = limit
        self.seconds = seconds
        self.active: set[_Transfer] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.seconds > 0

    def add(self, t: _Transfer) -> None:
        with self.lock:
            self.active.add(t)
            if self.thread is None and self.enabled:
                self.thread = threading.Thread(target=self._run, name="pull-watchdog", daemon=True)
                self.thread.start()

    def remove(self, t: _Transfer) -> None:
        with self.lock:
            self.active.discard(t)

    def cancel_all(self) -> None:
        with self.lock:
            for t in self.active:
                t.cancelled = True
                _kill(t)

    def close(self) -> None:
        self.stop.set()

    def _run(self) -> None:
        tick = min(1.0, self.seconds / 4)
        need = self.limit * self.seconds
        while not self.stop.wait(tick):
            now = time.monotonic()
            with self.lock:
                for t in self.active:
                    if now - t.window_start < self.seconds:
                        continue
                    if t.window_bytes < need:
                        t.too_slow = True
                        _kill(t)
                    else:
                        t.window_start = now
                        t.window_bytes = 0


class Fetcher:
    def __init__(self, base_url: str, *, retries: int = DEFAULT_RETRIES, timeout: float = DEFAULT_TIMEOUT,
                 max_workers: int = MAX_CONNECTIONS, headers: dict[str, str] | None = None,
                 policy: FetchPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or FetchPolicy(retries=retries, timeout=timeout)
        self.retries = self.policy.retries
        self.max_workers = max(1, max_workers)
        self.bytes_transferred = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._watchdog = _Watchdog(self.policy.low_speed_limit, self.policy.low_speed_time)
        t = self.policy.timeout
        if self._watchdog.enabled:
            t = max(t, float(self.policy.low_speed_time) + 5)  # the watchdog ends a stall first
        self._http = urllib3.PoolManager(
            num_pools=4, maxsize=self.max_workers, block=True,
            timeout=urllib3.Timeout(connect=self.policy.timeout, read=t),
            retries=False, headers={"User-Agent": USER_AGENT, **(headers or {})})
        self._http.pool_classes_by_scheme = {"http": _Pool, "https": _SPool}

    def close(self) -> None:
        self._watchdog.cancel_all()
        self._watchdog.close()
        self._http.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

    def url_for(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def get(self, path: str, *, max_size: int, optional: bool = False) -> bytes | None:
        """The body at BASEURL/*path* in memory (see :meth:`get_body`)."""
        body = self.get_body(path, max_size=max_size, optional=optional)
        if body is None:
            return None
        assert isinstance(body, bytes)
        return body

    def get_body(self, path: str, *, max_size: int, optional: bool = False,
                 spool_dir: str | None = None,
                 size_bound: Callable[[bytes], int | None] | None = None) -> bytes | BinaryIO | None:
        """The body at BASEURL/*path*; None for a 404 when *optional*, else :class:`NotFound`.

        *size_bound*, given the first bytes of the body, may return a tighter
        bound than *max_size* (None: needs more bytes).
        """
        url = self.url_for(path)
        attempt = 0
        resumes = 0
        buf = _Body(spool_dir, max_size, size_bound)
        try:
            while True:
                have = len(buf)
                try:
                    if self._get_once(url, buf):
                        with self._lock:
                            self.bytes_transferred += len(buf)
                        return buf.result()
                    if optional:
                        return None
                    raise NotFound(f"Server returned HTTP 404: {url}")
                except _Retryable as e:
                    if e.cancelled:
                        raise FetchError(f"While fetching {url}: {e}") from None
                    gained = len(buf) - have
                    if gained > 0 and e.resumable and resumes < MAX_RESUMES:
                        resumes += 1
                        if gained >= RESUME_PROGRESS and not e.too_slow:
                            continue  # a productive resume isn't a failed attempt (a too slow one is)
                    attempt += 1
                    if not self.policy.retry_all or attempt > self.policy.retries:
                        raise FetchError(f"While fetching {url}: {e}") from None
                    time.sleep(min(0.1 * (2 ** (attempt - 1)), 2.0))
        except BaseException:
            buf.clear()
            raise

    def _get_once(self, url: str, buf: _Body) -> bool:
        """Fetch (the rest of) *url* into *buf*, following redirects; False on 404."""
        t = _Transfer()
        self._watchdog.add(t)
        _current.transfer = t
        try:
            return self._get_once_watched(url, buf, t)
        except _Retryable as e:
            e.too_slow = t.too_slow
            e.cancelled = t.cancelled
            if t.cancelled:
                e.msg = "Operation cancelled"
            elif t.too_slow:
                e.msg = (f"Operation too slow. Less than {self.policy.low_speed_limit} bytes/sec "
                         f"transferred the last {self.policy.low_speed_time} seconds")
            raise
        finally:
            _current.transfer = None
            self._watchdog.remove(t)

    def _request(self, url: str, headers: dict[str, str], t: _Transfer) -> Any:
        try:
            return self._http.request("GET", url, headers=headers, preload_content=False, redirect=False,
                                      decode_content=False)
        except _U3Error as e:
            raise _Retryable(_u3_message(e)) from None
        except OSError as e:  # a socket shut by the watchdog
            raise _Retryable(str(e)) from None

    def _get_once_watched(self, url: str, buf: _Body, t: _Transfer) -> bool:
        headers = dict(self._http.headers)
        if buf:
            headers["Range"] = f"bytes={len(buf)}-"
        cur = url
        origin = urlparse(url).netloc
        for _ in range(self.policy.max_redirects + 1):
            with self._lock:
                self.requests += 1
            resp = self._request(cur, headers, t)
            status = resp.status
            if status in (301, 302, 303, 307, 308):
                loc = resp.headers.get("Location")
                _discard(resp)
                if not loc:
                    raise FetchError(f"While fetching {cur}: Server returned HTTP {status} without a Location")
                nxt = urljoin(cur, loc)
                if urlparse(nxt).scheme not in ("http", "https"):
                    raise FetchError(f"While fetching {cur}: redirected to an unsupported URL {nxt}")
                if urlparse(nxt).netloc != origin:
                    # libcurl doesn't send credentials to another host
                    headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
                cur = nxt
                continue
            return self._read(url, cur, resp, buf, t)
        raise FetchError(f"While fetching {url}: Number of redirects hit maximum amount "
                         f"({self.policy.max_redirects}, last {cur})")

    def _read(self, url: str, cur: str, resp: Any, buf: _Body, t: _Transfer) -> bool:
        ok = False
        try:
            status = resp.status
            if status in (403, 404, 410):
                return False
            if status == 206 and buf:
                cr = resp.headers.get("Content-Range", "")
                if not cr.startswith(f"bytes {len(buf)}-"):
                    raise FetchError(f"While fetching {cur}: unexpected Content-Range {cr!r}")
            elif status == 200:
                buf.clear()
            else:
                raise _Retryable(f"Server returned HTTP {status}")
            declared = resp.headers.get("Content-Length")
            expected: int | None = None
            if declared is not None:
                try:
                    expected = len(buf) + int(declared)
                except ValueError:
                    raise FetchError(f"While fetching {cur}: invalid Content-Length {declared!r}") from None
                if expected > buf.max_size:
                    raise FetchError(f"While fetching {cur}: Exceeded maximum size {buf.max_size}")
            read = resp.read1 if hasattr(resp, "read1") else resp.read
            try:
                while True:
                    chunk = read(1 << 16)
                    if not chunk:
                        break
                    t.window_bytes += len(chunk)
                    if not buf.write(chunk):
                        raise FetchError(f"While fetching {cur}: Exceeded maximum size {buf.max_size}")
            except (_U3Error, OSError):
                raise _Retryable("Download incomplete", resumable=True) from None
            if t.too_slow or t.cancelled:
                raise _Retryable("Download incomplete", resumable=True)
            if expected is not None and len(buf) != expected:
                raise _Retryable("Download incomplete", resumable=True)
            ok = True
            return True
        finally:
            if ok:
                resp.release_conn()
            else:
                _discard(resp)

    def fetch_many(self, items: Iterable[K], path_of: Callable[[K], str], *, max_size: int,
                   optional: bool = False, spool_dir: str | None = None,
                   size_bound: Callable[[bytes], int | None] | None = None
                   ) -> Iterator[tuple[K, bytes | BinaryIO | None]]:
        """Fetch many paths concurrently; yields ``(item, body)`` as they complete.

        The first failure cancels what hasn't started, ends what is running and is raised.
        """
        todo = list(items)
        if not todo:
            return
        if len(todo) == 1 or self.max_workers == 1:
            for it in todo:
                yield it, self.get_body(path_of(it), max_size=max_size, optional=optional, spool_dir=spool_dir,
                                        size_bound=size_bound)
            return
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="pull-fetch") as ex:
            pending: dict[Future[bytes | BinaryIO | None], K] = {}
            it_todo = iter(todo)
            window = self.max_workers * 4

            def fill() -> None:
                while len(pending) < window:
                    try:
                        item = next(it_todo)
                    except StopIteration:
                        return
                    pending[ex.submit(self.get_body, path_of(item), max_size=max_size, optional=optional,
                                      spool_dir=spool_dir, size_bound=size_bound)] = item

            fill()
            finished = False
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = pending.pop(fut)
                        yield item, fut.result()
                    fill()
                finished = True
            finally:
                for fut in pending:
                    fut.cancel()
                if not finished:
                    self._watchdog.cancel_all()
                    for fut in pending:
                        if not fut.cancelled():
                            try:
                                body = fut.result()
                            except BaseException:
                                continue
                            if body is not None and not isinstance(body, bytes):
                                body.close()


def _u3_message(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    return str(reason) if reason is not None else str(e)


def _discard(resp: Any) -> None:
    """Drop a response we won't read to the end: small bodies are drained, others close the connection."""
    try:
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) <= 65536:
            resp.read()
            resp.release_conn()
            return
    except (_U3Error, OSError):
        pass
    conn = getattr(resp, "connection", None)
    try:
        resp.close()
    except (_U3Error, OSError):
        pass
    if conn is not None:
        conn.close()
    resp.release_conn()


class _Retryable(Exception):
    def __init__(self, msg: str, *, resumable: bool = False) -> None:
        super().__init__(msg)
        self.msg = msg
        self.resumable = resumable
        self.too_slow = False
        self.cancelled = False

    def __str__(self) -> str:
        return self.msg


SPOOL_THRESHOLD = 16 << 20
"""Bodies larger than this go to a temporary file in ``spool_dir`` (when given), not memory."""


class _Body:
    def __init__(self, spool_dir: str | None, max_size: int,
                 size_bound: Callable[[bytes], int | None] | None = None) -> None:
        self._mem = bytearray()
        self._file: BinaryIO | None = None
        self._size = 0
        self._spool_dir = spool_dir
        self.max_size = max_size
        self._limit = max_size
        self._size_bound = size_bound
        self._bounded = size_bound is None
        self._next_check = 8

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def write(self, chunk: bytes) -> bool:
        """Append *chunk*; False if the body grows beyond its bound."""
        if self._size + len(chunk) > self._limit:
            return False
        self._size += len(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return True
        self._mem += chunk
        if not self._bounded and self._size >= self._next_check:
            # asked again each time the body doubles (linear cost), until it answers or 16 MiB
            assert self._size_bound is not None
            self._next_check = self._size * 2
            bound = self._size_bound(bytes(self._mem))
            if bound is not None or self._size >= SPOOL_THRESHOLD:
                self._bounded = True
                if bound is not None:
                    self._limit = self.max_size = min(self.max_size, bound)
                    if self._size > self._limit:
                        return False
        if self._spool_dir is not None and len(self._mem) > SPOOL_THRESHOLD:
            self._file = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115 (returned to the caller)
            self._file.write(self._mem)
            self._mem = bytearray()
        return True

    def clear(self) -> None:
        self._size = 0
        self._mem.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def result(self) -> bytes | BinaryIO:
        if self._file is None:
            return bytes(self._mem)
        self._file.flush()
        self._file.seek(0)
        return self._file
