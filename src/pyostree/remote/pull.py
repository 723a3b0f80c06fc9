"""``ostree pull``: fetch commits from a remote repository over HTTP(S) (or file://).

The protocol is libostree's "archive over plain HTTP": ``BASEURL/config``
(the remote must be an archive repo), ``BASEURL/summary`` for refs (or
``refs/heads/REF`` when the remote has no summary), and loose objects under
``objects/XX/REST.{commit,commitmeta,dirtree,dirmeta,filez}``.

Every fetched object is untrusted: metadata is checksummed and its structure
validated (dirtree names included) *before* it is staged; ``.filez`` objects
are inflated and re-checksummed before they are stored (as-is in an archive
repo, converted by :meth:`Repo.write_content` otherwise).  Only
``--http-trusted`` into an archive repo skips the content checksum, as in
libostree.  Objects are written into the repo transaction and refs are set at
its commit, so a failed pull leaves no half-written object or ref behind; a
commit fetched but not completed keeps its ``state/CSUM.commitpartial`` marker
and is scanned again (missing objects only) by the next pull.

file:// remotes are delegated to :func:`pull_local.pull_local`.  Static deltas
are not used: objects are always fetched one by one.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import time
import zlib
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

from pyostree.errors import NotFoundError, OstreeError
from pyostree.remote.pull_local import PullStats, check_bindings, import_object
from pyostree.remote.remotes import list_remotes
from pyostree.store import gvariant
from pyostree.store import objects as obj
from pyostree.store import refs as _refs
from pyostree.store.files import check_deflate_end
from pyostree.store.fsck import commit_state, remove_tombstone
from pyostree.store.keyfile import KeyFile
from pyostree.store.objects import ObjectType, Record
from pyostree.store.repo import Repo, RepoMode
from pyostree.store.verify import verify_metadata_bytes

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from pyostree.remote.fetcher import Fetcher, FetchPolicy

DEFAULT_RETRIES = 5  # ostree's default for --network-retries
_MAX_SUMMARY_SIZE = 50 * 1024 * 1024
_MAX_CONTENT_SIZE = 8 * 1024 * 1024 * 1024
_INFLATE_IN_MEMORY = 16 << 20
_SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"


class PullOptions(Record):
    def __init__(self, url: str | None = None, commit_only: bool = False, depth: int = 0,
                 mirror: bool = False, subpaths: list[str] | None = None,
                 localcache_repos: list[str] | None = None, timestamp_check: bool = False,
                 timestamp_check_from_rev: str | None = None, bareuseronly_files: bool = False,
                 dry_run: bool = False, network_retries: int = DEFAULT_RETRIES,
                 http_trusted: bool = False, require_static_deltas: bool = False,
                 disable_static_deltas: bool = False, timeout: float = 30.0,
                 http_headers: dict[str, str] | None = None, gpg_verify: bool | None = None,
                 gpg_verify_summary: bool | None = None, sign_verifiers: list[Any] | None = None,
                 verify_bindings: bool = True, low_speed_limit: int = 1000, low_speed_time: int = 30,
                 retry_all: bool = True) -> None:
        self.url = url
        """Use this URL instead of the remote's configured one."""
        self.commit_only = commit_only
        self.depth = depth
        self.mirror = mirror
        self.subpaths = subpaths
        self.localcache_repos: list[str] = localcache_repos if localcache_repos is not None else []
        self.timestamp_check = timestamp_check
        self.timestamp_check_from_rev = timestamp_check_from_rev
        self.bareuseronly_files = bareuseronly_files
        self.dry_run = dry_run
        self.network_retries = network_retries
        self.http_trusted = http_trusted
        self.require_static_deltas = require_static_deltas
        self.disable_static_deltas = disable_static_deltas
        self.timeout = timeout
        self.http_headers: dict[str, str] = http_headers if http_headers is not None else {}
        self.gpg_verify = gpg_verify
        """Require good GPG signatures on commits; None: the remote's ``gpg-verify`` (default true)."""
        self.gpg_verify_summary = gpg_verify_summary
        self.verify_bindings = verify_bindings
        """Check commits' ref and collection bindings (``--disable-verify-bindings`` turns it off)."""
        self.sign_verifiers = sign_verifiers
        """``sign-verify`` engines (pyostree.sign.SignEngine) commits must carry a good signature of."""
        self.low_speed_limit = low_speed_limit
        """Bytes per second below which a transfer is ended (``--low-speed-limit-bytes``; 0: none)."""
        self.low_speed_time = low_speed_time
        """Seconds the speed may stay below the limit (``--low-speed-time-seconds``)."""
        self.retry_all = retry_all
        """Retry failed requests (``--disable-retry-on-network-errors`` turns it off)."""

    def fetch_policy(self) -> FetchPolicy:
        from pyostree.remote.fetcher import FetchPolicy

        return FetchPolicy(retries=self.network_retries, retry_all=self.retry_all,
                           low_speed_limit=self.low_speed_limit, low_speed_time=self.low_speed_time,
                           timeout=self.timeout)



class HttpPullStats(PullStats):
    metadata_fetched = 0
    content_fetched = 0
    metadata_local = 0
    content_local = 0
    bytes_transferred = 0
    seconds = 0.0
    local_transport = False
    delta_parts = 0
    dry_run_line: str | None = None
    """``--dry-run``: ostree's ``Delta update: ...`` line (printed instead of the status line)."""

    def status_line(self) -> str:
        """The line ``ostree pull`` prints when done (non-tty progress)."""
        from pyostree.store.dump import format_size

        if self.dry_run_line is not None:
            return self.dry_run_line
        if self.local_transport:
            s = f"{self.metadata_fetched} metadata, {self.content_fetched} content objects imported"
        else:
            if self.delta_parts > 0:
                s = f"{self.delta_parts} delta parts, {self.metadata_fetched + self.content_fetched} loose fetched"
            else:
                s = f"{self.metadata_fetched} metadata, {self.content_fetched} content objects fetched"
            if self.metadata_local or self.content_local:
                s += f" ({self.metadata_local} meta, {self.content_local} content local)"
        if self.bytes_transferred > 0:
            if self.bytes_transferred < 1024:
                s += f"; {self.bytes_transferred} B"
            else:
                s += f"; {self.bytes_transferred // 1024} KiB"
            s += f" transferred in {int(self.seconds)} seconds"
        s += f"; {format_size(self.content_bytes_written)} content written"
        return s


def _split_override(name: str) -> tuple[str, str | None]:
    if "@" in name:
        ref, _, csum = name.partition("@")
        obj.validate_checksum(csum)
        return ref, csum
    return name, None


def parse_summary_refs(data: bytes, where: str) -> tuple[dict[str, str], dict[str, gvariant.Variant]]:
    """Refs (name -> commit) and additional metadata of a summary file."""
    try:
        refs, md = gvariant.deserialize(_SUMMARY_TYPE, data)
        if gvariant.serialize(_SUMMARY_TYPE, (refs, md)) != data:
            raise gvariant.GVariantError("not in normal form")
    except gvariant.GVariantError as e:
        raise OstreeError(f"Invalid summary from {where}: {e}") from None
    out: dict[str, str] = {}
    for ref, (_size, csum, _meta) in refs:
        if len(csum) != 32:
            raise OstreeError(f"Invalid summary from {where}: ref {ref} has a bad checksum")
        out[ref] = bytes(csum).hex()
    return out, dict(md)


def pull(repo: Repo, remote_name_or_url: str, refs: list[str] | None = None,
         options: PullOptions | None = None) -> HttpPullStats:
    """Pull *refs* (``REF``, ``REF@CHECKSUM`` or a checksum) from a remote or URL.

    With no refs: every ref of the remote's summary in mirror mode, else the
    remote's ``branches`` option.  Refs are written as ``REMOTE:REF`` (plain
    ``REF`` with ``mirror``); a bare checksum writes no ref.
    """
    opts = options or PullOptions()
    remotes = list_remotes(repo)
    remote = remotes.get(remote_name_or_url)
    remote_name: str | None = remote.name if remote is not None else None
    if remote is None and "://" not in remote_name_or_url:
        raise NotFoundError(f'Remote "{remote_name_or_url}" not found')
    url = opts.url or (remote.options.get("url") if remote is not None else remote_name_or_url)
    if url is None:
        if remote is not None and remote.options.get("metalink"):
            raise OstreeError(f'Remote "{remote_name_or_url}" uses a metalink, which pyostree does not support')
        raise OstreeError(f'No "url" option in remote "{remote_name_or_url}"')
    contenturl = remote.options.get("contenturl") if remote is not None and not opts.url else None
    for u in (url, contenturl):
        if u is not None and u.startswith("mirrorlist="):
            raise OstreeError(f'Remote "{remote_name_or_url}" uses a mirrorlist, which pyostree does not support')
    names = list(refs or [])
    if not names and not opts.mirror:
        configured = remote.options.get("branches") if remote is not None else None
        names = [b.strip() for b in (configured or "").split(";") if b.strip()]
        if not names:
            raise OstreeError(f"No configured branches for remote {remote_name_or_url}")
    if opts.dry_run and not opts.require_static_deltas:
        raise OstreeError("--dry-run requires --require-static-deltas")
    if opts.require_static_deltas and opts.disable_static_deltas:
        raise OstreeError("Can't use --require-static-deltas with --disable-static-deltas")
    if opts.require_static_deltas and repo.mode is RepoMode.ARCHIVE:
        raise OstreeError("Can't use static deltas in an archive repo")
    if remote_name is not None:
        from pyostree.remote.gpg import remote_gpg_verify

        if opts.gpg_verify is None:
            opts.gpg_verify = remote_gpg_verify(repo, remote_name, "gpg-verify")
        if opts.gpg_verify_summary is None:
            opts.gpg_verify_summary = remote_gpg_verify(repo, remote_name, "gpg-verify-summary")
        if opts.sign_verifiers is None:
            from pyostree.remote.sign import remote_verifiers

            opts.sign_verifiers = remote_verifiers(repo, remote_name, "sign-verify")
    elif opts.gpg_verify or opts.gpg_verify_summary:
        raise OstreeError("Must specify remote name to enable gpg verification")
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "file":
        try:
            src = Repo.open(unquote(parsed.path))
        except OstreeError as e:
            raise OstreeError(f"{e}") from None
        return _run(repo, None, src, opts, remote_name, names)
    if scheme not in ("http", "https"):
        raise OstreeError(f"Invalid URI scheme in {url}")
    if parsed.hostname is None:
        raise OstreeError(f"Invalid URL {url}")
    if contenturl is not None and urlparse(contenturl).scheme not in ("http", "https"):
        raise OstreeError(f"Invalid URI scheme in {contenturl}")
    from pyostree.remote.cookies import cookie_header
    from pyostree.remote.fetcher import (
        Fetcher,  # urllib3 and its http/ssl stack: only for real HTTP
    )

    def headers_for(base: str) -> dict[str, str]:
        # the remote's cookie jar (REPO/NAME.cookies.txt), as libcurl sends it for that URL
        cookie = cookie_header(repo, remote_name, base)
        return {**opts.http_headers, "Cookie": cookie} if cookie else opts.http_headers

    content_fetcher = None
    if contenturl is not None and contenturl.rstrip("/") != url.rstrip("/"):
        content_fetcher = Fetcher(contenturl, policy=opts.fetch_policy(), headers=headers_for(contenturl))
    return _run(repo, Fetcher(url, policy=opts.fetch_policy(), headers=headers_for(url)),
                None, opts, remote_name, names, content_fetcher)


def _run(repo: Repo, fetcher: Fetcher | None, src: Repo | None, opts: PullOptions, remote_name: str | None,
         names: list[str], content_fetcher: Fetcher | None = None) -> HttpPullStats:
    caches: list[Repo] = []
    try:
        for p in opts.localcache_repos:
            caches.append(Repo.open(p))
        puller = _HttpPuller(repo, fetcher, src, opts, caches)
        puller.content_fetcher = content_fetcher
        return puller.run(remote_name, names)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OstreeError("No space left on device", errno=e.errno) from None
        raise
    finally:
        for c in caches:
            c.close()
        if fetcher is not None:
            fetcher.close()
        if content_fetcher is not None:
            content_fetcher.close()
        if src is not None:
            src.close()


def _fmt_c(ts: int) -> str:
    """``g_date_time_format(dt, "%c")`` in the C locale, UTC."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(ts))


def _compare_timestamps(current_rev: str, current_ts: int, new_rev: str, new_ts: int) -> None:
    """``_ostree_compare_timestamps``: refuse a downgrade (an older, different commit)."""
    if new_ts >= current_ts or current_rev == new_rev:
        return
    raise OstreeError(
        f"Upgrade target revision '{new_rev}' with timestamp '{_fmt_c(new_ts)}' "
        f"is chronologically older than current revision '{current_rev}' with timestamp "
        f"'{_fmt_c(current_ts)}'; use --allow-downgrade to permit")


def _filez_bound(head: bytes) -> int | None:
    """The most bytes a ``.filez`` can take, from its header: the deflate bound of its size.

    None while *head* is too short; a header that can't be valid bounds the
    body to what came already (it is refused when it is verified).
    """
    if len(head) < 8:
        return None
    n: int = struct.unpack(">I", head[:4])[0]
    if n > obj.MAX_METADATA_SIZE:
        return len(head)
    if 8 + n > len(head):
        return None
    try:
        info = obj.parse_zlib_file_header(head[8:8 + n], "header")
    except OstreeError:
        return len(head)
    size = int(info.size)
    return 8 + n + size + (size >> 12) + (size >> 14) + (size >> 25) + 64


class _Target(Record):
    def __init__(self, ref: str | None, commit: str) -> None:
        self.ref = ref
        self.commit = commit



class _HttpPuller:
    def __init__(self, dest: Repo, fetcher: Fetcher | None, src: Repo | None, opts: PullOptions,
                 caches: list[Repo]) -> None:
        self.dest = dest
        self._fetcher = fetcher
        self.src = src
        self.content_fetcher: Fetcher | None = None
        self.opts = opts
        self.caches = caches
        self.stats = HttpPullStats()
        self.tombstones = False
        self.summary_refs: dict[str, str] | None = None
        self.scanned_commits: set[str] = set()
        self.completed_commits: list[str] = []
        self.seen_meta: set[tuple[str, ObjectType]] = set()
        self.content_wanted: set[str] = set()
        self.pending_meta: dict[tuple[str, ObjectType], None] = {}
        self.pending_trees: dict[str, list[list[str]] | None] = {}
        self.remote_name: str | None = None
        self.summary_deltas: dict[str, bytes | None] = {}
        """Deltas the summary offers (name -> superblock sha256)."""
        self.indexed_deltas = False
        from pyostree.remote.pull_deltas import DeltaTotals

        self.delta_totals = DeltaTotals()
        self.subpath_parts: list[list[str]] | None = None
        if opts.subpaths:
            parts: list[list[str]] = []
            for sp in opts.subpaths:
                comps = [c for c in sp.split("/") if c]
                if not comps:
                    parts = []
                    break
                parts.append(comps)
            self.subpath_parts = parts or None

    @property
    def fetcher(self) -> Fetcher:
        assert self._fetcher is not None
        return self._fetcher

    def url_for(self, rel: str) -> str:
        if self.src is None:
            return self.fetcher.url_for(rel)
        return f"file://{self.src.path}/{rel}"

    def read_rel(self, rel: str, max_size: int, *, optional: bool) -> bytes | None:
        """The file *rel* of the remote (HTTP, or the file:// source repo), at most *max_size* bytes."""
        if self.src is None:
            return self.fetcher.get(rel, max_size=max_size, optional=optional)
        try:
            fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self.src.dfd)
        except FileNotFoundError:
            if optional:
                return None
            raise OstreeError(f"Couldn't find file {self.url_for(rel)}") from None
        except OSError as e:
            raise OstreeError(f"Opening {self.url_for(rel)}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise OstreeError(f"While fetching {self.url_for(rel)}: Exceeded maximum size {max_size}")
        return data

    def _deltas_enabled(self) -> bool:
        o = self.opts
        if o.disable_static_deltas or o.commit_only or self.dest.mode is RepoMode.ARCHIVE:
            return False
        return self.src is None or o.require_static_deltas

    def _get_meta(self, keys: list[tuple[str, ObjectType]], optional: bool = False
                  ) -> Iterator[tuple[tuple[str, ObjectType], bytes | None]]:
        """Metadata objects from the remote (HTTP, concurrently) or the local source repo."""
        if self.src is None:
            for key, body in self.fetcher.fetch_many(keys, lambda k: obj.object_relpath(k[0], k[1]),
                                                     max_size=obj.MAX_METADATA_SIZE, optional=optional):
                assert body is None or isinstance(body, bytes)  # no spool_dir: always in memory
                yield key, body
            return
        for key in keys:
            try:
                data: bytes | None = self.src.load_metadata(key[1], key[0])
            except NotFoundError:
                if not optional:
                    raise
                data = None
            yield key, data

    # -- remote setup ----------------------------------------------------------

    def _load_remote_info(self, need_summary: bool) -> None:
        """Summary refs (when some ref needs resolving), deltas on offer, and the remote's mode."""
        deltas = self._deltas_enabled()
        if self.src is not None and not deltas:
            return  # refs come from the source repo itself
        kf: KeyFile | None = None
        have_config = False
        if not need_summary and deltas:
            kf = self._remote_config()
            have_config = True
            self.indexed_deltas = kf is not None and kf.get_bool("core", "indexed-deltas", False)
            if not self.indexed_deltas:
                need_summary = True
        data = None
        if need_summary:
            data = self.read_rel("summary", _MAX_SUMMARY_SIZE, optional=True)
        mode: str | None = None
        if data is not None:
            self.summary_refs, md = parse_summary_refs(data, self.url_for("summary"))
            if deltas:
                from pyostree.remote.pull_deltas import summary_deltas

                self.summary_deltas = summary_deltas(md)
                ix = md.get("ostree.summary.indexed-deltas")
                if ix is not None and ix.value is True:
                    self.indexed_deltas = True
            m = md.get("ostree.summary.mode")
            t = md.get("ostree.summary.tombstone-commits")
            if m is not None and t is not None and isinstance(m.value, str):
                mode = m.value
                self.tombstones = bool(t.value)
        if self.opts.require_static_deltas and not self.indexed_deltas and not self.summary_deltas:
            raise OstreeError("Fetch configured to require static deltas, but no summary deltas or delta index found")
        if self.src is not None:
            return
        if mode is None:
            # (libostree assumes an archive remote here; we look at its config when it has one)
            if not have_config:
                kf = self._remote_config()
            if kf is None:
                return
            mode = kf.get("core", "mode", "bare") or "bare"
            self.tombstones = kf.get_bool("core", "tombstone-commits", False)
        if mode == "archive-z2":
            mode = "archive"
        if mode != "archive":
            raise OstreeError(f'Can\'t pull from archives with mode "{mode}"')

    def _remote_config(self) -> KeyFile | None:
        cfg = self.read_rel("config", 1 << 20, optional=True)
        if cfg is None:
            return None
        try:
            return KeyFile.parse(cfg.decode("utf-8"), self.url_for("config"))
        except (UnicodeDecodeError, OstreeError) as e:
            raise OstreeError(f"Invalid remote config {self.url_for('config')}: {e}") from None

    def _gpg_verify_summary(self) -> None:
        from pyostree.remote import gpg

        if self.src is not None:
            data = sig = None
            try:
                with open(os.path.join(self.src.path, "summary"), "rb") as f:
                    data = f.read()
                with open(os.path.join(self.src.path, "summary.sig"), "rb") as f:
                    sig = f.read()
            except FileNotFoundError:
                pass
        else:
            data = self.fetcher.get("summary", max_size=_MAX_SUMMARY_SIZE, optional=True)
            sig = self.fetcher.get("summary.sig", max_size=_MAX_SUMMARY_SIZE, optional=True)
        gpg.verify_summary(self.dest, self.remote_name, data, sig)

    def _resolve(self, names: list[str]) -> list[_Target]:
        if not names and self.src is not None:
            return [_Target(r, c) for r, c in sorted(_refs.list_refs(self.src, remotes=False).items())]
        if not names:
            if self.summary_refs is None:
                raise OstreeError("Fetching all refs was requested in mirror mode, but remote repository "
                                  "does not have a summary")
            return [_Target(r, c) for r, c in sorted(self.summary_refs.items())]
        out: list[_Target] = []
        for name in names:
            if obj.is_valid_checksum(name):
                out.append(_Target(None, name))
                continue
            ref, override = _split_override(name)
            _refs.validate_rev(ref)
            if override is not None:
                out.append(_Target(ref, override))
                continue
            if self.src is not None:
                resolved = _refs.resolve_rev(self.src, ref, False)
                assert resolved is not None
                out.append(_Target(ref, resolved))
                continue
            if self.summary_refs is not None:
                csum = self.summary_refs.get(ref)
                if csum is None:
                    raise OstreeError(f"No such branch '{ref}' in repository summary")
                out.append(_Target(ref, csum))
                continue
            path = f"refs/heads/{ref}"
            from pyostree.remote.fetcher import NotFound

            try:
                data = self.fetcher.get(path, max_size=1024)
            except NotFound as e:
                raise OstreeError(f"Fetching checksum for ref ((empty), {ref}): {e}") from None
            assert data is not None
            text = data.decode("utf-8", "replace").strip()
            if not obj.is_valid_checksum(text):
                raise OstreeError(f"Fetching checksum for ref ((empty), {ref}): Invalid checksum "
                                  f"in {self.fetcher.url_for(path)}")
            out.append(_Target(ref, text))
        return out

    # -- driving ---------------------------------------------------------------

    def run(self, remote_name: str | None, names: list[str]) -> HttpPullStats:
        t0 = time.monotonic()
        self.remote_name = remote_name
        self._load_remote_info(not names or any(not obj.is_valid_checksum(n) and "@" not in n for n in names))
        if self.opts.gpg_verify_summary:
            self._gpg_verify_summary()
        targets = self._resolve(names)
        dest = self.dest
        before = dest.stats["content_bytes_written"]
        if self.opts.dry_run:
            from pyostree.remote import pull_deltas

            for t in targets:
                pull_deltas.initiate(self, t)
            self.stats.dry_run_line = self.delta_totals.line()
            return self.stats
        with dest.transaction():
            if self._deltas_enabled():
                from pyostree.remote import pull_deltas

                b0 = dest.stats["content_bytes_written"]
                for t in targets:
                    pull_deltas.initiate(self, t)
                before += dest.stats["content_bytes_written"] - b0  # ostree doesn't count what deltas write
            self._pull_commits([(t.commit, self.opts.depth, False, t.ref) for t in targets])
            self._walk_trees()
            self._fetch_content()
            for t in targets:
                if t.ref is not None:
                    _refs.set_ref(dest, None if self.opts.mirror else remote_name, t.ref, t.commit)
                    self.stats.commits[t.ref] = t.commit
                else:
                    self.stats.commits[t.commit] = t.commit
        if self.subpath_parts is None:
            for done in self.completed_commits:
                dest.mark_commit_partial(done, False)
        if self.opts.mirror and not names and self.summary_refs is not None:
            pass  # libostree also copies the summary; ours is regenerated by `summary -u`
        self.stats.content_bytes_written = dest.stats["content_bytes_written"] - before
        self.stats.bytes_transferred = sum(f.bytes_transferred for f in (self._fetcher, self.content_fetcher) if f)
        self.stats.local_transport = self.src is not None and not self._deltas_enabled()
        self.stats.seconds = time.monotonic() - t0
        return self.stats

    # -- commits ---------------------------------------------------------------

    def _from_cache(self, objtype: ObjectType, checksum: str) -> bool:
        for c in self.caches:
            if c.has_object(objtype, checksum):
                import_object(self.dest, c, objtype, checksum, trusted=False,
                              verify_bareuseronly=self.opts.bareuseronly_files)
                if objtype.is_meta:
                    self.stats.metadata_local += 1
                else:
                    self.stats.content_local += 1
                return True
        return False

    def _check_timestamp_from_rev(self, commit: obj.Commit, checksum: str) -> None:
        rev = self.opts.timestamp_check_from_rev
        assert rev is not None
        try:
            old = self.dest.load_commit(rev)
        except OstreeError as e:
            raise OstreeError(f"Reading {rev} for timestamp-check-from-rev: {e}") from None
        _compare_timestamps(rev, old.timestamp, checksum, commit.timestamp)

    def _check_timestamp(self, ref: str, remote_name_ref: str | None, commit: obj.Commit, checksum: str) -> None:
        orig = _refs.read_ref(self.dest, remote_name_ref, ref)
        if orig is None or orig == checksum:
            return
        try:
            old = self.dest.load_commit(orig)
        except OstreeError as e:
            raise OstreeError(f"Reading {ref} for timestamp-check: {e}") from None
        _compare_timestamps(orig, old.timestamp, checksum, commit.timestamp)

    def _pull_commits(self, level: list[tuple[str, int, bool, str | None]]) -> None:
        dest = self.dest
        while level:
            todo: list[tuple[str, int, bool, str | None]] = []
            fetch: dict[str, tuple[int, bool, str | None]] = {}
            from_cache: set[str] = set()
            for csum, depth, is_parent, ref in level:
                if csum in self.scanned_commits:
                    continue
                self.scanned_commits.add(csum)
                if dest.has_object(ObjectType.COMMIT, csum):
                    todo.append((csum, depth, is_parent, ref))
                elif any(c.has_object(ObjectType.COMMIT, csum) for c in self.caches):
                    # partial until its tree is complete: the cache may not have all of it
                    if not commit_state(dest, csum)[0]:
                        dest.mark_commit_partial(csum, True)
                    self._from_cache(ObjectType.COMMIT, csum)
                    remove_tombstone(dest, csum)
                    from_cache.add(csum)
                    todo.append((csum, depth, is_parent, ref))
                else:
                    fetch[csum] = (depth, is_parent, ref)
            # detached metadata (signatures) of fetched commits, and again of requested
            # commits already here (they may have been signed since), as libostree
            # (not those the local cache gave: libostree doesn't ask the remote for their detached metadata)
            present = [c for c, _d, is_parent, _r in todo if not is_parent and c not in from_cache]
            detached: dict[str, bytes] = {}
            if fetch or present:
                for (csum, _t), md in self._get_meta([(c, ObjectType.COMMIT_META) for c in [*fetch, *present]],
                                                     optional=True):
                    if self.src is None:
                        self.stats.metadata_fetched += 1  # libostree counts the request, found or 404
                    if md is not None:
                        detached[csum] = md
            if (self.opts.gpg_verify or self.opts.sign_verifiers):
                for csum in present:
                    self._gpg_verify_commit(csum, dest.load_metadata(ObjectType.COMMIT, csum), detached.get(csum))
            if fetch:
                for (csum, _t), data in self._get_meta([(c, ObjectType.COMMIT) for c in fetch], optional=True):
                    depth, is_parent, ref = fetch[csum]
                    if data is None:
                        if is_parent and self.opts.depth != 0:
                            continue  # a dangling parent: fine when walking history
                        if self.src is not None:
                            raise NotFoundError(f"No such metadata object {csum}.commit")
                        raise OstreeError("Server returned HTTP 404: "
                                          + self.fetcher.url_for(obj.object_relpath(csum, ObjectType.COMMIT)))
                    if (self.opts.gpg_verify or self.opts.sign_verifiers):
                        self._gpg_verify_commit(csum, data, detached.get(csum))
                    self._store_commit(csum, data, ref)
                    todo.append((csum, depth, is_parent, ref))
            for csum, md in detached.items():
                if not dest.has_object(ObjectType.COMMIT, csum):
                    continue
                try:
                    value = gvariant.deserialize(obj.METADATA_TYPE, md)
                except gvariant.GVariantError:
                    # libostree reads it untrusted: malformed framing yields an empty dict
                    value = []
                dest.write_detached_metadata(csum, value)
            nxt: list[tuple[str, int, bool, str | None]] = []
            for csum, depth, is_parent, ref in todo:
                commit = dest.load_commit(csum)
                if self.opts.verify_bindings:
                    check_bindings(self._remote_collection_id(), None if is_parent else ref, commit, csum)
                if self.opts.timestamp_check and ref is not None and not is_parent:
                    self._check_timestamp(ref, None if self.opts.mirror else self.remote_name, commit, csum)
                if self.opts.timestamp_check_from_rev:
                    self._check_timestamp_from_rev(commit, csum)
                if commit.parent and (self.opts.depth == -1 or depth > 0):
                    nxt.append((commit.parent, depth - 1 if depth > 0 else -1, True, None))
                partial, _ = commit_state(dest, csum)
                if partial and not self.opts.commit_only:
                    self._want_meta(ObjectType.DIR_META, commit.root_meta)
                    self._want_tree(commit.root_contents, self.subpath_parts)
                    self.completed_commits.append(csum)
            level = nxt

    def _remote_collection_id(self) -> str | None:
        """The collection the commits must be bound to: a local source's own collection ID,
        else the remote's ``collection-id`` option (libostree's get_remote_repo_collection_id)."""
        if self.src is not None:
            return self.src.collection_id or None
        if self.remote_name is None:
            return None
        from pyostree.remote.remotes import get_remote_option

        return get_remote_option(self.dest, self.remote_name, "collection-id") or None

    def _gpg_verify_commit(self, csum: str, data: bytes, detached: bytes | None) -> None:
        """Check the signatures of a fetched commit before it is stored (``gpg_verify_unwritten_commit``)."""
        from pyostree.remote import gpg

        verify_metadata_bytes(ObjectType.COMMIT, csum, data)
        sigs = None
        if detached is not None:
            try:
                md = list(gvariant.deserialize(obj.METADATA_TYPE, detached))
            except gvariant.GVariantError:
                md = []  # malformed: no signatures (libostree reads it as a non-normal, empty a{sv})
            sigs = gpg.metadata_signatures(md)
        if self.opts.sign_verifiers:
            from pyostree.remote.sign import verify_for_remote

            if detached is None:
                raise OstreeError("Can't verify commit without detached metadata")
            verify_for_remote(self.opts.sign_verifiers, data, md)
        if not self.opts.gpg_verify:
            return
        if not sigs:
            raise gpg.GpgError("GPG verification enabled, but no signatures found "
                               "(use gpg-verify=false in remote config to disable)")
        gpg.verify_data(data, sigs, gpg.collect_keyrings(self.dest, self.remote_name)).require_valid()

    def _store_commit(self, csum: str, data: bytes, ref: str | None) -> None:
        verify_metadata_bytes(ObjectType.COMMIT, csum, data)
        dest = self.dest
        if not commit_state(dest, csum)[0]:
            dest.mark_commit_partial(csum, True)
        dest.write_metadata(ObjectType.COMMIT, data, expected=csum)
        remove_tombstone(dest, csum)
        self.stats.metadata_fetched += 1

    # -- trees -----------------------------------------------------------------

    def _want_meta(self, objtype: ObjectType, csum: str) -> None:
        self.pending_meta.setdefault((csum, objtype), None)

    def _want_tree(self, csum: str, subpaths: list[list[str]] | None) -> None:
        if csum not in self.pending_trees:
            self.pending_trees[csum] = subpaths
            return
        prev = self.pending_trees[csum]
        if prev is not None:
            self.pending_trees[csum] = None if subpaths is None else prev + subpaths

    def _walk_trees(self) -> None:
        dest = self.dest
        while self.pending_meta or self.pending_trees:
            metas = [k for k in self.pending_meta if k not in self.seen_meta]
            trees = dict(self.pending_trees)
            self.pending_meta = {}
            self.pending_trees = {}
            wanted: list[tuple[str, ObjectType]] = list(metas)
            for t in trees:
                wanted.append((t, ObjectType.DIR_TREE))
            missing: list[tuple[str, ObjectType]] = []
            for key in dict.fromkeys(wanted):
                csum, objtype = key
                if key in self.seen_meta:
                    continue
                self.seen_meta.add(key)
                if dest.has_object(objtype, csum) or self._from_cache(objtype, csum):
                    continue
                missing.append(key)
            for (csum, objtype), data in self._get_meta(missing):
                assert data is not None
                verify_metadata_bytes(objtype, csum, data)
                dest.write_metadata(objtype, data, expected=csum)
                self.stats.metadata_fetched += 1
            for tcsum, subpaths in trees.items():
                self._expand_tree(tcsum, subpaths)

    def _expand_tree(self, csum: str, subpaths: list[list[str]] | None) -> None:
        try:
            tree = self.dest.load_dirtree(csum)
        except OstreeError as e:
            raise OstreeError(f"Validating dirtree {csum}: {e}") from None
        for name, fc in tree.files:
            if subpaths is not None and not any(len(p) == 1 and p[0] == name for p in subpaths):
                continue
            self.content_wanted.add(fc)
        for name, tc, mc in tree.dirs:
            if subpaths is None:
                self._want_tree(tc, None)
                self._want_meta(ObjectType.DIR_META, mc)
                continue
            sub = [p[1:] for p in subpaths if p[0] == name]
            if not sub:
                continue
            self._want_meta(ObjectType.DIR_META, mc)
            self._want_tree(tc, None if any(not p for p in sub) else sub)

    # -- content ---------------------------------------------------------------

    def _fetch_content(self) -> None:
        dest = self.dest
        missing = []
        for csum in sorted(self.content_wanted):
            if dest.has_object(ObjectType.FILE, csum):
                continue
            if self._from_cache(ObjectType.FILE, csum):
                continue
            missing.append(csum)
        if self.src is not None:
            for csum in missing:
                import_object(dest, self.src, ObjectType.FILE, csum, trusted=False,
                              verify_bareuseronly=self.opts.bareuseronly_files)
                self.stats.content_fetched += 1
            return
        for csum, data in (self.content_fetcher or self.fetcher).fetch_many(
                missing, lambda c: obj.object_relpath(c, ObjectType.FILE, archive=True),
                max_size=_MAX_CONTENT_SIZE, spool_dir=f"/proc/self/fd/{dest.dfd}/tmp", size_bound=_filez_bound):
            assert data is not None
            if isinstance(data, bytes):
                self._store_filez(csum, data)
            else:
                with data:
                    self._store_filez_file(csum, data)
            self.stats.content_fetched += 1

    def _store_filez_file(self, csum: str, f: BinaryIO) -> None:
        """:meth:`_store_filez` for a large object spooled to a temporary file."""
        what = f"{csum}.filez"
        head = f.read(8)
        if len(head) < 8:
            raise OstreeError(f"Corrupted {what}: file header too short")
        fsize = f.seek(0, os.SEEK_END)
        n = obj.lenprefixed_header_length(head, what, fsize) - 8
        f.seek(8)
        variant = f.read(n)
        if len(variant) != n:
            raise OstreeError(f"Corrupted {what}: file header too short")
        info = obj.parse_zlib_file_header(variant, what)
        if self.opts.bareuseronly_files:
            obj.validate_bareuseronly_mode(info.mode, csum)
        dest = self.dest
        trusted_raw = dest.mode is RepoMode.ARCHIVE and self.opts.http_trusted
        if not info.is_regular:
            f.seek(0)
            self._store_filez(csum, f.read(8 + n + 1))  # the byte past the header is trailing data
            return
        import tempfile

        with tempfile.TemporaryFile(dir=f"/proc/self/fd/{dest.dfd}/tmp") as out:
            if not trusted_raw:
                h = obj.sha256(obj.file_header(info))
                d = zlib.decompressobj(-15)
                total = 0
                try:
                    while chunk := f.read(1 << 20):
                        piece = d.decompress(chunk, 1 << 20)
                        while piece:
                            total += len(piece)
                            if total > info.size:
                                raise OstreeError(f"Corrupted file object {csum}: content is not {info.size} bytes")
                            h.update(piece)
                            if dest.mode is not RepoMode.ARCHIVE:
                                out.write(piece)
                            piece = d.decompress(d.unconsumed_tail, 1 << 20) if d.unconsumed_tail else b""
                        check_deflate_end(d, what, False)
                    piece = d.flush()
                except zlib.error as e:
                    raise OstreeError(f"Corrupted file object {csum}: {e}") from None
                check_deflate_end(d, what, True, fsize > 8 + n)
                total += len(piece)
                h.update(piece)
                if dest.mode is not RepoMode.ARCHIVE:
                    out.write(piece)
                if total != info.size:
                    raise OstreeError(f"Corrupted file object {csum}: content is not {info.size} bytes")
                actual = h.hexdigest()
                if actual != csum:
                    raise OstreeError(f"Corrupted file object; checksum expected='{csum}' actual='{actual}'")
            if dest.mode is RepoMode.ARCHIVE:
                f.seek(0)
                self._stage_raw_file(csum, f, info)
            else:
                out.flush()
                dest.write_content(info, src_fd=out.fileno(), expected=csum)

    def _store_filez(self, csum: str, data: bytes) -> None:
        what = f"{csum}.filez"
        hlen, variant = obj.parse_lenprefixed_header(data, what)
        info = obj.parse_zlib_file_header(variant, what)
        if info.is_regular and info.size > _INFLATE_IN_MEMORY:
            self._store_filez_file(csum, io.BytesIO(data))  # bounded inflation
            return
        if self.opts.bareuseronly_files:
            obj.validate_bareuseronly_mode(info.mode, csum)
        dest = self.dest
        if dest.mode is RepoMode.ARCHIVE and self.opts.http_trusted:
            self._stage_raw(csum, data, info)
            return
        content = b""
        if info.is_regular:
            d = zlib.decompressobj(-15)
            try:
                content = d.decompress(data[hlen:], info.size + 1)
                if len(content) <= info.size:
                    content += d.flush()
            except zlib.error as e:
                raise OstreeError(f"Corrupted file object {csum}: {e}") from None
            if len(content) != info.size or d.unconsumed_tail:
                raise OstreeError(f"Corrupted file object {csum}: content is not {info.size} bytes")
            check_deflate_end(d, what, True, len(data) > hlen)
        elif len(data) > hlen:
            raise OstreeError(f"Corrupted {what}: trailing data after the file header")
        actual = obj.sha256(obj.file_header(info) + content).hexdigest()
        if actual != csum:
            raise OstreeError(f"Corrupted file object; checksum expected='{csum}' actual='{actual}'")
        if dest.mode is RepoMode.ARCHIVE:
            self._stage_raw(csum, data, info)
        else:
            dest.write_content(info, content, expected=csum)

    def _stage_raw_file(self, csum: str, f: BinaryIO, info: obj.FileInfo) -> None:
        dest = self.dest
        key = csum + ObjectType.FILE.value
        if key in dest._staged or dest.has_object_local(ObjectType.FILE, csum):
            return
        sdfd = dest._stage_prefix_dfd(csum)
        tmp = f"tmp.pull.{os.getpid()}.{csum[2:12]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=sdfd)
        try:
            import shutil

            with os.fdopen(os.dup(fd), "wb") as w:
                shutil.copyfileobj(f, w, 1 << 20)
            if dest.per_object_fsync and not dest.disable_fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        dest._finish_staged(tmp, csum, ObjectType.FILE)
        dest.stats["content_written"] += 1
        dest.stats["content_bytes_written"] += info.size if info.is_regular else 0

    def _stage_raw(self, csum: str, data: bytes, info: obj.FileInfo) -> None:
        """Store a verified ``.filez`` into an archive repo byte for byte."""
        self._stage_raw_file(csum, io.BytesIO(data), info)
