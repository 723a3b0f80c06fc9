"""Remote configuration, stored as ostree does in the repo config: ``[remote "NAME"]``.

Remotes may also come from ``*.conf`` files in a remotes directory (the
repository's ``core.remotes-config-dir``, or ``etc/ostree/remotes.d`` of the sysroot for the
system repository or one opened through a deployment); those are read, written by
``remote add`` unless ``core.add-remotes-config-dir`` is false, and deleted with the remote.
"""

from __future__ import annotations

import os

from pyostree.errors import NotFoundError, OstreeError, os_error
from pyostree.store.keyfile import KeyFile
from pyostree.store.objects import Record
from pyostree.store.reflist import enumerate_refs
from pyostree.store.refs import validate_collection_id, validate_remote_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo

RemoteValue = str | bool | list[str]


def group_name(name: str) -> str:
    return f'remote "{name}"'


def _name_of_group(group: str) -> str | None:
    if group.startswith('remote "') and group.endswith('"') and len(group) > len('remote ""'):
        return group[len('remote "'):-1]
    return None


class Remote(Record):
    def __init__(self, name: str, options: dict[str, str], file: str | None = None) -> None:
        self.name = name
        self.options = options
        self.file = file
        """The ``remotes.d`` file the remote comes from, or None for the repo config."""

    @property
    def keyring(self) -> str:
        return f"{self.name}.trustedkeys.gpg"


SYSCONF_REMOTES = "etc/ostree/remotes.d"


def remotes_config_dir(repo: Repo) -> str | None:
    """Where remote ``*.conf`` files live for *repo* (libostree's ``get_remotes_d_dir``).

    ``core.remotes-config-dir`` (below the sysroot when there is one), else ``etc/ostree/remotes.d``
    of the sysroot: ``/`` for the system repository, the deployment for a repository opened
    through a non-physical sysroot; None for any other repository (remotes live in its config).
    """
    sysroot = repo.sysroot_dir
    if sysroot is None and os.path.realpath(repo.path) in ("/ostree/repo", "/sysroot/ostree/repo"):
        sysroot = "/"
    d = repo.config.get("core", "remotes-config-dir")
    if d:
        return d if sysroot is None else os.path.join(sysroot, d.lstrip("/"))
    return None if sysroot is None else os.path.join(sysroot, SYSCONF_REMOTES)


def _remotes_dirs(repo: Repo) -> list[str]:
    d = remotes_config_dir(repo)
    return [d] if d is not None else []


def list_remotes(repo: Repo) -> dict[str, Remote]:
    """Every configured remote by name (sorted), with its options."""
    found: dict[str, Remote] = {}
    for g in repo.config.groups():
        n = _name_of_group(g)
        if n is not None:
            found[n] = Remote(n, dict(repo.config.items(g)))
    for d in _remotes_dirs(repo):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for fn in names:
            if not fn.endswith(".conf"):
                continue
            path = os.path.join(d, fn)
            kf = KeyFile.load(path)
            for g in kf.groups():
                n = _name_of_group(g)
                if n is not None and n not in found:
                    found[n] = Remote(n, dict(kf.items(g)), path)
    if repo.parent is not None:
        for n, r in list_remotes(repo.parent).items():
            found.setdefault(n, r)
    return dict(sorted(found.items()))


def get_remote(repo: Repo, name: str) -> Remote:
    r = list_remotes(repo).get(name)
    if r is None:
        raise NotFoundError(f'Remote "{name}" not found')
    return r


def get_remote_option(repo: Repo, name: str, key: str, default: str | None = None) -> str | None:
    r = list_remotes(repo).get(name)
    if r is None:
        return default
    return r.options.get(key, default)


def get_remote_url(repo: Repo, name: str) -> str:
    r = get_remote(repo, name)
    url = r.options.get("url")
    if url is None:
        metalink = r.options.get("metalink")
        if metalink is not None:
            return "metalink=" + metalink
        raise OstreeError(f"No \"url\" option in remote \"{name}\"")
    return url


def validate_key_name(key: str) -> None:
    """A keyfile key GKeyFile accepts: no ``=``, brackets, control characters or edge spaces."""
    if (not key or key != key.strip() or any(c in key for c in "=[]") or
            any(ord(c) < 0x20 for c in key)):
        raise OstreeError(f"Invalid key name “{key}”")


def validate_group_name(group: str) -> None:
    if not group or any(c in group for c in "[]") or any(ord(c) < 0x20 for c in group):
        raise OstreeError(f"Invalid group name “{group}”")


def _apply(kf: KeyFile, group: str, url: str | None, options: dict[str, RemoteValue]) -> None:
    for k in options:
        validate_key_name(k)
    if url is not None:
        if url.startswith("metalink="):
            kf.set(group, "metalink", url[len("metalink="):])
        else:
            kf.set(group, "url", url)
    for k, v in options.items():
        if isinstance(v, bool):
            kf.set_bool(group, k, v)
        elif isinstance(v, list):
            kf.set_list(group, k, v)
        else:
            kf.set(group, k, v)


def add_remote(repo: Repo, name: str, url: str | None, options: dict[str, RemoteValue] | None = None,
               *, if_not_exists: bool = False, replace: bool = False) -> None:
    """``ostree remote add``: write ``[remote "NAME"]`` into the repo config."""
    validate_remote_name(name)
    existing = list_remotes(repo).get(name)
    group = group_name(name)
    if existing is not None and if_not_exists:
        return
    if existing is not None and not replace:
        where = existing.file or "(in config)"
        raise OstreeError(f'Remote configuration for "{name}" already exists: {where}')
    if existing is not None and existing.file is not None:
        kf = KeyFile.load(existing.file)
        kf.remove_group(group)
        _apply(kf, group, url, options or {})
        _write_text(existing.file, kf.to_data())
        return
    d = remotes_config_dir(repo)
    if d is not None and repo.config.get_bool("core", "add-remotes-config-dir", True):
        # a system repository's remotes go to remotes.d, one file each (libostree's default)
        kf = KeyFile()
        _apply(kf, group, url, options or {})
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise os_error(e, f"mkdir({d})") from None
        _write_text(os.path.join(d, f"{name}.conf"), kf.to_data())
        return
    repo.config.remove_group(group)
    _apply(repo.config, group, url, options or {})
    repo.write_config()


def delete_remote(repo: Repo, name: str, *, if_exists: bool = False) -> None:
    validate_remote_name(name)
    existing = list_remotes(repo).get(name)
    if existing is None:
        if if_exists:
            return
        raise NotFoundError(f'Remote "{name}" not found')
    if existing.file is not None:
        try:
            os.unlink(existing.file)
        except OSError as e:
            raise os_error(e, f"unlinkat({existing.file})") from None
    elif repo.config.remove_group(group_name(name)):
        repo.write_config()
    try:
        os.unlink(existing.keyring, dir_fd=repo.dfd)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise os_error(e, f"unlinkat({existing.keyring})") from None


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, path)


def fetch_summary(repo: Repo, name: str) -> bytes | None:
    """The remote's ``summary`` file (file://, http:// and https:// URLs), or None if it has none."""
    from urllib.error import HTTPError, URLError
    from urllib.parse import unquote, urlparse
    from urllib.request import urlopen

    url = get_remote_url(repo, name)
    if url.startswith("metalink="):
        raise OstreeError(f"Remote \"{name}\" uses a metalink, which pyostree does not support")
    u = urlparse(url)
    if u.scheme == "file":
        path = os.path.join(unquote(u.path), "summary")
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise os_error(e, f"opening {path}") from None
    if u.scheme in ("http", "https"):
        full = url.rstrip("/") + "/summary"
        try:
            with urlopen(full, timeout=60) as resp:  # scheme checked above
                data: bytes = resp.read()
                return data
        except HTTPError as e:
            if e.code == 404:
                return None
            raise OstreeError(f"While fetching {full}: Server returned HTTP {e.code}") from None
        except (URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise OstreeError(f"While fetching {full}: {reason}") from None
    raise OstreeError(f"Unsupported URI scheme in remote \"{name}\": {url}")


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


def list_collection_refs(repo: Repo, match_collection_id: str | None = None) -> dict[tuple[str, str], str]:
    """Refs with their collection IDs: local (repo's collection), mirrors, remotes with one."""
    if match_collection_id is not None:
        validate_collection_id(match_collection_id)
    out: dict[tuple[str, str], str] = {}

    def add(cid: str, base: str) -> None:
        tmp: dict[str, str] = {}
        enumerate_refs(repo, base, "", "", False, tmp)
        for name, csum in tmp.items():
            out[(cid, name)] = csum

    main = repo.collection_id
    if main is not None and match_collection_id in (None, main):
        add(main, "refs/heads")
    root = f"/proc/self/fd/{repo.dfd}"
    for refs_dir in ("refs/mirrors", "refs/remotes"):
        try:
            names = sorted(os.listdir(f"{root}/{refs_dir}"))
        except FileNotFoundError:
            continue
        for n in names:
            if not os.path.isdir(f"{root}/{refs_dir}/{n}"):
                continue
            if refs_dir == "refs/mirrors":
                cid = n
            else:
                rc = get_remote_option(repo, n, "collection-id")
                if not rc:
                    continue
                try:
                    validate_collection_id(rc)
                except OstreeError:
                    continue
                cid = rc
            if match_collection_id is not None and match_collection_id != cid:
                continue
            add(cid, f"{refs_dir}/{n}")
    return out
