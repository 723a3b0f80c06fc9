"""Reading container images: ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE``.

Every blob is read through :class:`VerifyingReader`, which checks the declared
size and digest when the blob has been read to its end; manifests, indexes
and configs are verified before they are parsed.  Nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tarfile
from dataclasses import dataclass, field

from pyostree.errors import OstreeError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import IO, Any

MEDIA_INDEX = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MEDIA_MANIFEST = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
MAX_JSON = 4 << 20
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

__all__ = ["Descriptor", "ImageSource", "Platform", "VerifyingReader", "open_image", "select_platform",
           "validate_digest"]


def validate_digest(d: object, where: str) -> str:
    if not isinstance(d, str) or not _DIGEST_RE.match(d):
        raise OstreeError(f"Invalid or unsupported digest {d!r} in {where} (only sha256 is supported)")
    return d


@dataclass
class Descriptor:
    media_type: str
    digest: str | None  # None: unknown (docker-archive layers are named by path)
    size: int | None
    path: str = ""  # docker-archive: member name

    @classmethod
    def parse(cls, d: object, where: str) -> Descriptor:
        if not isinstance(d, dict):
            raise OstreeError(f"Invalid descriptor in {where}")
        size = d.get("size")
        if not isinstance(size, int) or size < 0:
            raise OstreeError(f"Invalid size in descriptor in {where}")
        return cls(str(d.get("mediaType", "")), validate_digest(d.get("digest"), where), size)


class VerifyingReader:
    """A raw blob stream that checks its size and sha256 digest."""

    def __init__(self, f: IO[bytes], desc: Descriptor, what: str) -> None:
        self._f = f
        self.desc = desc
        self.what = what
        self._h = hashlib.sha256()
        self.count = 0
        self.finished = False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._h.update(data)
        self.count += len(data)
        if self.desc.size is not None and self.count > self.desc.size:
            raise OstreeError(f"{self.what}: blob is larger than its declared size {self.desc.size}")
        return data

    def readable(self) -> bool:
        return True

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()

    def finish(self) -> str:
        """Read to the end and verify; returns the digest."""
        while self.read(1 << 20):
            pass
        if self.desc.size is not None and self.count != self.desc.size:
            raise OstreeError(f"{self.what}: size {self.count} does not match the declared {self.desc.size}")
        if self.desc.digest is not None and self.digest != self.desc.digest:
            raise OstreeError(f"{self.what}: digest mismatch: expected {self.desc.digest}, got {self.digest}")
        self.finished = True
        return self.digest

    def close(self) -> None:
        self._f.close()


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise OstreeError(f"Invalid JSON in {what}: {e}") from None


@dataclass
class ImageSource:
    """One image's manifest, config and layer descriptors, plus access to its blobs."""

    transport: str
    manifest_bytes: bytes = b""
    manifest_digest: str = ""
    config_bytes: bytes = b""
    layers: list[Descriptor] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    _dir: str | None = None
    _tar: tarfile.TarFile | None = None
    cleanup_dir: str | None = None  # a temporary copy (skopeo), removed by close()
    _members: dict[str, tarfile.TarInfo] = field(default_factory=dict)

    # -- blob access ----------------------------------------------------------
    def _open_path(self, rel: str, what: str) -> IO[bytes]:
        if self._dir is not None:
            try:
                return open(os.path.join(self._dir, rel), "rb")
            except OSError as e:
                raise OstreeError(f"Opening {what} ({rel}): {e.strerror}") from None
        assert self._tar is not None
        name = _norm_member(rel)
        m = self._members.get(name)
        for _hop in range(8):  # docker-archive: HEX/layer.tar may be a symlink to ../HEX.tar
            if m is None or not m.issym():
                break
            base = name.rsplit("/", 1)[0] if "/" in name else ""
            parts: list[str] = []
            for comp in f"{base}/{m.linkname}".split("/"):
                if comp == "..":
                    if not parts:
                        raise OstreeError(f"{what}: {rel} links out of the archive")
                    parts.pop()
                elif comp not in ("", "."):
                    parts.append(comp)
            name = "/".join(parts)
            m = self._members.get(name)
        if m is None or not m.isreg():
            raise OstreeError(f"{what}: {rel} not found in archive")
        f = self._tar.extractfile(m)
        assert f is not None
        return f

    def open_blob(self, desc: Descriptor, what: str) -> VerifyingReader:
        if desc.path:
            rel = desc.path
        else:
            assert desc.digest is not None
            alg, _, hexd = desc.digest.partition(":")
            rel = f"blobs/{alg}/{hexd}"
        return VerifyingReader(self._open_path(rel, what), desc, what)

    def read_blob(self, desc: Descriptor, what: str) -> bytes:
        if desc.size is not None and desc.size > MAX_JSON:
            raise OstreeError(f"{what}: {desc.size} bytes is too large")
        r = self.open_blob(desc, what)
        try:
            data = r.read(MAX_JSON + 1)
            if len(data) > MAX_JSON:
                raise OstreeError(f"{what}: too large")
            r.finish()
        finally:
            r.close()
        return data

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self.cleanup_dir is not None:
            import shutil

            shutil.rmtree(self.cleanup_dir, ignore_errors=True)
            self.cleanup_dir = None

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

    @property
    def config(self) -> dict[str, Any]:
        c = _json(self.config_bytes, "image config")
        return c if isinstance(c, dict) else {}


def _norm_member(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _host_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
            "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


@dataclass
class Platform:
    """``OS/ARCH[/VARIANT]`` as in an image index's ``platform``."""

    os: str
    arch: str
    variant: str = ""

    @classmethod
    def parse(cls, s: str) -> Platform:
        parts = s.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise OstreeError(f"Invalid platform '{s}' (expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def host(cls) -> Platform:
        m = platform.machine()
        variant = {"armv7l": "v7", "armv6l": "v6"}.get(m, "")
        return cls("linux", _host_arch(), variant)

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")

    def matches(self, p: object) -> bool:
        if not isinstance(p, dict) or p.get("os") != self.os or p.get("architecture") != self.arch:
            return False
        v = p.get("variant") or ""
        if not self.variant or not v:
            return True
        return bool(v == self.variant)


def _plat_str(m: object) -> str:
    p = m.get("platform") if isinstance(m, dict) else None
    if not isinstance(p, dict):
        return "(no platform)"
    return "/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def select_platform(index: Any, want: Platform | None, where: str) -> tuple[Descriptor, Platform]:
    """The manifest of *index* for *want* (default: the host); a clear error lists the platforms."""
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise OstreeError(f"Invalid image index {where}")
    manifests = [m for m in index["manifests"] if isinstance(m, dict)]
    plat = want or Platform.host()
    found = [m for m in manifests if plat.matches(m.get("platform"))]
    if plat.variant == "" and len(found) > 1:  # prefer an entry without a variant, then the first
        found.sort(key=lambda m: bool((m.get("platform") or {}).get("variant")))
    if not found:
        have = ", ".join(_plat_str(m) for m in manifests) or "none"
        raise OstreeError(f"No image for platform {plat} in {where} (it has: {have}); "
                          "choose one with --platform OS/ARCH[/VARIANT]")
    return Descriptor.parse(found[0], where), plat


def _select_from_index(src: ImageSource, index: Any, tag: str | None, where: str,
                       want: Platform | None = None) -> Descriptor:
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise OstreeError(f"Invalid image index {where}")
    manifests = index["manifests"]
    if tag is not None:
        found = [m for m in manifests if isinstance(m, dict)
                 and (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) == tag]
        if not found:
            raise OstreeError(f"No image tagged '{tag}' in {where}")
        manifests = found
    if not manifests:
        raise OstreeError(f"No image in {where}")
    if len(manifests) > 1 or want is not None:
        with_plat = [m for m in manifests if isinstance(m, dict) and isinstance(m.get("platform"), dict)]
        if len(with_plat) == len(manifests):
            return select_platform({"manifests": manifests}, want, where)[0]
        if len(manifests) > 1:
            raise OstreeError(f"{where} holds {len(manifests)} images; name one with :TAG")
    return Descriptor.parse(manifests[0], where)


def _load_oci(src: ImageSource, tag: str | None, where: str, want: Platform | None = None) -> None:
    layout_desc = Descriptor("", None, None, "oci-layout")
    try:
        layout = _json(src.read_blob(layout_desc, f"{where}/oci-layout"), f"{where}/oci-layout")
    except OstreeError:
        raise OstreeError(f"{where} is not an OCI image layout (no oci-layout file)") from None
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
        raise OstreeError(f"{where}: unsupported imageLayoutVersion")
    index = _json(src.read_blob(Descriptor("", None, None, "index.json"), f"{where}/index.json"),
                  f"{where}/index.json")
    desc = _select_from_index(src, index, tag, where, want)
    for _depth in range(4):
        if desc.media_type not in MEDIA_INDEX:
            break
        sub = _json(src.read_blob(desc, f"image index {desc.digest}"), f"image index {desc.digest}")
        desc = select_platform(sub, want, f"image index {desc.digest}")[0]
    if desc.media_type and desc.media_type not in MEDIA_MANIFEST:
        raise OstreeError(f"Unsupported manifest media type {desc.media_type} in {where}")
    assert desc.digest is not None
    src.manifest_bytes = src.read_blob(desc, f"manifest {desc.digest}")
    src.manifest_digest = desc.digest
    manifest = _json(src.manifest_bytes, f"manifest {desc.digest}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise OstreeError(f"Invalid manifest {desc.digest}")
    cdesc = Descriptor.parse(manifest.get("config"), f"manifest {desc.digest} config")
    src.config_bytes = src.read_blob(cdesc, f"config {cdesc.digest}")
    src.layers = [Descriptor.parse(d, f"manifest {desc.digest} layer {i}")
                  for i, d in enumerate(manifest["layers"])]
    _load_diff_ids(src)


def _load_diff_ids(src: ImageSource) -> None:
    cfg = src.config
    rootfs = cfg.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise OstreeError("Image config has no rootfs.diff_ids")
    src.diff_ids = [validate_digest(d, "image config rootfs.diff_ids") for d in ids]
    if len(src.diff_ids) != len(src.layers):
        raise OstreeError(f"Image has {len(src.layers)} layers but {len(src.diff_ids)} diff_ids")


def _open_tar(path: str) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]:
    try:
        tf = tarfile.open(path, "r:")  # noqa: SIM115
        members = {_norm_member(m.name): m for m in tf.getmembers()}
    except (OSError, tarfile.TarError) as e:
        raise OstreeError(f"Reading archive {path}: {e}") from None
    return tf, members


def _load_docker_archive(src: ImageSource, path: str) -> None:
    mf = _json(src.read_blob(Descriptor("", None, None, "manifest.json"), f"{path}:manifest.json"),
               f"{path}:manifest.json")
    if not isinstance(mf, list) or not mf or not isinstance(mf[0], dict):
        raise OstreeError(f"Invalid manifest.json in {path}")
    if len(mf) > 1:
        raise OstreeError(f"{path} holds {len(mf)} images; only single-image archives are supported")
    entry = mf[0]
    cfg_path = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(cfg_path, str) or not isinstance(layers, list):
        raise OstreeError(f"Invalid manifest.json in {path}")
    # a config named by its digest ("HEX.json" or "blobs/sha256/HEX") is verified as such
    digest = None
    m = re.fullmatch(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?", _norm_member(cfg_path))
    if m:
        digest = "sha256:" + m.group(1)
    src.config_bytes = src.read_blob(Descriptor("", digest, None, cfg_path), f"config {cfg_path}")
    src.manifest_bytes = json.dumps(entry, sort_keys=True).encode()
    src.manifest_digest = "sha256:" + hashlib.sha256(src.manifest_bytes).hexdigest()
    for lp in layers:
        if not isinstance(lp, str):
            raise OstreeError(f"Invalid layer path in {path}:manifest.json")
        m = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", _norm_member(lp))
        src.layers.append(Descriptor("", "sha256:" + m.group(1) if m else None, None, lp))
    _load_diff_ids(src)


def open_image(spec: str, *, platform: Platform | None = None) -> ImageSource:
    """Open ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` or ``docker-archive:FILE``."""
    transport, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise OstreeError(f"Invalid image reference '{spec}' (expected oci:DIR[:TAG], "
                          "oci-archive:FILE[:TAG] or docker-archive:FILE)")
    if transport in ("oci", "oci-archive"):
        path, _, tag_s = rest.partition(":")
        tag = tag_s or None
        if transport == "oci":
            if not os.path.isdir(path):
                raise OstreeError(f"{path}: not a directory")
            src = ImageSource(transport, _dir=path)
        else:
            tf, members = _open_tar(path)
            src = ImageSource(transport, _tar=tf, _members=members)
        try:
            _load_oci(src, tag, path, platform)
        except BaseException:
            src.close()
            raise
        return src
    if transport == "docker-archive":
        tf, members = _open_tar(rest)
        src = ImageSource(transport, _tar=tf, _members=members)
        try:
            _load_docker_archive(src, rest)
        except BaseException:
            src.close()
            raise
        return src
    raise OstreeError(f"Unsupported transport '{transport}' in '{spec}'")
