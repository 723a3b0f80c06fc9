"""HTTP(S) fetching for ``ostree pull``: one pooled urllib3 client per pull.

Every request has a connect/read timeout, is retried ``network_retries``
times on connection errors and 5xx answers (never on 4xx), and its body is
bounded by a caller-supplied maximum so that a hostile server can't make us
buffer an unbounded answer.  :meth:`Fetcher.fetch_many` runs requests in a
bounded thread pool (urllib3's pool is thread safe) and yields results in
completion order; writing to the repository stays with the caller's thread.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import BinaryIO, TypeVar

import urllib3
from urllib3.exceptions import HTTPError as _U3Error

from pyostree.errors import OstreeError

DEFAULT_TIMEOUT = 30.0
MAX_CONNECTIONS = 8

K = TypeVar("K")


class NotFound(OstreeError):
    """The server answered 404 (or 403/410) for a URL."""


class Fetcher:
    def __init__(self, base_url: str, *, retries: int, timeout: float = DEFAULT_TIMEOUT,
                 max_workers: int = MAX_CONNECTIONS, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.max_workers = max(1, max_workers)
        self.bytes_transferred = 0
        self._http = urllib3.PoolManager(
            num_pools=4, maxsize=self.max_workers, block=True,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False, headers={"User-Agent": "libostree/2022.7 pyostree", **(headers or {})})

    def close(self) -> None:
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
                 spool_dir: str | None = None) -> bytes | BinaryIO | None:
        """The body at BASEURL/*path*; None for a 404 when *optional*, else :class:`NotFound`.

        A body cut short is resumed with a ``Range`` request (a resume that
        makes progress doesn't count against the retries).
        """
        url = self.url_for(path)
        attempt = 0
        buf = _Body(spool_dir)
        while True:
            have = len(buf)
            try:
                if self._get_once(url, max_size, buf):
                    self.bytes_transferred += len(buf)
                    return buf.result()
                if optional:
                    return None
                raise NotFound(f"Server returned HTTP 404: {url}")
            except _Retryable as e:
                if len(buf) > have:
                    continue
                attempt += 1
                if attempt > self.retries:
                    buf.clear()
                    raise OstreeError(f"While fetching {url}: {e}") from None
                time.sleep(min(0.1 * (2 ** (attempt - 1)), 2.0))
            except BaseException:
                buf.clear()
                raise

    def _get_once(self, url: str, max_size: int, buf: _Body) -> bool:
        """Fetch (the rest of) *url* into *buf*; False on 404."""
        headers = dict(self._http.headers)
        if buf:
            headers["Range"] = f"bytes={len(buf)}-"
        try:
            resp = self._http.request("GET", url, headers=headers, preload_content=False, redirect=True,
                                      decode_content=False)
        except _U3Error as e:
            raise _Retryable(str(e)) from None
        try:
            status = resp.status
            if status in (403, 404, 410):
                return False
            if status >= 500:
                raise _Retryable(f"Server returned HTTP {status}")
            if status == 206 and buf:
                cr = resp.headers.get("Content-Range", "")
                if not cr.startswith(f"bytes {len(buf)}-"):
                    raise OstreeError(f"While fetching {url}: unexpected Content-Range {cr!r}")
            elif status == 200:
                buf.clear()
            else:
                raise OstreeError(f"While fetching {url}: Server returned HTTP {status}")
            declared = resp.headers.get("Content-Length")
            expected: int | None = None
            if declared is not None:
                try:
                    expected = len(buf) + int(declared)
                except ValueError:
                    raise OstreeError(f"While fetching {url}: invalid Content-Length {declared!r}") from None
                if expected > max_size:
                    raise OstreeError(f"While fetching {url}: Exceeded maximum size {max_size}")
            try:
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    if len(buf) + len(chunk) > max_size:
                        raise OstreeError(f"While fetching {url}: Exceeded maximum size {max_size}")
                    buf.write(chunk)
            except _U3Error:
                raise _Retryable("Download incomplete") from None
            if expected is not None and len(buf) != expected:
                raise _Retryable("Download incomplete")
            return True
        finally:
            resp.release_conn()

    def fetch_many(self, items: Iterable[K], path_of: Callable[[K], str], *, max_size: int,
                   optional: bool = False, spool_dir: str | None = None
                   ) -> Iterator[tuple[K, bytes | BinaryIO | None]]:
        """Fetch many paths concurrently; yields ``(item, body)`` as they complete.

        The first failure cancels what hasn't started and is raised.
        """
        todo = list(items)
        if not todo:
            return
        if len(todo) == 1 or self.max_workers == 1:
            for it in todo:
                yield it, self.get_body(path_of(it), max_size=max_size, optional=optional, spool_dir=spool_dir)
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
                                      spool_dir=spool_dir)] = item

            fill()
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = pending.pop(fut)
                        yield item, fut.result()
                    fill()
            finally:
                for fut in pending:
                    fut.cancel()


class _Retryable(Exception):
    pass


SPOOL_THRESHOLD = 16 << 20
"""Bodies larger than this go to a temporary file in ``spool_dir`` (when given), not memory."""


class _Body:
    def __init__(self, spool_dir: str | None) -> None:
        self._mem = bytearray()
        self._file: BinaryIO | None = None
        self._size = 0
        self._spool_dir = spool_dir

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return
        self._mem += chunk
        if self._spool_dir is not None and len(self._mem) > SPOOL_THRESHOLD:
            self._file = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115 (returned to the caller)
            self._file.write(self._mem)
            self._mem = bytearray()

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
