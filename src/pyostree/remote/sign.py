"""Commit signatures of the ``ostree sign`` family: the ``ed25519`` and ``dummy`` engines.

As libostree's ``OstreeSign`` implementations (ostree-sign-ed25519.c,
ostree-sign-dummy.c), signatures are kept in the commit's detached metadata
as an ``aay`` under the engine's key, each one over the raw bytes of the
commit object:

* ``ed25519`` (``ostree.sign.ed25519``): 64-byte detached Ed25519 signatures.
  Keys are base64: a secret key is libsodium's 64 bytes (seed then public
  key), a public key 32 bytes.  Key files hold one base64 key a line.  With
  no public key given, verification reads ``trusted.ed25519`` and the files
  of ``trusted.ed25519.d/`` under ``/etc/ostree`` and ``/usr/share/ostree``
  (or a ``basedir``), skipping keys listed in the ``revoked.ed25519`` ones.
* ``dummy`` (``ostree.sign.dummy``): the "signature" is the key string
  itself; only usable with ``OSTREE_DUMMY_SIGN_ENABLED=1`` (for tests).
"""

from __future__ import annotations

import base64
import binascii
import os

from pyostree.errors import OstreeError
from pyostree.store import gvariant
from pyostree.store.objects import ObjectType

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo

ED25519_KEY = "ostree.sign.ed25519"
DUMMY_KEY = "ostree.sign.dummy"
DEFAULT_TYPE = "ed25519"
SYSTEM_KEY_DIRS = ("/etc/ostree", "/usr/share/ostree")

Metadata = list[tuple[str, gvariant.Variant]]


def _b64decode(text: str) -> bytes:
    """Lenient like ``g_base64_decode``: characters outside the alphabet are skipped."""
    clean = "".join(c for c in text if c.isalnum() or c in "+/")
    clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
    try:
        return base64.b64decode(clean + "=" * (-len(clean) % 4))
    except (binascii.Error, ValueError):
        return b""


class SignEngine:
    """Common part of the signing engines (``OstreeSign``)."""

    name = ""
    metadata_key = ""

    def set_sk(self, key: str) -> None:
        raise NotImplementedError

    def set_pk(self, key: str) -> None:
        raise NotImplementedError

    def add_pk(self, key: str) -> None:
        raise NotImplementedError

    def load_pk(self, filename: str | None = None, basedir: str | None = None) -> None:
        raise OstreeError("not implemented")

    def sign(self, data: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, data: bytes, signatures: list[bytes] | None) -> str:
        """The success message; raises OstreeError when no signature checks out."""
        raise NotImplementedError


class DummySign(SignEngine):
    name = "dummy"
    metadata_key = DUMMY_KEY

    def __init__(self) -> None:
        self.sk: str | None = None
        self.pk: str | None = None

    @staticmethod
    def _check_enabled() -> None:
        if os.environ.get("OSTREE_DUMMY_SIGN_ENABLED") != "1":
            raise OstreeError("dummy signature type is only for ostree testing")

    def set_sk(self, key: str) -> None:
        self._check_enabled()
        self.sk = key

    def set_pk(self, key: str) -> None:
        self.pk = key

    add_pk = set_pk

    def sign(self, data: bytes) -> bytes:
        self._check_enabled()
        assert self.sk is not None
        return self.sk.encode("utf-8")

    def verify(self, data: bytes, signatures: list[bytes] | None) -> str:
        self._check_enabled()
        if signatures is None:
            raise OstreeError("signature: dummy: commit have no signatures of my type")
        for s in signatures:
            text = s.split(b"\0", 1)[0].decode("utf-8", "replace")
            if self.pk is not None and text == self.pk:
                return "dummy: Signature verified"
        if signatures:
            raise OstreeError(f"signature: dummy: incorrect signatures found: {len(signatures)}")
        raise OstreeError("signature: dummy: no signatures")


class Ed25519Sign(SignEngine):
    name = "ed25519"
    metadata_key = ED25519_KEY

    def __init__(self) -> None:
        self.secret_key: bytes | None = None
        self.public_keys: list[bytes] = []
        self.revoked_keys: list[bytes] = []

    def set_sk(self, key: str) -> None:
        sk = _b64decode(key)
        if len(sk) != 64:
            raise OstreeError("Incorrect ed25519 secret key")
        self.secret_key = sk

    def set_pk(self, key: str) -> None:
        self.public_keys = []
        self.add_pk(key)

    def add_pk(self, key: str) -> None:
        pk = _b64decode(key)
        if len(pk) != 32:
            raise OstreeError("Incorrect ed25519 public key")
        if pk not in self.public_keys:
            self.public_keys.append(pk)

    def add_revoked(self, key: str) -> None:
        rk = _b64decode(key)
        if len(rk) != 32:
            raise OstreeError("Incorrect ed25519 revoked key")
        if rk not in self.revoked_keys:
            self.revoked_keys.append(rk)

    def _load_file(self, path: str, trusted: bool) -> None:
        if not os.path.isfile(path):
            raise OstreeError(f"File object '{path}' is not a regular file")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise OstreeError(f"Opening {path}: {e.strerror}") from None
        added = False
        for line in lines:
            try:
                (self.add_pk if trusted else self.add_revoked)(line)
                added = True
            except OstreeError:
                continue
        if not added:
            raise OstreeError(f"signature: ed25519: no valid keys in file '{path}'")

    def _load_dirs(self, basedir: str | None, trusted: bool) -> bool:
        files: list[str] = []
        for base in ([basedir] if basedir is not None else list(SYSTEM_KEY_DIRS)):
            name = os.path.join(base, "trusted.ed25519" if trusted else "revoked.ed25519")
            files.append(name)
            try:
                files += [os.path.join(name + ".d", e) for e in os.listdir(name + ".d")]
            except OSError:
                pass
        ok = False
        for path in files:
            try:
                self._load_file(path, trusted)
                ok = True
            except OstreeError:
                continue
        return ok

    def load_pk(self, filename: str | None = None, basedir: str | None = None) -> None:
        if filename is not None:
            self._load_file(filename, True)
            return
        if not self._load_dirs(basedir, True):
            raise OstreeError("signature: ed25519: no keys loaded")
        self._load_dirs(basedir, False)

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if self.secret_key is None:
            raise OstreeError("Not able to sign: secret key is not set")
        return Ed25519PrivateKey.from_private_bytes(self.secret_key[:32]).sign(data)

    def verify(self, data: bytes, signatures: list[bytes] | None) -> str:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if signatures is None:
            raise OstreeError("ed25519: commit have no signatures of my type")
        if not self.public_keys:
            self.load_pk()
        invalid: list[str] = []
        for sig in signatures:
            if len(sig) != 64:
                raise OstreeError(f"Invalid signature length of {len(sig)} bytes, expected 64")
            for pk in self.public_keys:
                if pk in self.revoked_keys:
                    continue
                try:
                    Ed25519PublicKey.from_public_bytes(pk).verify(sig, data)
                except InvalidSignature:
                    invalid.append(f"key '{pk.hex()}'")
                    continue
                return f"ed25519: Signature verified successfully with key '{pk.hex()}'"
        if invalid:
            if len(invalid) > 3:
                raise OstreeError(f"ed25519: Signature couldn't be verified; tried {len(invalid)} keys")
            raise OstreeError("ed25519: Signature couldn't be verified with: " + "; ".join(invalid))
        raise OstreeError("ed25519: no signatures found")


def get_engine(name: str) -> SignEngine:
    """``ostree_sign_get_by_name``."""
    if name == "ed25519":
        return Ed25519Sign()
    if name == "dummy":
        return DummySign()
    raise OstreeError("Requested signature type is not implemented")


def _signatures(md: Metadata | None, key: str) -> list[bytes] | None:
    for k, v in md or []:
        if k == key and v.type == "aay":
            return [bytes(x) for x in v.value]
    return None


def _read_commit(repo: Repo, checksum: str) -> tuple[bytes, Metadata | None]:
    try:
        data = repo.load_metadata(ObjectType.COMMIT, checksum)
    except OstreeError as e:
        raise OstreeError(f"Failed to read commit: {e}") from None
    try:
        md = repo.load_detached_metadata(checksum)
    except OstreeError as e:
        raise OstreeError(f"Failed to read detached metadata: {e}") from None
    return data, md


def commit_sign(engine: SignEngine, repo: Repo, checksum: str) -> None:
    """Append the engine's signature of a commit to its detached metadata (``ostree_sign_commit``)."""
    data, md = _read_commit(repo, checksum)
    sig = engine.sign(data)
    sigs = _signatures(md, engine.metadata_key) or []
    sigs.append(sig)
    out = [(k, v) for k, v in (md or []) if k != engine.metadata_key]
    out.append((engine.metadata_key, gvariant.Variant("aay", sigs)))
    repo.write_detached_metadata(checksum, sorted(out, key=lambda kv: kv[0]))


def commit_verify(engine: SignEngine, repo: Repo, checksum: str) -> str:
    """Check a commit's signatures of the engine's type (``ostree_sign_commit_verify``)."""
    data, md = _read_commit(repo, checksum)
    return engine.verify(data, _signatures(md, engine.metadata_key))


def sign_commit(repo: Repo, checksum: str, keys: list[str], sign_type: str = DEFAULT_TYPE) -> None:
    """``ostree commit --sign=KEY... --sign-type=TYPE``: sign with each secret key."""
    engine = get_engine(sign_type)
    for key in keys:
        engine.set_sk(key)
        commit_sign(engine, repo, checksum)


def verify_data(engine: SignEngine, data: bytes, metadata: Metadata | None) -> str:
    """Verify *data* against the engine's signatures in an ``a{sv}`` (e.g. fetched detached metadata)."""
    return engine.verify(data, _signatures(metadata, engine.metadata_key))


# -- remotes (ostree-repo-pull-verify.c) -----------------------------------------


def _load_remote_keys(engine: SignEngine, options: dict[str, str], required: bool) -> None:
    pk_file = options.get(f"verification-{engine.name}-file")
    pk_ascii = options.get(f"verification-{engine.name}-key")
    if pk_file is None and pk_ascii is None:
        if required:
            raise OstreeError(f"No keys found for required signapi type {engine.name}")
        return
    if pk_file is not None:
        try:
            engine.load_pk(filename=pk_file)
        except OstreeError:
            raise OstreeError(f"Failed loading '{engine.name}' keys from '{pk_file}") from None
    if pk_ascii is not None:
        try:
            if pk_file is not None:
                engine.add_pk(pk_ascii)
            else:
                engine.set_pk(pk_ascii)
        except OstreeError:
            raise OstreeError(f"Failed loading '{engine.name}' keys from inline `verification-key`") from None


def remote_verifiers(repo: Repo, remote: str, key: str = "sign-verify") -> list[SignEngine] | None:
    """The engines a remote's ``sign-verify`` (or ``sign-verify-summary``) option enables, keys loaded."""
    from pyostree.remote.remotes import get_remote

    options = get_remote(repo, remote).options
    raw = options.get(key)
    if raw is None or raw == "":
        return None
    if raw in ("true", "1", "false", "0"):
        if raw in ("false", "0"):
            return None
        engines: list[SignEngine] = [Ed25519Sign(), DummySign()]
        for e in engines:
            _load_remote_keys(e, options, False)
        return engines
    engines = []
    for name in [x.strip() for x in raw.replace(",", ";").split(";") if x.strip()]:
        e = get_engine(name)
        _load_remote_keys(e, options, True)
        engines.append(e)
    return engines


def verify_for_remote(verifiers: list[SignEngine], data: bytes, metadata: Metadata | None) -> str:
    """``_sign_verify_for_remote``: one good signature of any enabled type is enough."""
    found = False
    first_error: OstreeError | None = None
    n_invalid = 0
    for e in verifiers:
        sigs = _signatures(metadata, e.metadata_key)
        if sigs is None:
            continue
        found = True
        try:
            return e.verify(data, sigs)
        except OstreeError as err:
            n_invalid += 1
            first_error = first_error or err
    if not found:
        raise OstreeError("No signatures found")
    assert first_error is not None
    if n_invalid > 1:
        raise OstreeError(f"({n_invalid - 1} other invalid signatures){first_error}")
    raise first_error
