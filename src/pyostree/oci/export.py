"""``container export``: a commit or an imported image -> an OCI image (placeholder)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyostree.errors import OstreeError
from pyostree.store.repo import Repo


@dataclass
class ExportOptions:
    max_layers: int = 1
    cmd: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    arch: str | None = None
    tag: str | None = None
    quiet: bool = True


@dataclass
class ExportResult:
    layers: int
    manifest_digest: str


def export_image(repo: Repo, rev: str, dest: str, opts: ExportOptions | None = None) -> ExportResult:
    raise OstreeError("container export is not implemented yet")
