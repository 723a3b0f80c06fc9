"""``static-delta generate``: bsdiff and rollsum for modified files, checked against the real ostree.

Deltas that pyostree generates are applied by the real ostree (offline and by
a pull through nginx) and are no bigger than the ones ostree generates for the
same commits; the bsdiff streams are byte for byte the ones ostree writes.
Signed deltas are verified across both tools.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Result, needs_ostree
from pyostree.remote import deltas
from pyostree.remote.deltas import bsdiff, rollsum
from pyostree.remote.deltas.apply import _bspatch as bspatch
from pyostree.remote.deltas.format import decode_part, parse_superblock, read_varuint
from pyostree.store.objects import ObjectType
from pyostree.store.repo import Repo

Run = Callable[..., Result]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# ---------------------------------------------------------------------------
# the algorithms on their own


def _bup_chunks(data: bytes) -> list[tuple[int, int]]:
    """bupsplit's rolling sum byte by byte (the reference for the vectorised one)."""
    out: list[tuple[int, int]] = []
    start, ended, n = 0, False, len(data)
    while start < n:
        remaining = n - start
        offset = 0
        if not ended:
            s1, s2, win, wofs = 64 * 31, 64 * 63 * 31, [0] * 64, 0
            for count in range(start, n):
                ch, drop = data[count], win[wofs]
                s1 = (s1 + ch - drop) & 0xFFFFFFFF
                s2 = (s2 + s1 - 64 * (drop + 31)) & 0xFFFFFFFF
                win[wofs] = ch
                wofs = (wofs + 1) % 64
                if s2 & 8191 == 8191:
                    offset = count + 1 - start
                    break
            if offset == 0:
                ended = True
                offset = min(32768, remaining)
            elif offset > 32768:
                offset = 32768
        else:
            offset = min(32768, remaining)
        out.append((start, offset))
        start += offset
    return out


@pytest.mark.parametrize("seed", range(6))
def test_rollsum_chunks_match_bupsplit(seed: int) -> None:
    rng = random.Random(seed)
    n = [0, 1, 63, 64, 5000, 120_000][seed]
    alphabet = 256 if seed % 2 else 3  # few symbols: long runs, cuts right after chunk starts
    data = bytes(rng.randrange(alphabet) for _ in range(n))
    assert rollsum.chunks(data) == _bup_chunks(data)
    zeros = bytes(70_000) + data  # no cut point at all: fixed 32 KiB pieces
    assert rollsum.chunks(zeros) == _bup_chunks(zeros)


def test_rollsum_matches_shifted_and_appended_data() -> None:
    rng = random.Random(1)
    old = bytes(rng.getrandbits(8) for _ in range(200_000))
    m = rollsum.compute_matches(old, old + b"tail" * 100)
    assert m.ratio >= 90 and m.ostree_ratio == m.ratio  # shared prefix: ostree counts them too
    shifted = rollsum.compute_matches(old, b"aheader\n" + old)
    assert shifted.ratio >= 90
    assert shifted.ostree_ratio == 0  # ostree's CRC covers the file start, which differs
    for length, to_start, from_start in shifted.matches:
        assert old[from_start:from_start + length] == (b"aheader\n" + old)[to_start:to_start + length]


def test_suffix_array_is_sorted_suffixes() -> None:
    rng = random.Random(2)
    for _ in range(200):
        n = rng.randrange(0, 80)
        alphabet = rng.choice([b"a", b"ab", b"\0\1", bytes(range(256))])
        data = bytes(rng.choice(alphabet) for _ in range(n))
        assert bsdiff.suffix_array(data).tolist() == sorted(range(n + 1), key=lambda i: data[i:])


def test_bsdiff_round_trips_through_bspatch() -> None:
    rng = random.Random(3)
    for _ in range(200):
        alphabet = rng.choice([b"ab", bytes(range(256))])
        old = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        new = bytearray(old)
        for _ in range(rng.randrange(0, 6)):
            p = rng.randrange(len(new) + 1)
            if rng.random() < 0.5:
                new[p:p] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 30)))
            else:
                del new[p:p + rng.randrange(1, 30)]
        assert bspatch(old, len(new), bsdiff.diff(old, bytes(new))) == bytes(new)


# ---------------------------------------------------------------------------
# against the real ostree


def _binary_like(rng: random.Random, n: int) -> bytes:
    """Data with the repeats of a binary: a pool of 'instructions', strings, zero padding."""
    pool = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(2, 9))) for _ in range(400)]
    out = bytearray()
    while len(out) < n:
        r = rng.random()
        if r < 0.9:
            out += rng.choice(pool)
        elif r < 0.97:
            out += b"/usr/lib/%d/%s\0" % (rng.randrange(1000), bytes(rng.choice(b"abcdefgh") for _ in range(8)))
        else:
            out += bytes(rng.randrange(16, 200))
    return bytes(out[:n])


def _edit(rng: random.Random, data: bytes, edits: int) -> bytes:
    out = bytearray(data)
    for _ in range(edits):
        p = rng.randrange(len(out))
        if rng.random() < 0.5:
            out[p:p + 4] = rng.getrandbits(32).to_bytes(4, "little")
        else:
            out[p:p] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))
    return bytes(out)


def _update_repo(c: Run, tmp: Path, mode: str = "archive") -> tuple[Path, str, str]:
    """Two commits of a tree whose files change as OS updates change them."""
    repo = tmp / "repo"
    c("init", f"--repo={repo}", f"--mode={mode}")
    rng = random.Random(11)
    t = tmp / "t"
    (t / "bin").mkdir(parents=True)
    (t / "lib").mkdir()
    files = {
        "bin/tool": _binary_like(rng, 400_000),  # scattered small edits
        "lib/libfoo.so.1": _binary_like(rng, 250_000),  # data appended
        "lib/data.txt": b"".join(b"line %d of the data file\n" % i for i in range(20_000)),  # a line changed
        "bin/prepended": _binary_like(rng, 120_000),  # a header put in front (test-delta.sh)
        "lib/archive.xz": bytes(rng.getrandbits(8) for _ in range(50_000)),  # never diffed (.xz)
        "small": b"tiny\n",
    }
    for name, data in files.items():
        (t / name).write_bytes(data)
    (t / "link").symlink_to("small")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={t}", "-s", "one")
    old = c(f"--repo={repo}", "rev-parse", "main").out.strip()
    (t / "bin/tool").write_bytes(_edit(rng, files["bin/tool"], 60))
    (t / "lib/libfoo.so.1").write_bytes(files["lib/libfoo.so.1"] + _binary_like(rng, 30_000))
    (t / "lib/data.txt").write_bytes(files["lib/data.txt"].replace(b"line 777 of", b"line 777 (changed) of"))
    (t / "bin/prepended").write_bytes(b"aheader\n" + files["bin/prepended"])
    (t / "lib/archive.xz").write_bytes(bytes(rng.getrandbits(8) for _ in range(50_000)))
    (t / "new-file").write_text("added\n")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={t}", "-s", "two")
    new = c(f"--repo={repo}", "rev-parse", "main").out.strip()
    return repo, old, new


def _delta_size(repo: Path, old: str | None, new: str) -> int:
    d = repo / deltas.delta_relpath(old, new)
    return sum(p.stat().st_size for p in d.iterdir())


def _bspatch_streams(repo: Path, old: str, new: str) -> dict[str, tuple[str, bytes]]:
    """target checksum -> (source checksum, bsdiff stream) of each B operation in a delta."""
    d = repo / deltas.delta_relpath(old, new)
    sb = parse_superblock((d / "superblock").read_bytes())
    out: dict[str, tuple[str, bytes]] = {}
    for i, ph in enumerate(sb.parts):
        payload = decode_part((d / str(i)).read_bytes(), ph.checksum, f"part {i}")
        ops, blob = payload.ops, payload.blob
        objs = iter(ph.objects)
        pos, source, pending = 0, "", b""
        nargs = {ord("o"): 3, ord("w"): 2, ord("R"): 0}
        while pos < len(ops):
            op = ops[pos]
            pos += 1
            if op == ord("S"):
                csum, t = next(objs)
                for _ in range(4 if t is ObjectType.FILE else 2):
                    _, pos = read_varuint(ops, pos)
            elif op == ord("r"):
                off, pos = read_varuint(ops, pos)
                source = blob[off:off + 32].hex()
            elif op == ord("B"):
                off, pos = read_varuint(ops, pos)
                length, pos = read_varuint(ops, pos)
                pending = blob[off:off + length]
            elif op == ord("c"):
                csum, _t = next(objs)
                if pending:
                    out[csum] = (source, pending)
                pending = b""
            else:
                for _ in range(nargs[op]):
                    _, pos = read_varuint(ops, pos)
    return out


@needs_ostree
def test_bsdiff_streams_identical_to_ostree(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _update_repo(c, tmp_path)
    c(f"--repo={repo}", "static-delta", "generate", "main")
    theirs = _bspatch_streams(repo, old, new)
    assert len(theirs) >= 2  # ostree bsdiffs the files without a common prefix
    r = Repo.open(str(repo))
    for target, (source, stream) in theirs.items():
        assert bsdiff.diff(r.load_file(source).read(), r.load_file(target).read()) == stream
    py(f"--repo={repo}", "static-delta", "generate", "main")
    ours = _bspatch_streams(repo, old, new)
    for target, (source, stream) in theirs.items():
        assert ours[target] == (source, stream)


@needs_ostree
@pytest.mark.parametrize("extra", [[], ["--disable-bsdiff"], ["--inline"], ["--swap-endianness"],
                                   ["--max-bsdiff-size=0", "--max-chunk-size=1"]])
def test_no_bigger_than_ostree_and_applied_by_ostree(py: Run, c: Run, tmp_path: Path, extra: list[str]) -> None:
    repo, old, new = _update_repo(c, tmp_path)
    rc = c(f"--repo={repo}", "static-delta", "generate", *extra, "main")
    theirs = _delta_size(repo, old, new)
    shutil.rmtree(repo / deltas.delta_relpath(old, new))
    r = py(f"--repo={repo}", "static-delta", "generate", *extra, "main")
    ours = _delta_size(repo, old, new)
    assert ours <= theirs, (ours, theirs)
    if not extra or extra == ["--inline"]:
        assert "bsdiff=4 objects" in r.err
        assert ours < theirs  # ostree sends the appended file by rollsum: whole chunks
    if "--disable-bsdiff" in extra or "--max-bsdiff-size=0" in extra:
        assert "bsdiff=0 objects" in r.err
        # rollsum for the files ostree rollsums (those sharing a prefix)
        n_rollsum = rc.err.split("rollsum=")[1].split(" ")[0]
        assert int(n_rollsum) >= 1
        assert f"rollsum={n_rollsum} objects" in r.err
    dst = tmp_path / "dst"
    c("init", f"--repo={dst}", "--mode=bare-user")
    c(f"--repo={dst}", "pull-local", repo, old)
    c(f"--repo={dst}", "static-delta", "apply-offline", repo / deltas.delta_relpath(old, new))
    assert "no errors found" in c(f"--repo={dst}", "fsck").out
    assert c(f"--repo={dst}", "rev-parse", new).out.strip() == new
    c(f"--repo={dst}", "checkout", "-U", new, tmp_path / "co")
    assert (tmp_path / "co/bin/prepended").read_bytes().startswith(b"aheader\n")
    for name in ("bin/tool", "lib/libfoo.so.1", "lib/data.txt", "bin/prepended"):
        assert (tmp_path / "co" / name).read_bytes() == (tmp_path / "t" / name).read_bytes()


@needs_ostree
def test_pyostree_applies_its_own_rollsum_and_bsdiff(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _update_repo(c, tmp_path)
    for extra in ([], ["--disable-bsdiff"]):
        py(f"--repo={repo}", "static-delta", "generate", *extra, "main")
        dst = tmp_path / f"dst{len(extra)}"
        py("init", f"--repo={dst}", "--mode=archive")
        py(f"--repo={dst}", "pull-local", repo, old)
        py(f"--repo={dst}", "static-delta", "apply-offline", repo / deltas.delta_relpath(old, new))
        assert "no errors found" in c(f"--repo={dst}", "fsck").out


# ---------------------------------------------------------------------------
# served by nginx, pulled by the real ostree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    procs: list[subprocess.Popen[bytes]] = []

    def serve(root: Path) -> str:
        port = _free_port()
        conf = tmp_path / f"nginx-{port}.conf"
        conf.write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {tmp_path}/nginx-{port}.pid;
error_log {tmp_path}/nginx-{port}.err;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/nginx-body;
    proxy_temp_path {tmp_path}/nginx-proxy;
    fastcgi_temp_path {tmp_path}/nginx-fcgi;
    uwsgi_temp_path {tmp_path}/nginx-uwsgi;
    scgi_temp_path {tmp_path}/nginx-scgi;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
        p = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(tmp_path / f"nginx-{port}.err")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                if p.poll() is not None:
                    raise RuntimeError((tmp_path / f"nginx-{port}.err").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    yield serve
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@needs_ostree
@pytest.mark.skipif(not os.path.exists(NGINX), reason="needs nginx (apt-get install nginx-light)")
def test_ostree_pulls_through_our_delta_from_nginx(py: Run, c: Run, tmp_path: Path,
                                                   nginx: Callable[[Path], str]) -> None:
    repo, old, new = _update_repo(c, tmp_path)
    # unsigned: ostree 2022.7's pull reads a signed superblock as an unsigned one
    # (its own signed deltas too), so signed deltas are for apply-offline
    py(f"--repo={repo}", "static-delta", "generate", "main")
    py(f"--repo={repo}", "summary", "-u")
    url = nginx(repo)
    dst = tmp_path / "client"
    c("init", f"--repo={dst}", "--mode=bare-user")
    c(f"--repo={dst}", "remote", "add", "--no-gpg-verify", "origin", url)
    c(f"--repo={dst}", "pull", "origin", f"main@{old}")
    out = c(f"--repo={dst}", "pull", "--require-static-deltas", "--dry-run", "origin", "main").out
    assert "Delta update: 0/1 parts" in out
    c(f"--repo={dst}", "pull", "--require-static-deltas", "origin", "main")
    assert c(f"--repo={dst}", "rev-parse", "origin:main").out.strip() == new
    assert "no errors found" in c(f"--repo={dst}", "fsck").out


# ---------------------------------------------------------------------------
# signatures


DUMMY_ENV = {**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1"}


@needs_ostree
def test_signed_deltas_verified_across_tools(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _update_repo(c, tmp_path)
    name = f"{old}-{new}"
    sign = ["--sign-type=dummy", "--sign=dummysign"]
    for gen, ver in ((py, c), (c, py), (py, py)):
        for inline in ([], ["--inline"]):
            gen(f"--repo={repo}", "static-delta", "generate", *inline, *sign, "main", env=DUMMY_ENV)
            ok = ver(f"--repo={repo}", "static-delta", "verify", "--sign-type=dummy", name, "dummysign",
                     env=DUMMY_ENV)
            assert "Verification OK" in ok.out
            bad = ver(f"--repo={repo}", "static-delta", "verify", "--sign-type=dummy", name, "badsign",
                      env=DUMMY_ENV, check=False)
            assert bad.rc == 1 and "Verification fails" in bad.out
    py(f"--repo={repo}", "static-delta", "generate", "main")
    r = py(f"--repo={repo}", "static-delta", "verify", "--sign-type=dummy", name, "dummysign",
           env=DUMMY_ENV, check=False)
    assert r.rc == 1 and "Verification fails" in r.out and "error: no signatures in static-delta" in r.err


def _ed25519_keys() -> tuple[str, str]:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed + pub).decode(), base64.b64encode(pub).decode()


@needs_ostree
def test_ed25519_signed_delta_apply_offline_with_keys(py: Run, c: Run, tmp_path: Path) -> None:
    repo, old, new = _update_repo(c, tmp_path)
    secret, public = _ed25519_keys()
    _other_secret, wrong = _ed25519_keys()
    keys = tmp_path / "secret.ed25519"
    keys.write_text(secret + "\n")
    py(f"--repo={repo}", "static-delta", "generate", "--sign-type=ed25519", f"--keys-file={keys}", "main")
    name = f"{old}-{new}"
    assert "Verification OK" in py(f"--repo={repo}", "static-delta", "verify", name, wrong, public).out
    pubfile = tmp_path / "public.ed25519"
    pubfile.write_text(wrong + "\n")
    r = py(f"--repo={repo}", "static-delta", "verify", name, f"--keys-file={pubfile}", check=False)
    assert r.rc == 1 and "Verification fails" in r.out
    path = repo / deltas.delta_relpath(old, new)
    dst = tmp_path / "dst"
    py("init", f"--repo={dst}", "--mode=bare-user")
    py(f"--repo={dst}", "pull-local", repo, old)
    py(f"--repo={dst}", "config", "set", "core.sign-verify-deltas", "true")
    r = py(f"--repo={dst}", "static-delta", "apply-offline", path, wrong, check=False)
    assert r.rc == 1 and "ed25519: Signature couldn't be verified" in r.err
    r = py(f"--repo={dst}", "static-delta", "apply-offline", path, "--keys-dir", tmp_path / "nokeys", check=False)
    assert r.rc == 1
    assert not Repo.open(str(dst)).has_object(ObjectType.COMMIT, new)  # nothing applied
    py(f"--repo={dst}", "static-delta", "apply-offline", path, public)
    assert "no errors found" in c(f"--repo={dst}", "fsck").out
    # the real ostree (built without ed25519 here) applies the signed delta without checking
    dst2 = tmp_path / "dst2"
    c("init", f"--repo={dst2}", "--mode=bare-user")
    c(f"--repo={dst2}", "pull-local", repo, old)
    c(f"--repo={dst2}", "static-delta", "apply-offline", path)
    assert "no errors found" in c(f"--repo={dst2}", "fsck").out
