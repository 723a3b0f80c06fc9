"""Every transport skopeo knows, through skopeo itself.

``oci:``, ``oci-archive:`` and ``docker-archive:FILE`` (an existing file, one
image) are read natively by :mod:`pyostree.oci.source`.  Anything else
(``docker://``, ``containers-storage:[DRIVER@ROOT+RUNROOT]NAME``, ``dir:``,
``docker-archive:FILE:REF`` or ``:@N``, ``docker-daemon:``...) is copied by
``skopeo copy`` into a temporary OCI layout under the repository's ``tmp/``
(removed when the import ends), which is then read like ``oci:``.  skopeo
honours ``containers-registries.conf`` (``CONTAINERS_REGISTRIES_CONF``),
``containers-auth.json`` (``REGISTRY_AUTH_FILE``) and ``policy.json`` as it
always does.

Before the copy, ``skopeo inspect --raw`` reads the source's manifest: an image
index is resolved here (host platform, or ``--platform``) so that a missing
platform is an error listing the ones the index has, and a registry image is
then copied by digest, so the manifest recorded is the one copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from pyostree.errors import OstreeError
from pyostree.oci.source import (
    MEDIA_INDEX,
    ImageSource,
    Platform,
    open_image,
    select_platform,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

NATIVE = ("oci", "oci-archive")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
INSPECT_TIMEOUT = 300
COPY_TIMEOUT = 6 * 3600

__all__ = ["SourceInfo", "inspect_source", "is_native", "open_any", "skopeo_copy"]


def is_native(spec: str) -> bool:
    transport, _, rest = spec.partition(":")
    if transport in NATIVE:
        return True
    return transport == "docker-archive" and os.path.isfile(rest)


def _skopeo() -> str:
    exe = shutil.which("skopeo")
    if exe is None:
        raise OstreeError("skopeo is needed for this image transport but is not installed")
    return exe


def _global_args() -> list[str]:
    """Honour ``CONTAINERS_REGISTRIES_CONF`` also with skopeo builds that only know the flag.

    skopeo 1.9 (Debian 12) reads the variable through neither containers/image nor
    its own options, but has the (hidden) ``--registries-conf`` flag that newer
    releases still accept.
    """
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    return ["--registries-conf", conf] if conf else []


def run_skopeo(args: list[str], what: str, timeout: int, *, capture: bool = True) -> bytes:
    try:
        p = subprocess.run([_skopeo(), *_global_args(), *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE if capture else 2, stderr=subprocess.PIPE,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OstreeError(f"{what}: skopeo did not finish in {timeout} s") from None
    except OSError as e:
        raise OstreeError(f"{what}: running skopeo: {e.strerror}") from None
    if p.returncode != 0:
        msg = p.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = msg[-1] if msg else f"exit status {p.returncode}"
        if 'msg="' in detail:  # logrus: time="..." level=fatal msg="..."
            detail = detail.split('msg="', 1)[1].removesuffix('"').replace('\\"', '"')
        raise OstreeError(f"{what}: {detail}")
    return p.stdout if capture and p.stdout is not None else b""


def _docker_name(rest: str) -> str:
    """``//host/name:tag`` or ``//host/name@sha256:...`` -> ``//host/name``."""
    name = rest.split("@", 1)[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1:]:
        name = name[:slash + 1] + name[slash + 1:].split(":", 1)[0]
    return name


class SourceInfo:
    """What ``skopeo inspect --raw`` says of a source, with the platform resolved."""

    def __init__(self, spec: str, raw: bytes, digest: str, copy_spec: str, platform: Platform | None) -> None:
        self.spec = spec
        self.raw = raw              # the top-level manifest (or index) as served
        self.digest = digest        # digest of the image's own manifest (after index resolution)
        self.copy_spec = copy_spec  # what skopeo copies (pinned by digest for registries)
        self.platform = platform


def inspect_source(spec: str, platform: Platform | None = None) -> SourceInfo:
    raw = run_skopeo(["--command-timeout", f"{INSPECT_TIMEOUT}s", "inspect", "--raw", spec],
                     f"Inspecting {spec}", INSPECT_TIMEOUT + 30)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        doc = json.loads(raw)
    except ValueError:
        raise OstreeError(f"{spec}: the manifest is not JSON") from None
    copy_spec = spec
    chosen: Platform | None = platform
    if isinstance(doc, dict) and (doc.get("mediaType") in MEDIA_INDEX
                                  or ("manifests" in doc and "layers" not in doc)):
        desc, chosen = select_platform(doc, platform, spec)
        assert desc.digest is not None
        digest = desc.digest
        transport, _, rest = spec.partition(":")
        if transport == "docker":
            copy_spec = f"docker:{_docker_name(rest)}@{digest}"
    return SourceInfo(spec, raw, digest, copy_spec, chosen)


def skopeo_copy(src: str, dest: str, *, platform: Platform | None = None, quiet: bool = True,
                timeout: int = COPY_TIMEOUT) -> None:
    args = ["--command-timeout", f"{timeout}s"]
    if platform is not None:
        args += ["--override-os", platform.os, "--override-arch", platform.arch]
        if platform.variant:
            args += ["--override-variant", platform.variant]
    args += ["copy", "--remove-signatures"]
    if quiet:
        args.append("--quiet")
    args += [src, dest]
    run_skopeo(args, f"Copying {src} to {dest}", timeout + 60, capture=quiet)


def _prefill_known_layers(info: SourceInfo, layout: str, have: Callable[[str], bool]) -> int:
    """Let skopeo skip the registry layers the repository already has; returns how many.

    skopeo copy does not fetch a blob the destination OCI layout already has (it
    checks that the file exists).  For every layer whose diff_id (from the
    config, ``skopeo inspect --config --raw``) is already a layer commit, an empty
    placeholder is put at its blob path: the importer never opens the blob of a
    layer it has, so the placeholder is never read.  Everything else (manifest,
    config, new layers) is fetched and verified as usual.
    """
    try:
        raw = info.raw
        doc = json.loads(raw)
        if isinstance(doc, dict) and "manifests" in doc and "layers" not in doc:
            raw = run_skopeo(["--command-timeout", f"{INSPECT_TIMEOUT}s", "inspect", "--raw", info.copy_spec],
                             f"Inspecting {info.copy_spec}", INSPECT_TIMEOUT + 30)
            doc = json.loads(raw)
        cfg = json.loads(run_skopeo(["--command-timeout", f"{INSPECT_TIMEOUT}s", "inspect", "--config", "--raw",
                                     info.copy_spec], f"Inspecting {info.copy_spec}", INSPECT_TIMEOUT + 30))
        layers = doc.get("layers") if isinstance(doc, dict) else None
        rootfs = cfg.get("rootfs") if isinstance(cfg, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    except (ValueError, OstreeError):
        return 0
    if not isinstance(layers, list) or not isinstance(diff_ids, list) or len(layers) != len(diff_ids):
        return 0
    n = 0
    blobs = os.path.join(layout, "blobs", "sha256")
    for desc, diff_id in zip(layers, diff_ids, strict=True):
        digest = desc.get("digest") if isinstance(desc, dict) else None
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest) or not isinstance(diff_id, str):
            continue
        if not _DIGEST.fullmatch(diff_id) or not have(diff_id):
            continue
        os.makedirs(blobs, exist_ok=True)
        with open(os.path.join(blobs, digest[7:]), "wb"):
            pass
        n += 1
    if n:
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
    return n


def open_any(spec: str, tmp_parent: str, *, platform: Platform | None = None,
             quiet: bool = True, info: SourceInfo | None = None,
             have: Callable[[str], bool] | None = None) -> tuple[ImageSource, str | None]:
    """Open *spec*; returns (source, digest of the source's manifest as skopeo sees it, or None).

    A non-native source is copied to a temporary OCI layout under *tmp_parent*,
    removed by the returned source's ``close()``.  *have(diff_id)* says whether
    the repository already has a layer: from registries those are not fetched.
    """
    if is_native(spec):
        return open_image(spec, platform=platform), None
    transport, sep, _ = spec.partition(":")
    if not sep:
        raise OstreeError(f"Invalid image reference '{spec}' (expected TRANSPORT:DETAILS, e.g. "
                          "docker://HOST/NAME:TAG or oci:DIR[:TAG])")
    if info is None:
        info = inspect_source(spec, platform)
    tmp = tempfile.mkdtemp(prefix="container-fetch-", dir=tmp_parent)
    try:
        layout = os.path.join(tmp, "layout")
        quiet = quiet or not sys.stderr.isatty()
        known = _prefill_known_layers(info, layout, have) if have is not None and transport == "docker" else 0
        try:
            skopeo_copy(info.copy_spec, f"oci:{layout}:image", platform=info.platform, quiet=quiet)
        except OstreeError:
            if not known:
                raise
            shutil.rmtree(layout, ignore_errors=True)  # a skopeo that refuses the placeholders: fetch all
            skopeo_copy(info.copy_spec, f"oci:{layout}:image", platform=info.platform, quiet=quiet)
        src = open_image(f"oci:{layout}:image")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    src.cleanup_dir = tmp
    src.transport = transport
    return src, info.digest
