"""A remote's summary on the client side: fetched as libostree's pull fetches it, and cached.

The cache lives in ``REPO/tmp/cache/summaries/REMOTE`` and ``REMOTE.sig``
(``--cache-dir`` moves it, ``OSTREE_SKIP_CACHE`` turns it off, as libostree).
"""

from __future__ import annotations

import os

from pyostree.errors import OstreeError, os_error
from pyostree.remote.gpg import remote_gpg_verify
from pyostree.remote.remotes import get_remote_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pyostree.store.repo import Repo


SUMMARY_CACHE_SUBDIR = "summaries"
MAX_SUMMARY_SIG_SIZE = 10 * 1024 * 1024


def summary_cache_dir(repo: Repo, cache_dir: str | None = None) -> str | None:
    """Where a remote's summary is cached: ``--cache-dir``, else ``REPO/tmp/cache``
    (none when ``OSTREE_SKIP_CACHE`` is set, as libostree)."""
    if cache_dir:
        return cache_dir
    if os.environ.get("OSTREE_SKIP_CACHE") is not None:
        return None
    return os.path.join(repo.path, "tmp", "cache")


def _read_small(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise os_error(e, f"opening {path}") from None


def fetch_remote_summary(read: Callable[[str], bytes | None], cache: str | None, remote: str | None,
                         verify: Callable[[bytes | None, bytes | None], None] | None = None,
                         *, fsync: bool = True) -> tuple[bytes | None, bytes | None]:
    """A remote's ``summary`` and ``summary.sig`` as libostree's pull gets them.

    ``summary.sig`` is fetched first; when it is byte-identical to the cached
    ``CACHE/summaries/REMOTE.sig``, the cached summary is used instead of
    fetching it.  *verify(summary, sig)* (when given) must pass; a cached
    summary that fails it is fetched again once.  A summary fetched (not
    cached) that comes with a signature replaces the cache entry, after it
    passed *verify*.
    """
    from pyostree.store.files import write_file_atomic

    sig = read("summary.sig")
    data: bytes | None = None
    from_cache = False
    base = os.path.join(cache, SUMMARY_CACHE_SUBDIR) if cache and remote else None
    if sig is not None and base is not None:
        assert remote is not None
        if _read_small(os.path.join(base, remote + ".sig")) == sig:
            data = _read_small(os.path.join(base, remote))
            if data is None:
                try:  # a cached signature without its summary
                    os.unlink(os.path.join(base, remote + ".sig"))
                except OSError:
                    pass
            else:
                from_cache = True
    if data is None:
        data = read("summary")
    if verify is not None:
        try:
            verify(data, sig)
        except OstreeError:
            if not from_cache:
                raise
            if "invalid-cache" in os.environ.get("OSTREE_REPO_TEST_ERROR", "").replace(",", ":").split(":"):
                raise OstreeError(f"Remote {remote} cached summary invalid and "
                                  "OSTREE_REPO_TEST_ERROR_INVALID_CACHE specified") from None
            from_cache = False
            data = read("summary")
            verify(data, sig)
    if not from_cache and data is not None and sig is not None and base is not None:
        assert remote is not None
        try:
            os.makedirs(base, 0o775, exist_ok=True)
            write_file_atomic(base, remote, data, fsync=fsync)
            write_file_atomic(base, remote + ".sig", sig, fsync=fsync)
        except OSError as e:
            raise os_error(e, f"caching the summary of {remote} in {base}") from None
    return data, sig


def fetch_summary(repo: Repo, name: str) -> bytes | None:
    """The remote's ``summary`` file (file://, http:// and https:// URLs), or None if it has none."""
    return fetch_summary_and_sig(repo, name)[0]


def fetch_summary_and_sig(repo: Repo, name: str, cache_dir: str | None = None) -> tuple[bytes | None, bytes | None]:
    """``ostree_repo_remote_fetch_summary``: the summary and summary.sig, through the summary cache
    (http(s) only) and verified when the remote has ``gpg-verify-summary=true``."""
    from urllib.parse import unquote, urlparse

    url = get_remote_url(repo, name)
    if url.startswith("metalink="):
        raise OstreeError(f"Remote \"{name}\" uses a metalink, which pyostree does not support")
    u = urlparse(url)
    verify = None

    if remote_gpg_verify(repo, name, "gpg-verify-summary"):
        def verify(data: bytes | None, sig: bytes | None) -> None:
            from pyostree.remote import gpg

            if data is None:
                raise OstreeError("GPG verification enabled, but no summary found "
                                  "(use gpg-verify-summary=false in remote config to disable)")
            if sig is None:
                raise gpg.GpgError("GPG verification enabled, but no summary.sig found "
                                   "(use gpg-verify-summary=false in remote config to disable)")
            gpg.verify_summary(repo, name, data, sig)

    def limit(rel: str) -> int:
        return 50 << 20 if rel == "summary" else MAX_SUMMARY_SIG_SIZE

    if u.scheme == "file":
        base = unquote(u.path)

        def read_file(rel: str) -> bytes | None:
            path = os.path.join(base, rel)
            try:
                with open(path, "rb") as f:
                    data = f.read(limit(rel) + 1)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as e:
                raise os_error(e, f"opening {path}") from None
            if len(data) > limit(rel):
                raise OstreeError(f"{path}: Exceeded maximum size {limit(rel)}")
            return data

        return fetch_remote_summary(read_file, None, name, verify)
    if u.scheme not in ("http", "https"):
        raise OstreeError(f"Unsupported URI scheme in remote \"{name}\": {url}")
    from pyostree.remote.cookies import cookie_header
    from pyostree.remote.fetcher import Fetcher

    cookie = cookie_header(repo, name, url)
    with Fetcher(url, headers={"Cookie": cookie} if cookie else None) as fetcher:
        def read_http(rel: str) -> bytes | None:
            return fetcher.get(rel, max_size=limit(rel), optional=True)

        return fetch_remote_summary(read_http, summary_cache_dir(repo, cache_dir), name, verify,
                                    fsync=not repo.disable_fsync)


def remote_list_refs(repo: Repo, name: str) -> dict[str, str]:
    """``ostree_repo_remote_list_refs``: the refs in the remote's summary (main list)."""
    from pyostree.store import gvariant

    data = fetch_summary(repo, name)
    if data is None:
        raise OstreeError("Remote refs not available; server has no summary file")
    try:
        refs, _md = gvariant.deserialize("(a(s(taya{sv}))a{sv})", data)
    except gvariant.GVariantError as e:
        raise OstreeError(f"Invalid summary of remote \"{name}\": {e}") from None
    out: dict[str, str] = {}
    for ref, (_size, csum, _meta) in refs:
        if len(csum) == 32:
            out[ref] = bytes(csum).hex()
    return out


def prune_summary_cache(repo: Repo) -> None:
    """Remove cached summaries (``tmp/cache/summaries``) of remotes that no longer exist
    (libostree's ``_ostree_repo_prune_tmp``)."""
    from pyostree.remote.remotes import list_remotes

    cache = summary_cache_dir(repo)
    if cache is None:
        return
    base = os.path.join(cache, SUMMARY_CACHE_SUBDIR)
    try:
        names = os.listdir(base)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        raise os_error(e, f"opendir({base})") from None
    remotes = list_remotes(repo)
    for name in names:
        remote = name[:-4] if name.endswith(".sig") else name
        if remote in remotes:
            continue
        try:
            os.unlink(os.path.join(base, name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise os_error(e, f"unlinkat({name})") from None
