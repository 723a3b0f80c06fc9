"""Shared fixtures: run pyostree and the real ostree side by side on real filesystems."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The package in this checkout, whatever else is installed (git worktrees share one editable install)
SRC = str(Path(__file__).resolve().parents[1] / "src")
if sys.path[:1] != [SRC]:
    sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])

REAL_OSTREE = shutil.which("ostree")
IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (chown, mknod, bare repos)")
needs_ostree = pytest.mark.skipif(REAL_OSTREE is None, reason="needs the real ostree (apt-get install ostree)")


def _can_mount_overlay() -> bool:
    if not IS_ROOT:
        return False
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for sub in ("l", "u", "w", "m"):
            os.mkdir(os.path.join(d, sub))
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w", f"{d}/m"],
                           capture_output=True)
        if r.returncode != 0:
            return False
        subprocess.run(["umount", f"{d}/m"], check=False)
        return True


_OVERLAY = None


def overlay_available() -> bool:
    global _OVERLAY
    if _OVERLAY is None:
        _OVERLAY = _can_mount_overlay()
    return _OVERLAY


needs_overlayfs = pytest.mark.skipif("not __import__('conftest').overlay_available()",
                                     reason="needs root and a kernel that mounts overlayfs")


class Result:
    def __init__(self, cp: subprocess.CompletedProcess[str]) -> None:
        self.rc = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"


def _runner(prog: list[str]) -> Callable[..., Result]:
    def run(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            check: bool = True, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        full_env = dict(os.environ)
        full_env.pop("OSTREE_REPO", None)
        if env:
            full_env.update(env)
        cp = subprocess.run([*prog, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            input=input, env=full_env)
        res = Result(cp)
        if check and res.rc != 0:
            raise AssertionError(f"{prog[-1]} {' '.join(map(str, args))} failed: {res}")
        return res
    return run


@pytest.fixture
def py() -> Callable[..., Result]:
    """Run the pyostree CLI (the package in this checkout)."""
    return _runner([sys.executable, "-m", "pyostree"])


@pytest.fixture
def c() -> Callable[..., Result]:
    """Run the real ostree CLI."""
    if REAL_OSTREE is None:
        pytest.skip("needs the real ostree (apt-get install ostree)")
    return _runner([REAL_OSTREE])


def make_sample_tree(root: Path) -> Path:
    """A small tree with the shapes ostree cares about (dirs, empty/large files, symlinks, modes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "firstfile").write_text("first\n")
    (root / "empty").write_bytes(b"")
    (root / "baz" / "deeper").mkdir(parents=True)
    (root / "baz" / "cow").write_text("moo\n")
    ro = root / "baz" / "cowro"
    ro.write_text("mooro\n")
    ro.chmod(0o600)
    x = root / "baz" / "deeper" / "ohyeahx"
    x.write_text("hix\n")
    x.chmod(0o755)
    (root / "baz" / "big").write_bytes(os.urandom(1 << 20) * 2)
    os.symlink("nonexistent", root / "baz" / "alink")
    os.symlink("../firstfile", root / "baz" / "rel-link")
    (root / "nön-äscii ☃").write_text("unicode\n")
    return root


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    return make_sample_tree(tmp_path / "tree")
