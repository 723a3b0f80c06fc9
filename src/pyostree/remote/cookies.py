"""Per-remote HTTP cookies: ``REPO/NAME.cookies.txt``, the cookie jar ostree keeps for a remote.

The file is a Netscape/curl cookie jar, one cookie a line, tab-separated: domain, include
subdomains (``TRUE``/``FALSE``), path, secure, expiry (seconds since the epoch), name, value.
``remote add-cookie`` appends a line as libostree does (expiring in 25 years), ``delete-cookie``
rewrites the jar without the matching lines, and a pull sends the cookies that match each URL the
way libcurl's cookie engine chooses them (domain, path prefix, secure, expiry).
"""

from __future__ import annotations

import os
import time
from datetime import UTC

from pyostree.errors import OstreeError, os_error
from pyostree.store.objects import Record
from pyostree.store.refs import validate_remote_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from pyostree.store.repo import Repo

_HTTPONLY = "#HttpOnly_"


class Cookie(Record):
    def __init__(self, domain: str, subdomains: str, path: str, secure: str, expires: int,
                 name: str, value: str, line: str) -> None:
        self.domain = domain
        self.subdomains = subdomains
        self.path = path
        self.secure = secure
        self.expires = expires
        self.name = name
        self.value = value
        self.line = line


def jar_name(remote: str) -> str:
    validate_remote_name(remote)  # the name becomes a file name in the repo: no '/' or '..'
    return f"{remote}.cookies.txt"


def _read_jar(repo: Repo, remote: str) -> str:
    try:
        with open(os.open(jar_name(remote), os.O_RDONLY | os.O_CLOEXEC, dir_fd=repo.dfd),
                  encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise os_error(e, f"open({jar_name(remote)})") from None


def parse_jar(text: str) -> list[Cookie]:
    """The jar's cookies; lines that are not seven fields (comments, junk) are skipped, as the
    readers of ostree and curl skip them."""
    out: list[Cookie] = []
    for line in text.split("\n"):
        body = line[len(_HTTPONLY):] if line.startswith(_HTTPONLY) else line
        if not body or body.startswith("#"):
            continue
        f = body.split("\t")
        if len(f) != 7 or not f[4].isdigit() or not all(f[i] for i in (0, 2, 5)):
            continue
        out.append(Cookie(f[0], f[1], f[2], f[3], int(f[4]), f[5], f[6], line))
    return out


def list_cookies(repo: Repo, remote: str) -> list[Cookie]:
    return parse_jar(_read_jar(repo, remote))


def _check_field(what: str, value: str) -> None:
    if not value or any(c in value for c in "\t\n\r"):
        raise OstreeError(f"Invalid cookie {what}: {value!r}")


def add_cookie(repo: Repo, remote: str, domain: str, path: str, name: str, value: str) -> None:
    """Append a cookie, expiring in 25 years, as ``ot_add_cookie_at`` writes it."""
    for what, v in (("domain", domain), ("path", path), ("name", name), ("value", value)):
        _check_field(what, v)
    from datetime import datetime

    now = datetime.now(UTC)
    try:
        later = now.replace(year=now.year + 25)
    except ValueError:  # 29 February: GLib goes to the 28th
        later = now.replace(year=now.year + 25, day=28)
    expires = int(later.timestamp())
    line = (f"{domain}\t{'TRUE' if domain.startswith('.') else 'FALSE'}\t{path}\tFALSE\t{expires}\t"
            f"{name}\t{value}\n")
    try:
        fd = os.open(jar_name(remote), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644,
                     dir_fd=repo.dfd)
    except OSError as e:
        raise os_error(e, f"open({jar_name(remote)})") from None
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def delete_cookie(repo: Repo, remote: str, domain: str, path: str, name: str) -> None:
    """Rewrite the jar without the cookies matching domain, path and name."""
    from pyostree.store.files import write_file_atomic

    text = _read_jar(repo, remote)
    drop = {c.line for c in parse_jar(text) if (c.domain, c.path, c.name) == (domain, path, name)}
    if not drop:
        raise OstreeError("Cookie not found in jar")
    kept = "".join(line + "\n" for line in text.split("\n") if line and line not in drop)
    write_file_atomic(repo.path, jar_name(remote), kept.encode("utf-8", "surrogateescape"),
                      fsync=False, dir_fd=repo.dfd)


def _domain_matches(cookie: Cookie, host: str) -> bool:
    d = cookie.domain.lower().lstrip(".")
    host = host.lower()
    if cookie.subdomains == "TRUE" or cookie.domain.startswith("."):
        return host == d or host.endswith("." + d)
    return host == d


def _path_matches(cookie_path: str, req_path: str) -> bool:
    if req_path == cookie_path:
        return True
    if not req_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or req_path[len(cookie_path)] == "/"


def cookie_header(repo: Repo, remote: str | None, url: str) -> str | None:
    """The ``Cookie:`` value a request to *url* carries (the remote's matching, unexpired cookies,
    longest path first, as curl orders them), or None."""
    if remote is None:
        return None
    from urllib.parse import urlsplit

    u = urlsplit(url)
    host = u.hostname or ""
    path = u.path or "/"
    now = time.time()
    found = [c for c in list_cookies(repo, remote)
             if _domain_matches(c, host) and _path_matches(c.path, path)
             and (c.secure != "TRUE" or u.scheme == "https") and (c.expires == 0 or c.expires > now)]
    if not found:
        return None
    found.sort(key=lambda c: -len(c.path))
    return "; ".join(f"{c.name}={c.value}" for c in found)


def format_cookies(cookies: list[Cookie]) -> str:
    """What ``remote list-cookies`` prints (``ot_list_cookies_at``)."""
    out = []
    for c in cookies:
        out += ["--", f"Domain: {c.domain}", f"Path: {c.path}", f"Name: {c.name}", f"Secure: {c.secure}"]
        if c.expires < 253402300800:  # GDateTime stops at year 9999
            out.append("Expires: " + time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(c.expires)))
        out.append(f"Value: {c.value}")
    return "".join(line + "\n" for line in out)
