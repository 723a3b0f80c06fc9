"""GPG signatures of commits and summaries, through the ``gpg`` and ``gpgv`` programs.

Layout, as libostree (with gpgme) writes it:

* a commit's signatures live in its detached metadata (``.commitmeta``)
  under ``ostree.gpgsigs`` (``aay``): one binary OpenPGP detached signature
  per key, each over the raw bytes of the commit object;
* a summary's signatures live in ``summary.sig``, an ``a{sv}`` with the same
  ``ostree.gpgsigs`` key, over the bytes of ``summary``.

Verification gathers keyrings as ``_ostree_repo_gpg_prepare_verifier``: the
remote's ``REPO/NAME.trustedkeys.gpg`` when it exists (else the global
keyring directory, ``$OSTREE_GPG_HOME`` or ``/usr/share/ostree/trusted.gpg.d``),
the remote's ``gpgkeypath`` files; with no remote, every ``*.gpg`` keyring
in the repository directory plus the global directory.  Signatures are then
checked one by one with ``gpgv`` and at least one must be good.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyostree.errors import NotFoundError, OstreeError
from pyostree.store import gvariant
from pyostree.store.objects import ObjectType, Record

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.remote.remotes import Remote
    from pyostree.store.repo import Repo

GPGSIGS_KEY = "ostree.gpgsigs"
GLOBAL_KEYRING_DIR = "/usr/share/ostree/trusted.gpg.d"

_PUBKEY_ALGOS = {1: "RSA", 2: "RSA", 3: "RSA", 16: "ELG", 17: "DSA", 18: "ECDH", 19: "ECDSA", 20: "ELG",
                 22: "EdDSA"}


class GpgError(OstreeError):
    """A GPG verification failure (``OSTREE_GPG_ERROR``)."""


def _exe(name: str) -> str:
    import shutil

    exe = shutil.which(name)
    if exe is None:
        raise OstreeError(f"GPG support needs the {name} program, which was not found")
    return exe


# -- signing ------------------------------------------------------------------


def sign_data(data: bytes, key_id: str, homedir: str | None = None) -> bytes:
    """A binary detached signature of *data* by *key_id* (from *homedir*, else GnuPG's default home)."""
    import subprocess

    args = [_exe("gpg")]
    if homedir is not None:
        args += ["--homedir", homedir]
    args += ["--batch", "--no-tty", "--yes", "--pinentry-mode", "loopback", "--passphrase", "",
             "--no-auto-check-trustdb", "--local-user", key_id, "--detach-sign", "--output", "-", "-"]
    res = subprocess.run(args, input=data, capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        msg = res.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = msg[-1] if msg else f"exit status {res.returncode}"
        if "No secret key" in detail or "skipped" in detail or "unusable" in detail:
            raise OstreeError(f"No gpg key found with ID {key_id} (homedir: "
                              f"{homedir or 'default'})")
        raise OstreeError(f"Failed to sign with GPG key {key_id}: {detail}")
    return res.stdout


def _gpgsigs(md: list[tuple[str, gvariant.Variant]] | None) -> list[bytes] | None:
    for k, v in md or []:
        if k == GPGSIGS_KEY and v.type == "aay":
            return [bytes(x) for x in v.value]
    return None


def metadata_signatures(md: list[tuple[str, gvariant.Variant]] | None) -> list[bytes] | None:
    """The ``ostree.gpgsigs`` entry of an ``a{sv}`` (detached metadata or ``summary.sig``)."""
    return _gpgsigs(md)


def commit_signatures(repo: Repo, checksum: str) -> list[bytes] | None:
    """The ``ostree.gpgsigs`` of a commit's detached metadata, None when it has none."""
    return _gpgsigs(repo.load_detached_metadata(checksum))


def _with_gpgsigs(md: list[tuple[str, gvariant.Variant]] | None,
                  sigs: list[bytes]) -> list[tuple[str, gvariant.Variant]] | None:
    out = [(k, v) for k, v in (md or []) if k != GPGSIGS_KEY]
    if sigs:
        out.append((GPGSIGS_KEY, gvariant.Variant("aay", list(sigs))))
    return sorted(out, key=lambda kv: kv[0]) or None


def signature_issuer(sig: bytes) -> str | None:
    """The issuer (key ID or fingerprint, upper-case hex) of an OpenPGP signature packet."""
    try:
        if not sig or not sig[0] & 0x80:
            return None
        tag_byte = sig[0]
        pos = 1
        if tag_byte & 0x40:  # new format length
            o = sig[pos]
            if o < 192:
                pos += 1
            elif o < 224:
                pos += 2
            else:
                pos += 5
        else:
            pos += {0: 1, 1: 2, 2: 4}.get(tag_byte & 3, 0)
        body = sig[pos:]
        if body[0] == 4 or body[0] == 5:
            hl = int.from_bytes(body[4:6], "big")
            hashed = body[6:6 + hl]
            ul = int.from_bytes(body[6 + hl:8 + hl], "big")
            unhashed = body[8 + hl:8 + hl + ul]
            found: str | None = None
            for area in (hashed, unhashed):
                i = 0
                while i < len(area):
                    n = area[i]
                    if n < 192:
                        ln, i = n, i + 1
                    elif n < 255:
                        ln, i = ((n - 192) << 8) + area[i + 1] + 192, i + 2
                    else:
                        ln, i = int.from_bytes(area[i + 1:i + 5], "big"), i + 5
                    st = area[i] & 0x7F
                    payload = area[i + 1:i + ln]
                    if st == 33 and len(payload) > 1:
                        return payload[1:].hex().upper()
                    if st == 16 and found is None:
                        found = payload.hex().upper()
                    i += ln
            return found
        if body[0] == 3:
            return body[7:15].hex().upper()
    except IndexError:
        return None
    return None


def _key_matches(issuer: str | None, key_id: str) -> bool:
    if issuer is None:
        return False
    k = key_id.upper().removeprefix("0X")
    return issuer.endswith(k) or (len(k) > len(issuer) and k.endswith(issuer))


def sign_commit(repo: Repo, checksum: str, key_id: str, homedir: str | None = None) -> None:
    """Append a signature by *key_id* to the commit's ``ostree.gpgsigs`` (``ostree_repo_sign_commit``)."""
    try:
        data = repo.load_metadata(ObjectType.COMMIT, checksum)
    except OstreeError as e:
        raise OstreeError(f"Failed to read commit: {e}") from None
    md = repo.load_detached_metadata(checksum)
    sigs = _gpgsigs(md) or []
    for s in sigs:
        if _key_matches(signature_issuer(s), key_id):
            raise OstreeError(f"Commit is already signed with GPG key {key_id}")
    sigs.append(sign_data(data, key_id, homedir))
    repo.write_detached_metadata(checksum, _with_gpgsigs(md, sigs))


def delete_signatures(repo: Repo, checksum: str, key_ids: list[str]) -> int:
    """Drop the commit's signatures made by any of *key_ids*; returns how many went."""
    md = repo.load_detached_metadata(checksum)
    sigs = _gpgsigs(md)
    if not sigs:
        return 0
    keep = [s for s in sigs if not any(_key_matches(signature_issuer(s), k) for k in key_ids)]
    if len(keep) != len(sigs):
        # an emptied dictionary stays as a file, as libostree leaves it
        repo.write_detached_metadata(checksum, _with_gpgsigs(md, keep) or [])
    return len(sigs) - len(keep)


def sign_summary(repo: Repo, key_ids: list[str], homedir: str | None = None) -> None:
    """Write ``summary.sig`` with a signature of ``summary`` by each key (``ostree_repo_add_gpg_signature_summary``)."""
    from pyostree.store.files import write_file_atomic

    try:
        with open(os.path.join(repo.path, "summary"), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise OstreeError("No summary file found in repository; run summary -u first") from None
    old: list[tuple[str, gvariant.Variant]] | None = None
    try:
        with open(os.path.join(repo.path, "summary.sig"), "rb") as f:
            old = list(gvariant.deserialize("a{sv}", f.read()))
    except (FileNotFoundError, gvariant.GVariantError):
        old = None
    sigs = _gpgsigs(old) or []
    for k in key_ids:
        sigs.append(sign_data(data, k, homedir))
    new = _with_gpgsigs(old, sigs) or []
    write_file_atomic(repo.path, "summary.sig", gvariant.serialize("a{sv}", new),
                       fsync=not repo.disable_fsync, dir_fd=repo.dfd)


# -- verification -------------------------------------------------------------


class Signature(Record):
    def __init__(self, valid: bool, key_missing: bool = False, key_expired: bool = False,
                 key_revoked: bool = False, sig_expired: bool = False, fingerprint: str = "",
                 fingerprint_primary: str = "", timestamp: int = 0, pubkey_algo: str = "",
                 user_name: str = "", user_email: str = "", exp_timestamp: int = 0,
                 key_exp_timestamp: int = 0, key_exp_timestamp_primary: int = 0) -> None:
        self.valid = valid
        self.key_missing = key_missing
        self.key_expired = key_expired
        self.key_revoked = key_revoked
        self.sig_expired = sig_expired
        self.fingerprint = fingerprint
        self.fingerprint_primary = fingerprint_primary
        self.timestamp = timestamp
        self.pubkey_algo = pubkey_algo
        self.user_name = user_name
        self.user_email = user_email
        self.exp_timestamp = exp_timestamp
        self.key_exp_timestamp = key_exp_timestamp
        self.key_exp_timestamp_primary = key_exp_timestamp_primary

    def describe(self, prefix: str = "") -> str:
        kid = self.fingerprint[-16:]
        when = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(self.timestamp))
        out = f"{prefix}Signature made {when} using {self.pubkey_algo} key ID {kid}\n"
        if self.key_missing:
            out += f"{prefix}Can't check signature: public key not found\n"
        elif self.valid:
            out += f'{prefix}Good signature from "{self.user_name} <{self.user_email}>"\n'
        elif self.key_revoked:
            out += f"{prefix}Key revoked\n"
        elif self.sig_expired:
            out += f'{prefix}Expired signature from "{self.user_name} <{self.user_email}>"\n'
        else:
            out += f'{prefix}BAD signature from "{self.user_name} <{self.user_email}>"\n'
        if not self.key_missing and self.fingerprint_primary and self.fingerprint != self.fingerprint_primary:
            out += f"{prefix}Primary key ID {self.fingerprint_primary[-16:]}\n"

        def exp(kind: str, ts: int, expired: bool) -> str:
            when = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(ts))
            return f"{prefix}{kind} {'expired' if expired else 'expires'} {when}\n"

        if self.exp_timestamp > 0:
            out += exp("Signature", self.exp_timestamp, self.sig_expired)
        if self.key_exp_timestamp > 0:
            out += exp("Key", self.key_exp_timestamp, self.key_expired)
        if self.key_exp_timestamp_primary > 0 and self.fingerprint != self.fingerprint_primary:
            out += exp("Primary key", self.key_exp_timestamp_primary, self.key_expired)
        return out


class VerifyResult(Record):
    def __init__(self, signatures: list[Signature]) -> None:
        self.signatures = signatures

    @property
    def n_valid(self) -> int:
        return sum(1 for s in self.signatures if s.valid)

    def lookup(self, key_id: str) -> int | None:
        for i, s in enumerate(self.signatures):
            if _key_matches(s.fingerprint or None, key_id) or _key_matches(s.fingerprint_primary or None, key_id):
                return i
        return None

    def require_valid(self) -> None:
        """``ostree_gpg_verify_result_require_valid_signature``."""
        if self.n_valid > 0:
            return
        if not self.signatures:
            raise GpgError("No GPG signatures found")
        text = "".join(s.describe() for s in reversed(self.signatures))
        raise GpgError(text.rstrip("\n"))


def _split_uid(uid: str) -> tuple[str, str]:
    if uid.endswith(">") and "<" in uid:
        i = uid.rindex("<")
        return uid[:i].strip(), uid[i + 1:-1]
    return uid, ""


def _parse_status(status: str) -> Signature:
    sig = Signature(valid=False)
    for line in status.splitlines():
        p = line.split(" ")
        if len(p) < 2 or p[0] != "[GNUPG:]":
            continue
        kw, rest = p[1], p[2:]
        if kw in ("GOODSIG", "BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG") and rest:
            if not sig.fingerprint:
                sig.fingerprint = rest[0]
            sig.user_name, sig.user_email = _split_uid(" ".join(rest[1:]))
            sig.valid = kw == "GOODSIG"
            sig.sig_expired = kw == "EXPSIG"
            sig.key_expired = kw == "EXPKEYSIG"
            sig.key_revoked = kw == "REVKEYSIG"
        elif kw == "VALIDSIG" and len(rest) >= 7:
            sig.fingerprint = rest[0]
            try:
                sig.timestamp = int(rest[2])
                sig.exp_timestamp = int(rest[3]) if rest[3].isdigit() else 0
                sig.pubkey_algo = _PUBKEY_ALGOS.get(int(rest[6]), rest[6])
            except ValueError:
                pass
            if len(rest) >= 10:
                sig.fingerprint_primary = rest[9]
        elif kw == "ERRSIG" and len(rest) >= 6:
            sig.fingerprint = rest[7] if len(rest) >= 8 and rest[7] != "-" else rest[0]
            try:
                sig.pubkey_algo = _PUBKEY_ALGOS.get(int(rest[1]), rest[1])
                sig.timestamp = int(rest[4])
            except ValueError:
                pass
            sig.key_missing = rest[5] == "9"
        elif kw == "NO_PUBKEY" and rest:
            sig.key_missing = True
            sig.fingerprint = sig.fingerprint or rest[0]
    if not sig.fingerprint_primary:
        sig.fingerprint_primary = sig.fingerprint
    return sig


def _split_signatures(sigs: bytes) -> list[bytes]:
    """Cut concatenated OpenPGP packets into single signature packets (each blob may hold several)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(sigs):
        start = pos
        b = sigs[pos]
        if not b & 0x80:
            return [sigs[start:]] if not out else [*out, sigs[start:]]
        pos += 1
        try:
            if b & 0x40:
                o = sigs[pos]
                if o < 192:
                    ln, pos = o, pos + 1
                elif o < 224:
                    ln, pos = ((o - 192) << 8) + sigs[pos + 1] + 192, pos + 2
                elif o == 255:
                    ln, pos = int.from_bytes(sigs[pos + 1:pos + 5], "big"), pos + 5
                else:
                    return [*out, sigs[start:]]
            else:
                lt = b & 3
                if lt == 3:
                    return [*out, sigs[start:]]
                n = 1 << lt
                ln, pos = int.from_bytes(sigs[pos:pos + n], "big"), pos + n
        except IndexError:
            return [*out, sigs[start:]]
        pos += ln
        out.append(sigs[start:pos])
    return out


@contextmanager
def _keyring_files(keyrings: list[bytes]) -> Iterator[tuple[str, list[str]]]:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ostree-gpgv-") as tmp:
        os.chmod(tmp, 0o700)
        paths = []
        for i, data in enumerate(keyrings):
            p = os.path.join(tmp, f"keyring{i}.gpg")
            if data.lstrip().startswith(b"-----BEGIN"):
                res = subprocess.run([_exe("gpg"), "--homedir", tmp, "--batch", "--no-tty", "--dearmor"],
                                     input=data, capture_output=True, check=False)
                data = res.stdout if res.returncode == 0 else b""
            with open(p, "wb") as f:
                f.write(data)
            paths.append(p)
        yield tmp, paths


def verify_data(data: bytes, signatures: list[bytes], keyrings: list[bytes]) -> VerifyResult:
    """Check each signature over *data* against the public keys in *keyrings*."""
    import subprocess

    gpgv = _exe("gpgv")
    result = VerifyResult([])
    with _keyring_files(keyrings) as (tmp, paths):
        dpath = os.path.join(tmp, "data")
        with open(dpath, "wb") as f:
            f.write(data)
        spath = os.path.join(tmp, "sig")
        blobs = [p for s in signatures for p in _split_signatures(s)]
        for blob in blobs:
            with open(spath, "wb") as f:
                f.write(blob)
            args = [gpgv, "--homedir", tmp, "--status-fd", "1"]
            for p in paths:
                args += ["--keyring", p]
            if not paths:
                args += ["--keyring", os.path.join(tmp, "empty.gpg")]
            res = subprocess.run([*args, spath, dpath], capture_output=True, check=False)
            sig = _parse_status(res.stdout.decode("utf-8", "replace"))
            if res.returncode != 0:
                sig.valid = False
            if not sig.fingerprint and not sig.valid:
                sig.fingerprint = signature_issuer(blob) or ""
                sig.fingerprint_primary = sig.fingerprint
                sig.key_missing = sig.key_missing or not paths
            result.signatures.append(sig)
        if paths and any(not s.key_missing and s.fingerprint for s in result.signatures):
            _add_key_details(tmp, paths, result.signatures)
    return result


def _add_key_details(home: str, keyrings: list[str], sigs: list[Signature]) -> None:
    """Primary fingerprints and key expiry times, from a listing of the keyrings."""
    import subprocess

    args = [_exe("gpg"), "--homedir", home, "--batch", "--no-tty", "--no-default-keyring",
            "--no-auto-check-trustdb", "--with-colons", "--fixed-list-mode", "--with-fingerprint",
            "--with-subkey-fingerprint"]
    for p in keyrings:
        args += ["--keyring", p]
    res = subprocess.run([*args, "--list-keys"], capture_output=True, check=False)
    keys: dict[str, tuple[int, str]] = {}  # fingerprint -> (expiry, primary fingerprint)
    primary = ""
    pending: tuple[str, int] | None = None
    expiry_of: dict[str, int] = {}
    for line in res.stdout.decode("utf-8", "replace").splitlines():
        f = line.split(":")
        if f[0] in ("pub", "sub") and len(f) > 6:
            pending = (f[0], int(f[6]) if f[6].isdigit() else 0)
        elif f[0] == "fpr" and len(f) > 9 and pending is not None:
            fpr = f[9]
            if pending[0] == "pub":
                primary = fpr
            keys[fpr] = (pending[1], primary)
            expiry_of[fpr] = pending[1]
            pending = None
    for s in sigs:
        if s.key_missing:
            continue
        info = keys.get(s.fingerprint)
        if info is None:
            continue
        s.key_exp_timestamp = info[0]
        s.fingerprint_primary = info[1]
        s.key_exp_timestamp_primary = expiry_of.get(info[1], 0)


def read_dir_keyrings(path: str) -> list[bytes]:
    out: list[bytes] = []
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return out
    except OSError as e:
        raise OstreeError(f"Reading keyring directory {path}: {e.strerror}") from None
    for n in names:
        if not n.endswith(".gpg") or n in ("trustdb.gpg", "secring.gpg"):
            continue
        p = os.path.join(path, n)
        if not os.path.isfile(p) or os.path.islink(p):
            continue
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def global_keyring_dir() -> str:
    return os.environ.get("OSTREE_GPG_HOME") or GLOBAL_KEYRING_DIR


def _remote_keyring(repo: Repo, keyring: str) -> bytes | None:
    r: Repo | None = repo
    while r is not None:
        try:
            with open(os.path.join(r.path, keyring), "rb") as f:
                return f.read()
        except FileNotFoundError:
            r = r.parent
    return None


def _keypath_list(value: str) -> list[str]:
    """``gpgkeypath``: paths separated by ``;`` or ``,`` (not both), a trailing separator allowed."""
    seps = {c for c in value if c in ";,"}
    if len(seps) > 1:
        raise OstreeError("key value list contains more than one separator")
    if not seps:
        return [value]
    items = value.split(seps.pop())
    if items and items[-1] == "":
        items.pop()
    return items


def _import_key_files(paths: list[str]) -> bytes:
    """One binary keyring of the public keys in key files (armored or not), as gpgme imports them."""
    import subprocess
    import tempfile

    for p in paths:
        if not os.access(p, os.R_OK):
            raise OstreeError(f"{p}: No such file or directory")
    with tempfile.TemporaryDirectory(prefix="ostree-gpg-") as home:
        os.chmod(home, 0o700)
        base = [_exe("gpg"), "--homedir", home, "--batch", "--no-tty", "--no-auto-check-trustdb"]
        for p in paths:
            subprocess.run([*base, "--import", p], capture_output=True, check=False)
        res = subprocess.run([*base, "--export"], capture_output=True, check=False)
    return res.stdout


def remote_keyrings(repo: Repo, r: Remote) -> tuple[bool, list[bytes]]:
    """(has its own keyring file, keyrings) of remote *r*: ``REPO/NAME.trustedkeys.gpg`` (or a
    parent repo's), then the key files its ``gpgkeypath`` names."""
    keyrings: list[bytes] = []
    data = _remote_keyring(repo, r.keyring)
    if data is not None:
        keyrings.append(data)
    paths = r.options.get("gpgkeypath")
    if paths is not None:
        key_files: list[str] = []
        for p in _keypath_list(paths):
            try:
                names = sorted(os.listdir(p) if p else os.listdir(""))
            except NotADirectoryError:
                key_files.append(p)
                continue
            except OSError as e:
                raise OstreeError(f"opendir({p}): {e.strerror}") from None
            key_files += [os.path.join(p, n) for n in names if os.path.isfile(os.path.join(p, n))
                          and not os.path.islink(os.path.join(p, n))]
        if key_files:
            keyrings.append(_import_key_files(key_files))
    return data is not None, keyrings


def collect_keyrings(repo: Repo, remote: str | None, keyringdir: str | None = None,
                     extra_keyring: str | None = None) -> list[bytes]:
    """The keyrings ``_ostree_repo_gpg_prepare_verifier`` would load; *remote* None means all remotes."""
    from pyostree.remote.remotes import get_remote

    keyrings: list[bytes] = []
    add_global = True
    if remote is None:
        keyrings += read_dir_keyrings(repo.path)
    else:
        has_keyring, keyrings = remote_keyrings(repo, get_remote(repo, remote))
        add_global = not has_keyring
    if add_global:
        keyrings += read_dir_keyrings(global_keyring_dir())
    if keyringdir is not None:
        keyrings += read_dir_keyrings(keyringdir)
    if extra_keyring is not None:
        try:
            with open(extra_keyring, "rb") as f:
                keyrings.append(f.read())
        except OSError as e:
            raise OstreeError(f"Reading keyring {extra_keyring}: {e.strerror}") from None
    return keyrings


def verify_commit(repo: Repo, checksum: str, remote: str | None = None, keyringdir: str | None = None,
                  extra_keyring: str | None = None) -> VerifyResult:
    """Signatures of a stored commit (``_ostree_repo_verify_commit_internal``); raises GpgError when unsigned."""
    try:
        data = repo.load_metadata(ObjectType.COMMIT, checksum)
    except OstreeError as e:
        raise OstreeError(f"Failed to read commit: {e}") from None
    md = repo.load_detached_metadata(checksum)
    sigs = _gpgsigs(md)
    if not sigs:
        raise GpgError("GPG verification enabled, but no signatures found "
                       "(use gpg-verify=false in remote config to disable)")
    return verify_data(data, sigs, collect_keyrings(repo, remote, keyringdir, extra_keyring))


def describe_commit_signatures(repo: Repo, checksum: str, remote: str | None = None,
                               homedir: str | None = None) -> str | None:
    """What ``ostree show`` prints about a commit's signatures; None when it has none."""
    try:
        if remote is not None:
            from pyostree.remote.remotes import get_remote

            get_remote(repo, remote)
            data = repo.load_metadata(ObjectType.COMMIT, checksum)
            sigs = commit_signatures(repo, checksum)
            if not sigs:
                return None
            keyring = _remote_keyring(repo, get_remote(repo, remote).keyring)
            result = verify_data(data, sigs, [keyring] if keyring is not None else [])
        else:
            result = verify_commit(repo, checksum, None, homedir)
    except GpgError:
        return None
    n = len(result.signatures)
    out = f"Found {n} signature{'' if n == 1 else 's'}:\n"
    for s in result.signatures:
        out += "\n" + s.describe("  ")
    return out


def require_valid_commit(repo: Repo, checksum: str, remote: str | None) -> None:
    verify_commit(repo, checksum, remote).require_valid()


def verify_summary(repo: Repo, remote: str | None, summary: bytes | None, summary_sig: bytes | None) -> None:
    """``_ostree_repo_verify_summary`` for GPG: a summary and a good signature of it are required."""
    if summary is None:
        raise NotFoundError("GPG verification enabled, but no summary found "
                            "(check that the configured URL in remote config is correct)")
    if summary_sig is None:
        raise GpgError("GPG verification enabled, but no summary signatures found "
                       "(use gpg-verify-summary=false in remote config to disable)")
    try:
        md = list(gvariant.deserialize("a{sv}", summary_sig))
    except gvariant.GVariantError as e:
        raise OstreeError(f"Invalid summary.sig: {e}") from None
    sigs = _gpgsigs(md)
    if not sigs:
        raise GpgError("GPG verification enabled, but no signatures found "
                       "(use gpg-verify=false in remote config to disable)")
    verify_data(summary, sigs, collect_keyrings(repo, remote)).require_valid()


def remote_gpg_verify(repo: Repo, remote: str, key: str = "gpg-verify") -> bool:
    """The remote's ``gpg-verify`` (default true) or ``gpg-verify-summary`` (default false) option."""
    from pyostree.remote.remotes import get_remote

    r = get_remote(repo, remote)
    v = r.options.get(key)
    if v is None:
        return key == "gpg-verify"
    v = v.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise OstreeError(f"Key file contains key “{key}” which has a value that cannot be interpreted.")
