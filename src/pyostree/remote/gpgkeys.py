"""Per-remote GPG keyrings (``REPO/NAME.trustedkeys.gpg``), managed with the ``gpg`` tool.

``ostree remote gpg-import`` and ``remote add --gpg-import`` merge keys into
the remote's keyring, as ``ostree_repo_remote_gpg_import`` does: the existing
keyring and the new keys are loaded into a scratch GnuPG home, and the
merged public keyring is written back atomically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from pyostree.errors import OstreeError
from pyostree.remote.remotes import get_remote

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo


def _gpg(home: str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("gpg")
    if exe is None:
        raise OstreeError("GPG support needs the gpg program, which was not found")
    # status lines go to stderr, so that --export output on stdout stays clean
    return subprocess.run([exe, "--homedir", home, "--batch", "--no-tty", "--status-fd", "2",
                           "--no-auto-check-trustdb", *args],
                          input=data, capture_output=True, check=False)


def _imported_count(status: bytes) -> int:
    for line in status.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[:2] == ["[GNUPG:]", "IMPORT_RES"]:
            return int(parts[4]) if len(parts) > 4 else 0
    return 0


def gpg_import(repo: Repo, remote: str, key_data: bytes, key_ids: list[str] | None = None) -> int:
    """Add the keys in *key_data* (optionally only *key_ids*) to the remote's keyring; returns how many."""
    r = get_remote(repo, remote)
    keyring = r.keyring
    with tempfile.TemporaryDirectory(prefix="ostree-gpg-") as home:
        os.chmod(home, 0o700)
        src_home = os.path.join(home, "src")
        os.mkdir(src_home, 0o700)
        dst_home = os.path.join(home, "dst")
        os.mkdir(dst_home, 0o700)
        # the keys to import, possibly filtered by ID
        res = _gpg(src_home, "--import", data=key_data)
        if res.returncode not in (0, 2):
            raise OstreeError(f"GPG import failed: {res.stderr.decode('utf-8', 'replace').strip()}")
        export = _gpg(src_home, "--export", *(key_ids or []))
        if export.returncode != 0 or not export.stdout:
            raise OstreeError("GPG: Unable to export keys: GPGME: No data")
        # merge into the existing keyring
        try:
            with open(f"/proc/self/fd/{repo.dfd}/{keyring}", "rb") as f:
                existing = f.read()
        except FileNotFoundError:
            existing = b""
        if existing:
            _gpg(dst_home, "--import", data=existing)
        imported = 0
        if export.stdout:
            res = _gpg(dst_home, "--import", data=export.stdout)
            imported = _imported_count(res.stderr)
        merged = _gpg(dst_home, "--export")
        if merged.returncode != 0:
            raise OstreeError(f"GPG export failed: {merged.stderr.decode('utf-8', 'replace').strip()}")
    from pyostree.store.files import write_file_atomic

    if merged.stdout or existing:
        write_file_atomic(repo.path, keyring, merged.stdout, fsync=not repo.disable_fsync, dir_fd=repo.dfd)
    return imported


class GpgKey:
    """One key of a keyring listing (``ostree_repo_remote_get_gpg_keys``): the primary key first
    in *subkeys*, each ``(fingerprint, created, expires, revoked, expired, invalid)``, and the user
    IDs as ``(uid, revoked, invalid, email or None)``."""

    __slots__ = ("subkeys", "uids")

    def __init__(self) -> None:
        self.subkeys: list[tuple[str, int, int, bool, bool, bool]] = []
        self.uids: list[tuple[str, bool, bool, str | None]] = []


def _colon_unescape(field: str) -> str:
    """gpg --with-colons escapes ``:`` and control characters as ``\\xHH``."""
    import re

    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), field)


def _email_of(uid: str) -> str | None:
    """The address gpgme finds in a user ID: inside ``<...>``, else the whole ID if it is one."""
    import re

    m = re.search(r"<([^<>]*)>\s*$", uid)
    if m is not None:
        return m.group(1) or None
    return uid if "@" in uid and " " not in uid else None


def list_keys(repo: Repo, remote: str | None) -> list[GpgKey]:
    """The keys ``ostree remote gpg-list-keys [NAME]`` lists: the remote's keyring and
    ``gpgkeypath`` files, or with no remote the global keyrings (``$OSTREE_GPG_HOME``)."""
    from pyostree.remote.gpg import global_keyring_dir, read_dir_keyrings, remote_keyrings

    if remote is not None:
        _has, keyrings = remote_keyrings(repo, get_remote(repo, remote))
    else:
        keyrings = read_dir_keyrings(global_keyring_dir())
    keyrings = [k for k in keyrings if k]
    if not keyrings:
        return []
    with tempfile.TemporaryDirectory(prefix="ostree-gpg-") as home:
        os.chmod(home, 0o700)
        # one scratch keyring with every key, in order, as libostree's verifier builds it
        for data in keyrings:
            res = _gpg(home, "--import", data=data)
            if res.returncode not in (0, 2):
                raise OstreeError(f"GPG: reading keyring: {res.stderr.decode('utf-8', 'replace').strip()}")
        res = _gpg(home, "--with-colons", "--fixed-list-mode", "--with-fingerprint",
                   "--with-subkey-fingerprint", "--list-keys")
    keys: list[GpgKey] = []
    pending: tuple[int, int, bool, bool, bool] | None = None
    for line in res.stdout.decode("utf-8", "replace").splitlines():
        f = line.split(":")
        if f[0] in ("pub", "sub") and len(f) > 6:
            if f[0] == "pub":
                keys.append(GpgKey())
            validity = f[1]
            pending = (int(f[5]) if f[5].isdigit() else 0, int(f[6]) if f[6].isdigit() else 0,
                       validity == "r", validity == "e", validity == "i")
        elif f[0] == "fpr" and len(f) > 9 and pending is not None and keys:
            keys[-1].subkeys.append((f[9], *pending))
            pending = None
        elif f[0] == "uid" and len(f) > 9 and keys:
            uid = _colon_unescape(f[9])
            keys[-1].uids.append((uid, f[1] == "r", f[1] == "i", _email_of(uid)))
    return keys


def _zbase32(data: bytes) -> str:
    alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"
    bits = int.from_bytes(data, "big")
    n = len(data) * 8
    out = []
    for i in range(-(-n // 5)):
        shift = n - 5 * (i + 1)
        out.append(alphabet[(bits >> shift) & 31 if shift >= 0 else (bits << -shift) & 31])
    return "".join(out)


def wkd_urls(email: str) -> tuple[str, str]:
    """(advanced, direct) Web Key Directory update URLs of *email* (``ot_gpg_wkd_urls``)."""
    import hashlib
    from urllib.parse import quote

    parts = email.split("@")
    if len(parts) != 2:
        raise OstreeError(f'Invalid email address "{email}"')
    local, domain = parts
    encoded = _zbase32(hashlib.sha1(local.lower().encode()).digest())
    escaped = quote(local, safe="-._~!$&'()*+,;=:@")
    advanced = (f"https://openpgpkey.{domain}/.well-known/openpgpkey/{domain.lower()}/hu/"
                f"{encoded}?l={escaped}")
    direct = f"https://{domain}/.well-known/openpgpkey/hu/{encoded}?l={escaped}"
    return advanced, direct


def format_keys(keys: list[GpgKey]) -> str:
    """The text ``ot_dump_gpg_key`` prints for each key (dates in the local time zone)."""
    import time

    def when(ts: int) -> str:
        return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(ts))

    out: list[str] = []
    for key in keys:
        for i, (fpr, created, expires, revoked, expired, invalid) in enumerate(key.subkeys):
            ind = "  " if i == 0 else "    "
            out.append(f"{'Key' if i == 0 else '  Subkey'}: {fpr}{' (revoked)' if revoked else ''}"
                       f"{' (invalid)' if invalid else ''}")
            out.append(f"{ind}Created: {when(created)}")
            if expires > 0:
                out.append(f"{ind}{'Expired' if expired else 'Expires'}: {when(expires)}")
            if i == 0:
                for uid, urevoked, uinvalid, email in key.uids:
                    out.append(f"  UID: {uid}{' (revoked)' if urevoked else ''}"
                               f"{' (invalid)' if uinvalid else ''}")
                    adv, direct = wkd_urls(email) if email is not None else ("", "")
                    out.append(f"  Advanced update URL: {adv}")
                    out.append(f"  Direct update URL: {direct}")
    return "".join(line + "\n" for line in out)
