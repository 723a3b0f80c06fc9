"""``container import`` from every transport skopeo knows, through skopeo itself.

A real registry (Debian's ``docker-registry``) is started on a loopback port and
marked insecure in a ``registries.conf`` named by ``CONTAINERS_REGISTRIES_CONF``;
containers-storage is a private ``[overlay@ROOT+RUNROOT]`` store; multi-image
docker archives come from ``podman save -m``.  Every import must give the same
flattened tree as the ``oci:`` import of the same image.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_root
from pyostree.store.repo import Repo
from test_container import _base_layers, _sha, build_layout, entry, make_tar

TOOLS = all(shutil.which(t) for t in ("skopeo", "podman", "docker-registry"))
needs_tools = pytest.mark.skipif(not TOOLS, reason="needs skopeo, podman and docker-registry")
pytestmark = [needs_root, needs_tools]


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    full = dict(os.environ)
    full.update(env or {})
    cp = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=full, timeout=300)
    if cp.returncode != 0:
        raise AssertionError(f"{args} failed: {cp.stdout}{cp.stderr}")
    return cp.stdout


REGISTRY_LOG: dict[str, Path] = {}


def _blob_gets(host: str, digest: str) -> int:
    """GET requests the registry answered for blob *digest* (its info-level log)."""
    return sum(1 for ln in REGISTRY_LOG[host].read_text().splitlines()
               if "response completed" in ln and 'http.request.method=GET' in ln and f"blobs/{digest}" in ln)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HOST:PORT of a real docker-registry on 127.0.0.1, insecure through CONTAINERS_REGISTRIES_CONF."""
    d = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (d / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    host = f"127.0.0.1:{port}"
    REGISTRY_LOG[host] = d / "log"
    (d / "registries.conf").write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    log = open(d / "log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")], stdout=log, stderr=log)
    old = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(d / "registries.conf")
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://{host}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"docker-registry did not start: {(d / 'log').read_text()}")
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        if old is None:
            os.environ.pop("CONTAINERS_REGISTRIES_CONF", None)
        else:
            os.environ["CONTAINERS_REGISTRIES_CONF"] = old


def _unmount_storage(root: Path) -> None:
    """containers-storage leaves ROOT/overlay bind-mounted onto itself."""
    subprocess.run(["umount", str(root / "overlay")], capture_output=True, check=False)


def _root_tree(repo: Repo, ref: str) -> tuple[str, str]:
    c = repo.load_commit(repo.resolve_rev(ref) or "")
    return c.root_contents, c.root_meta


def _image(tmp_path: Path) -> Path:
    l0, l1, _ = _base_layers()
    build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip")], tag="t")
    return tmp_path / "img"


def test_registry_dir_and_containers_storage(tmp_path: Path, py, registry: str) -> None:
    img = _image(tmp_path)
    py("init", f"--repo={tmp_path}/r", "--mode=bare")
    repo = Repo.open(str(tmp_path / "r"))
    py(f"--repo={tmp_path}/r", "container", "import", f"oci:{img}:t", "ref-oci")
    want = _root_tree(repo, "ref-oci")

    _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{img}:t", f"docker://{registry}/test/img:v1")
    src = f"docker://{registry}/test/img:v1"
    r = py(f"--repo={tmp_path}/r", "container", "import", src)
    assert "(0 new, 2 already present)" in r.out  # same diff_ids: nothing is parsed again
    ref = "ostree/container/image/docker_3a_2f_2f127.0.0.1_3a" + registry.split(":")[1] + \
        "_2ftest_2fimg_3av1"
    assert repo.resolve_rev(ref) == r.out.split()[-1]
    assert _root_tree(repo, ref) == want
    # a second import of an unchanged image copies nothing
    assert "up to date" in py(f"--repo={tmp_path}/r", "container", "import", src).out
    # nothing left behind in the repository's tmp/
    assert not [n for n in os.listdir(tmp_path / "r/tmp") if n.startswith("container-fetch-")]

    _run("skopeo", "copy", "--quiet", f"oci:{img}:t", f"dir:{tmp_path}/dirimg")
    py(f"--repo={tmp_path}/r", "container", "import", f"dir:{tmp_path}/dirimg", "ref-dir")
    assert _root_tree(repo, "ref-dir") == want

    store = f"[overlay@{tmp_path}/storage+{tmp_path}/run]"
    try:
        _run("skopeo", "copy", "--quiet", f"oci:{img}:t", f"containers-storage:{store}localhost/cs:1")
        py(f"--repo={tmp_path}/r", "container", "import", f"containers-storage:{store}localhost/cs:1", "ref-cs")
        assert _root_tree(repo, "ref-cs") == want
    finally:
        _unmount_storage(tmp_path / "storage")


def test_docker_archive_ref_and_index(tmp_path: Path, py) -> None:
    img = _image(tmp_path)
    other = make_tar([entry("other/", tarfile.DIRTYPE, mode=0o755), entry("other/f", data=b"second image\n")])
    build_layout(tmp_path / "img", [(other, "gzip")], tag="o")
    py("init", f"--repo={tmp_path}/r", "--mode=bare")
    repo = Repo.open(str(tmp_path / "r"))
    py(f"--repo={tmp_path}/r", "container", "import", f"oci:{img}:t", "want-t")
    py(f"--repo={tmp_path}/r", "container", "import", f"oci:{img}:o", "want-o")
    run = tempfile.mkdtemp(prefix="pyo-run-")  # podman wants a runroot under 50 characters
    pod = ["podman", "--root", f"{tmp_path}/storage", "--runroot", run, "--storage-driver", "overlay"]
    store = f"[overlay@{tmp_path}/storage+{run}]"
    try:
        _run("skopeo", "copy", "--quiet", f"oci:{img}:t", f"containers-storage:{store}localhost/one:1")
        _run("skopeo", "copy", "--quiet", f"oci:{img}:o", f"containers-storage:{store}localhost/two:2")
        _run(*pod, "save", "-m", "-o", f"{tmp_path}/multi.tar", "localhost/one:1", "localhost/two:2")
    finally:
        _unmount_storage(tmp_path / "storage")
        shutil.rmtree(run, ignore_errors=True)
    arch = tmp_path / "multi.tar"
    py(f"--repo={tmp_path}/r", "container", "import", f"docker-archive:{arch}:localhost/two:2", "by-name")
    assert _root_tree(repo, "by-name") == _root_tree(repo, "want-o")
    py(f"--repo={tmp_path}/r", "container", "import", f"docker-archive:{arch}:@0", "by-index")
    assert _root_tree(repo, "by-index") == _root_tree(repo, "want-t")
    # the native reader refuses the multi-image archive and says how to pick one
    r = py(f"--repo={tmp_path}/r", "container", "import", f"docker-archive:{arch}", "x", check=False)
    assert r.rc == 1 and "holds 2 images" in r.err


def _multi_arch_layout(root: Path) -> dict[str, Any]:
    """An OCI layout whose tag names an image index with amd64, arm64/v8 and arm/v7 images."""
    plats = [("amd64", ""), ("arm64", "v8"), ("arm", "v7")]
    manifests = []
    for i, (arch, variant) in enumerate(plats):
        tar = make_tar([entry("etc/", tarfile.DIRTYPE, mode=0o755),
                        entry("etc/arch", data=f"{arch}{variant}\n".encode())])
        info = build_layout(root, [(tar, "gzip")], tag=f"tmp{i}")
        cfg_path = root / "blobs/sha256" / info["config_digest"][7:]
        cfg = json.loads(cfg_path.read_bytes())
        cfg["architecture"] = arch
        if variant:
            cfg["variant"] = variant
        cb = json.dumps(cfg).encode()
        (root / "blobs/sha256" / _sha(cb)[7:]).write_bytes(cb)
        m = info["manifest"]
        m["config"] = {**m["config"], "digest": _sha(cb), "size": len(cb)}
        mb = json.dumps(m).encode()
        (root / "blobs/sha256" / _sha(mb)[7:]).write_bytes(mb)
        p = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _sha(mb),
                          "size": len(mb), "platform": p})
    ib = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": manifests}).encode()
    (root / "blobs/sha256" / _sha(ib)[7:]).write_bytes(ib)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": _sha(ib), "size": len(ib),
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    return {"manifests": manifests}


def _cat(py: Any, repo: Path, ref: str) -> str:
    return str(py(f"--repo={repo}", "cat", ref, "/etc/arch").out)


def test_platforms(tmp_path: Path, py, registry: str) -> None:
    _multi_arch_layout(tmp_path / "multi")
    py("init", f"--repo={tmp_path}/r", "--mode=bare")
    r = tmp_path / "r"
    for src in (f"oci:{tmp_path}/multi:multi", f"docker://{registry}/test/multi:1"):
        if src.startswith("docker:"):
            _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--multi-arch=all", f"oci:{tmp_path}/multi:multi", src)
        py(f"--repo={r}", "container", "import", src, "host")
        assert _cat(py, r, "host") == "amd64\n"
        py(f"--repo={r}", "container", "import", "--platform=linux/arm64", src, "arm64")
        assert _cat(py, r, "arm64") == "arm64v8\n"
        py(f"--repo={r}", "container", "import", "--platform", "linux/arm/v7", src, "armv7")
        assert _cat(py, r, "armv7") == "armv7\n"
        res = py(f"--repo={r}", "container", "import", "--platform=linux/s390x", src, "none", check=False)
        assert res.rc == 1
        assert "No image for platform linux/s390x" in res.err
        assert "(it has: linux/amd64, linux/arm64/v8, linux/arm/v7)" in res.err
        assert "none" not in py(f"--repo={r}", "refs").out.split()
        res = py(f"--repo={r}", "container", "import", "--platform=linux", src, "none", check=False)
        assert res.rc == 1 and "expected OS/ARCH[/VARIANT]" in res.err


def test_registry_update_fetches_only_new_layers(tmp_path: Path, py, registry: str) -> None:
    l0, l1, l2 = _base_layers()
    v1 = build_layout(tmp_path / "img", [(l0, "gzip"), (l1, "gzip")], tag="v1")
    build_layout(tmp_path / "img", [(l0, "gzip"), (l2, "gzip")], tag="v2")
    r = tmp_path / "r"
    py("init", f"--repo={r}", "--mode=bare")
    py(f"--repo={r}", "container", "import", f"oci:{tmp_path}/img:v2", "want")
    r2 = tmp_path / "r2"
    py("init", f"--repo={r2}", "--mode=bare")
    src = f"docker://{registry}/test/upd:latest"
    push = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    _run(*push, f"oci:{tmp_path}/img:v1", src)
    assert "(2 new, 0 already present)" in py(f"--repo={r2}", "container", "import", src, "app").out
    assert "up to date" in py(f"--repo={r2}", "container", "import", "--check", "app").out
    _run(*push, f"oci:{tmp_path}/img:v2", src)  # a new version under the same tag
    out = py(f"--repo={r2}", "container", "import", "--check", "app").out
    assert "newer manifest" in out
    base_blob = v1["manifest"]["layers"][0]["digest"]
    gets = _blob_gets(registry, base_blob)
    assert gets >= 1  # fetched once by the first import
    assert "(1 new, 1 already present)" in py(f"--repo={r2}", "container", "import", src, "app").out
    assert _blob_gets(registry, base_blob) == gets  # the layer the repo had was not fetched again
    a = Repo.open(str(r))
    b = Repo.open(str(r2))
    ca, cb = a.load_commit(a.resolve_rev("want") or ""), b.load_commit(b.resolve_rev("app") or "")
    assert (ca.root_contents, ca.root_meta) == (cb.root_contents, cb.root_meta)
    assert "up to date" in py(f"--repo={r2}", "container", "import", "--check", "app").out
