"""GPG and ed25519 commit/summary signatures, cross-checked against the real ostree."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyostree.remote import sign
from pyostree.store import gvariant
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo

GPGHOME_SRC = Path("/usr/libexec/installed-tests/libostree/gpghome")
KEY1 = "7FCA23D8472CDAFA"
KEY2 = "D8228CFECA950D41"

needs_gpg = pytest.mark.skipif(not GPGHOME_SRC.is_dir() or shutil.which("gpg") is None
                               or shutil.which("gpgv") is None,
                               reason="needs gpg, gpgv and ostree's test keys (ostree-tests)")


@pytest.fixture
def gpghome(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "gpghome"
    shutil.copytree(GPGHOME_SRC, home)
    home.chmod(0o700)
    yield home
    subprocess.run(["gpg-connect-agent", "--homedir", str(home), "killagent", "/bye"],
                   capture_output=True, check=False)


def _repo_with_commit(run: Callable[..., object], tmp_path: Path, name: str, tree: Path) -> Path:
    repo = tmp_path / name
    run("init", f"--repo={repo}", "--mode=archive")
    run("commit", f"--repo={repo}", "-b", "main", "-s", "s", f"--tree=dir={tree}")
    return repo


def _rev(repo: Path) -> str:
    return (repo / "refs/heads/main").read_text().strip()


# -- GPG ------------------------------------------------------------------------


@needs_gpg
def test_version_lists_gpgme(py: Callable[..., object]) -> None:
    out = py("--version").out  # type: ignore[attr-defined]
    assert "- gpgme" in out


@needs_gpg
def test_pyostree_gpg_signature_verifies_with_ostree(py, c, tmp_path, sample_tree, gpghome) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    py("commit", f"--repo={repo}", "-b", "main", "-s", "signed", f"--tree=dir={sample_tree}",
       f"--gpg-sign={KEY1}", f"--gpg-homedir={gpghome}")
    env = {"OSTREE_GPG_HOME": str(gpghome / "trusted")}
    real = c("show", f"--repo={repo}", "main", env=env).out
    assert "Found 1 signature" in real
    assert 'Good signature from "Ostree Tester <test@test.com>"' in real
    ours = py("show", f"--repo={repo}", "main", env=env).out
    assert ours.split("Found", 1)[1] == real.split("Found", 1)[1]
    # a second key; the same key again is refused
    py("gpg-sign", f"--repo={repo}", f"--gpg-homedir={gpghome}", "main", KEY2)
    r = py("gpg-sign", f"--repo={repo}", f"--gpg-homedir={gpghome}", "main", KEY1, check=False)
    assert r.rc == 1 and f"already signed with GPG key {KEY1}" in r.err
    assert "Found 2 signatures" in c("show", f"--repo={repo}", "main", env=env).out
    # pull-local --gpg-verify with the real ostree from a pyostree-signed repo
    dest = tmp_path / "dest"
    c("init", f"--repo={dest}", "--mode=archive")
    c("remote", "add", f"--repo={dest}", f"--gpg-import={gpghome / 'key1.asc'}", "origin", f"file://{repo}")
    c("pull-local", f"--repo={dest}", "--remote=origin", "--gpg-verify", str(repo), "main")
    # --delete
    out = py("gpg-sign", f"--repo={repo}", "--delete", "main", KEY1, KEY2).out
    assert out == "Signatures deleted: 2\n"
    assert "Found" not in c("show", f"--repo={repo}", "main", env=env).out


@needs_gpg
def test_ostree_gpg_signature_verifies_with_pyostree(py, c, tmp_path, sample_tree, gpghome) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    c("init", f"--repo={repo}", "--mode=archive")
    c("commit", f"--repo={repo}", "-b", "main", "-s", "signed", f"--tree=dir={sample_tree}",
      f"--gpg-sign={KEY1}", f"--gpg-homedir={gpghome}")
    c("summary", f"--repo={repo}", "-u", f"--gpg-sign={KEY1}", f"--gpg-homedir={gpghome}")
    dest = tmp_path / "dest"
    py("init", f"--repo={dest}", "--mode=archive")
    py("remote", "add", f"--repo={dest}", f"--gpg-import={gpghome / 'key1.asc'}", "origin", f"file://{repo}")
    py("pull-local", f"--repo={dest}", "--remote=origin", "--gpg-verify", "--gpg-verify-summary",
       str(repo), "main")
    # the remote's gpg-verify=true applies to `pull` too
    dest2 = tmp_path / "dest2"
    py("init", f"--repo={dest2}", "--mode=archive")
    py("remote", "add", f"--repo={dest2}", f"--gpg-import={gpghome / 'key1.asc'}", "origin", f"file://{repo}")
    py("pull", f"--repo={dest2}", "origin", "main")
    assert (dest2 / "refs/remotes/origin/main").read_text().strip() == _rev(repo)


@needs_gpg
def test_gpg_failures(py, c, tmp_path, sample_tree, gpghome) -> None:  # type: ignore[no-untyped-def]
    src = _repo_with_commit(py, tmp_path, "src", sample_tree)
    dest = tmp_path / "dest"
    py("init", f"--repo={dest}", "--mode=archive")
    py("remote", "add", f"--repo={dest}", f"--gpg-import={gpghome / 'key1.asc'}", "origin", f"file://{src}")
    # unsigned
    r = py("pull", f"--repo={dest}", "origin", "main", check=False)
    assert r.rc == 1 and "GPG verification enabled, but no signatures found" in r.err
    assert not (dest / "refs/remotes/origin/main").exists()
    # signed by a key the remote does not trust
    py("gpg-sign", f"--repo={src}", f"--gpg-homedir={gpghome}", "main", KEY2)
    r = py("pull-local", f"--repo={dest}", "--remote=origin", "--gpg-verify", str(src), "main", check=False)
    assert r.rc == 1 and f"key ID {KEY2}" in r.err and "public key not found" in r.err
    # a tampered signature
    py("gpg-sign", f"--repo={src}", "--delete", "main", KEY2)
    py("gpg-sign", f"--repo={src}", f"--gpg-homedir={gpghome}", "main", KEY1)
    py("pull-local", f"--repo={dest}", "--remote=origin", "--gpg-verify", str(src), "main")
    repo = Repo.open(str(src))
    csum = _rev(src)
    md = repo.load_detached_metadata(csum)
    assert md is not None
    sigs = [bytearray(s) for s in dict(md)["ostree.gpgsigs"].value]
    sigs[0][-5] ^= 0xFF
    repo.write_detached_metadata(csum, [("ostree.gpgsigs", gvariant.Variant("aay", [bytes(s) for s in sigs]))])
    dest3 = tmp_path / "dest3"
    py("init", f"--repo={dest3}", "--mode=archive")
    py("remote", "add", f"--repo={dest3}", f"--gpg-import={gpghome / 'key1.asc'}", "origin", f"file://{src}")
    r = py("pull", f"--repo={dest3}", "origin", "main", check=False)
    assert r.rc == 1 and "BAD signature" in r.err
    assert c("pull", f"--repo={dest3}", "origin", "main", check=False).rc != 0
    # no summary signature
    py("summary", f"--repo={src}", "-u")
    r = py("pull-local", f"--repo={dest}", "--remote=origin", "--gpg-verify-summary", str(src), "main",
           check=False)
    assert r.rc == 1 and "no summary signatures found" in r.err


@needs_gpg
def test_summary_signature_verifies_with_ostree(py, c, tmp_path, sample_tree, gpghome) -> None:  # type: ignore[no-untyped-def]
    repo = _repo_with_commit(py, tmp_path, "repo", sample_tree)
    py("summary", f"--repo={repo}", "-u", f"--gpg-sign={KEY1}", f"--gpg-homedir={gpghome}")
    assert (repo / "summary.sig").exists()
    dest = tmp_path / "dest"
    c("init", f"--repo={dest}", "--mode=archive")
    c("remote", "add", f"--repo={dest}", f"--gpg-import={gpghome / 'key1.asc'}", "origin", f"file://{repo}")
    c("pull-local", f"--repo={dest}", "--remote=origin", "--gpg-verify-summary", str(repo), "main")


# -- ed25519 / dummy ---------------------------------------------------------------


def _ed25519_keys() -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    k = Ed25519PrivateKey.generate()
    seed = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(seed + pub).decode(), base64.b64encode(pub).decode()


def test_ed25519_sign_and_verify(py, tmp_path, sample_tree) -> None:  # type: ignore[no-untyped-def]
    secret, public = _ed25519_keys()
    _other_secret, other_public = _ed25519_keys()
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    py("commit", f"--repo={repo}", "-b", "main", f"--tree=dir={sample_tree}", f"--sign={secret}")
    out = py("sign", f"--repo={repo}", "--verify", "main", public).out
    pk_hex = base64.b64decode(public).hex()
    assert out == f"ed25519: Signature verified successfully with key '{pk_hex}'\n"
    r = py("sign", f"--repo={repo}", "--verify", "main", other_public, check=False)
    assert r.rc == 1 and "No valid signatures found" in r.err
    # keys file and revocation through --keys-dir
    keys = tmp_path / "keys"
    (keys / "trusted.ed25519.d").mkdir(parents=True)
    (keys / "trusted.ed25519.d" / "k").write_text(f"{other_public}\n{public}\n")
    py("sign", f"--repo={repo}", "--verify", f"--keys-dir={keys}", "main")
    (keys / "revoked.ed25519").write_text(public + "\n")
    r = py("sign", f"--repo={repo}", "--verify", f"--keys-dir={keys}", "main", check=False)
    assert r.rc == 1 and "ed25519: Signature couldn't be verified with: key" in r.err
    # the signature is over the commit object bytes and sits under ostree.sign.ed25519
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    r2 = Repo.open(str(repo))
    csum = _rev(repo)
    md = dict(r2.load_detached_metadata(csum) or [])
    sigs = md[sign.ED25519_KEY].value
    assert md[sign.ED25519_KEY].type == "aay" and len(sigs) == 1 and len(sigs[0]) == 64
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(
        bytes(sigs[0]), r2.load_metadata(ObjectType.COMMIT, csum))
    # a tampered signature fails
    bad = bytearray(sigs[0])
    bad[0] ^= 1
    r2.write_detached_metadata(csum, [(sign.ED25519_KEY, gvariant.Variant("aay", [bytes(bad)]))])
    r = py("sign", f"--repo={repo}", "--verify", "main", public, check=False)
    assert r.rc == 1 and "No valid signatures found" in r.err


def test_ed25519_bad_keys(py, tmp_path, sample_tree) -> None:  # type: ignore[no-untyped-def]
    repo = _repo_with_commit(py, tmp_path, "repo", sample_tree)
    r = py("sign", f"--repo={repo}", "main", "bm90YWtleQ==", check=False)
    assert r.rc == 1 and r.err == "error: Incorrect ed25519 secret key\n"
    r = py("sign", f"--repo={repo}", "--sign-type=nope", "main", "x", check=False)
    assert r.rc == 1 and "Requested signature type is not implemented" in r.err


def test_dummy_engine_as_ostree(py, c, tmp_path, sample_tree) -> None:  # type: ignore[no-untyped-def]
    env = {"OSTREE_DUMMY_SIGN_ENABLED": "1"}
    repo = _repo_with_commit(py, tmp_path, "repo", sample_tree)
    py("sign", f"--repo={repo}", "--sign-type=dummy", "main", "dummysign", env=env)
    # the real ostree (no libsodium here, but the dummy engine) accepts our signature
    out = c("sign", f"--repo={repo}", "--sign-type=dummy", "--verify", "main", "dummysign", env=env).out
    assert out == "dummy: Signature verified\n"
    assert py("sign", f"--repo={repo}", "--sign-type=dummy", "--verify", "main", "dummysign", env=env).out == out
    r = py("sign", f"--repo={repo}", "--sign-type=dummy", "--verify", "main", "dummysign", check=False,
           env={"OSTREE_DUMMY_SIGN_ENABLED": "0"})
    assert r.rc == 1 and r.err == "error: No valid signatures found\n"
    assert os.path.exists(repo / "objects" / _rev(repo)[:2] / f"{_rev(repo)[2:]}.commitmeta")


@needs_gpg
def test_remote_gpg_list_keys_like_ostree(py, c, tmp_path, gpghome) -> None:  # type: ignore[no-untyped-def]
    """``remote gpg-list-keys [NAME]``: the remote's keyring, or the global keyrings of
    $OSTREE_GPG_HOME; text (incl. WKD update URLs) identical to the real ostree's."""
    empty = tmp_path / "empty"
    empty.mkdir()
    outs = {}
    for name, tool in (("py", py), ("c", c)):
        repo = tmp_path / f"repo-{name}"
        tool("init", f"--repo={repo}", "--mode=archive")
        tool("remote", "add", f"--repo={repo}", "R1", "http://example.com/repo")
        env = {"OSTREE_GPG_HOME": str(empty), "TZ": "UTC"}
        none = tool("remote", "gpg-list-keys", f"--repo={repo}", "R1", env=env).out
        tool("remote", "gpg-import", f"--repo={repo}", f"--keyring={gpghome}/key1.asc", "R1", env=env)
        remote = tool("remote", "gpg-list-keys", f"--repo={repo}", "R1", env=env).out
        glob = tool("remote", "gpg-list-keys", f"--repo={repo}",
                    env={**env, "OSTREE_GPG_HOME": str(gpghome / "trusted")}).out
        outs[name] = (none, remote, glob)
    assert outs["py"] == outs["c"]
    none, remote, glob = outs["py"]
    assert none == ""
    assert remote.startswith("Key: 5E65DE75AB1C501862D476347FCA23D8472CDAFA\n")
    assert "  Direct update URL: https://test.com/.well-known/openpgpkey/hu/" in remote
    assert glob.count("\nKey: ") + glob.startswith("Key: ") == 3
