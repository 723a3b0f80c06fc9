"""Option values are validated as ostree does, before anything is written.

Every line of tests/data/option-cases.txt (empty and malformed option values) runs with both
tools on copies of the same repository: the exit codes agree, and a pyostree command that fails
leaves the repository byte for byte as it was (ostree sometimes writes before failing).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree

pytestmark = needs_ostree
Run = Callable[..., Result]
CASES = [line for line in (Path(__file__).parent / "data" / "option-cases.txt").read_text().splitlines()
         if line.strip()]


def _snapshot(root: Path) -> list[tuple[str, int, bytes]]:
    out = []
    for p in sorted(root.rglob("*")):
        data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out.append((str(p.relative_to(root)), p.lstat().st_mode, data))
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess

    from conftest import REAL_OSTREE

    assert REAL_OSTREE is not None
    d = tmp_path_factory.mktemp("opts")
    (d / "t").mkdir()
    (d / "t" / "f").write_text("x\n")
    repo = d / "base"
    subprocess.run([REAL_OSTREE, "init", f"--repo={repo}", "--mode=archive"], check=True)
    for day in ("01", "02"):
        subprocess.run([REAL_OSTREE, f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={d / 't'}",
                        f"--timestamp=2020-01-{day}"], check=True, capture_output=True)
    return d


@pytest.mark.parametrize("case", CASES)
def test_option_value_like_ostree(py: Run, c: Run, base: Path, tmp_path: Path, case: str) -> None:
    rcs = {}
    for tool, name in ((py, "ours"), (c, "theirs")):
        repo = tmp_path / f"r-{name}"
        shutil.copytree(base / "base", repo, symlinks=True)
        before = _snapshot(repo)
        words = [w.replace("OUT", str(tmp_path / f"o-{name}")).replace("TREE", str(base / "t"))
                 for w in shlex.split(case)]
        r = tool(f"--repo={repo}", *words, check=False)
        rcs[name] = r.rc
        if name == "ours":
            assert "Traceback" not in r.err, r
            if r.rc != 0:
                assert r.err.startswith("error: ") or "\nerror: " in r.err, r
                assert _snapshot(repo) == before, f"{case}: failed but wrote to the repo"
    assert rcs["ours"] == rcs["theirs"], (case, rcs)


def test_init_mode_empty_refused(py: Run, c: Run, tmp_path: Path) -> None:
    for tool, name in ((py, "ours"), (c, "theirs")):
        r = tool("init", f"--repo={tmp_path / name}", "--mode=", check=False)
        assert r.rc == 1 and r.err == "error: Invalid mode '' in repository configuration\n", r
        assert not (tmp_path / name).exists()
