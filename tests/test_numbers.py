"""Numbers out of range, from input and the command line: a clear error, or ostree's own behaviour
where ostree accepts the value; never a wrap, never a traceback."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree, needs_root

pytestmark = needs_ostree
Run = Callable[..., Result]
TS = "--timestamp=2020-01-01 00:00:00 +0000"


def _tar(path: Path, uid: int) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo("./")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        t.addfile(d)
        ti = tarfile.TarInfo("./owned")
        ti.size = 3
        ti.pax_headers = {"uid": str(uid)}  # pax carries any number; ustar's octal field cannot
        t.addfile(ti, io.BytesIO(b"hi\n"))
    return path


@needs_root
@pytest.mark.parametrize("mode", ["bare", "archive", "bare-user"])
@pytest.mark.parametrize("uid", [1 << 32, (1 << 32) + 5, -1])
def test_tar_uid_beyond_32_bits_refused(py: Run, c: Run, tmp_path: Path, mode: str, uid: int) -> None:
    tar = _tar(tmp_path / "t.tar", uid)
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", f"--mode={mode}")
    r = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=tar={tar}", check=False)
    assert r.rc == 1, r
    assert r.err == f"error: Archive entry './owned': uid {uid} out of range (0 to 4294967295)\n", r.err
    assert not (repo / "refs" / "heads" / "main").exists()
    c(f"--repo={repo}", "fsck")
    if uid == 1 << 32 and mode == "archive":
        # what we refuse, the real ostree truncates: 2^32 becomes root
        theirs = tmp_path / "theirs"
        c("init", f"--repo={theirs}", "--mode=archive")
        c(f"--repo={theirs}", "commit", "-b", "main", f"--tree=tar={tar}")
        assert c(f"--repo={theirs}", "ls", "main", "/owned").out.split()[1] == "0"


@needs_root
def test_tar_uid_at_32_bit_limit_like_ostree(py: Run, c: Run, tmp_path: Path) -> None:
    tar = _tar(tmp_path / "t.tar", (1 << 32) - 1)
    sums = []
    for tool, name in ((py, "ours"), (c, "theirs")):
        repo = tmp_path / name
        tool("init", f"--repo={repo}", "--mode=archive")
        sums.append(tool(f"--repo={repo}", "commit", "-b", "main", f"--tree=tar={tar}", TS).out.strip())
    assert sums[0] == sums[1]


@pytest.mark.parametrize("value", ["-5", "-1", "2147483647", "0x10", " 7", "010"])
def test_owner_uid_accepted_like_ostree(py: Run, c: Run, tmp_path: Path, value: str) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    sums = []
    for tool, name in ((py, "ours"), (c, "theirs")):
        repo = tmp_path / name
        tool("init", f"--repo={repo}", "--mode=archive")
        sums.append(tool(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}", TS,
                         f"--owner-uid={value}", f"--owner-gid={value}").out.strip())
    assert sums[0] == sums[1]


@pytest.mark.parametrize("opt", ["commit --owner-uid", "commit --owner-gid", "pull-local --depth",
                                 "prune --depth", "diff --owner-uid"])
@pytest.mark.parametrize("value", ["99999999999", "2147483648", "-2147483649", "", "12abc", "7 ", "1_0",
                                   "0x", "--"])
def test_integer_options_refused_like_ostree(py: Run, c: Run, tmp_path: Path, opt: str, value: str) -> None:
    repo = tmp_path / "repo"
    c("init", f"--repo={repo}", "--mode=archive")
    cmd, flag = opt.split()
    ours = py(f"--repo={repo}", cmd, f"{flag}={value}", check=False)
    theirs = c(f"--repo={repo}", cmd, f"{flag}={value}", check=False)
    assert ours.rc == theirs.rc == 1, (ours, theirs)
    assert ours.err.splitlines()[-1] == theirs.err.splitlines()[-1], (ours.err, theirs.err)
    assert "Traceback" not in ours.err


@pytest.mark.parametrize("value,message", [
    ("@99999999999999999999", "error: Could not parse '@99999999999999999999'"),
    ("@-5", "error: Timestamp '@-5' is before 1970 (commit timestamps are unsigned)"),
    ("1969-12-31", "error: Timestamp '1969-12-31' is before 1970 (commit timestamps are unsigned)"),
])
def test_commit_timestamp_range(py: Run, tmp_path: Path, value: str, message: str) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    r = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}", f"--timestamp={value}", check=False)
    assert r.rc == 1 and r.err.splitlines()[-1] == message, r
    assert not (repo / "refs" / "heads" / "main").exists()


@pytest.mark.parametrize("line", ["inf /f", "nan /f", "=1e999 /f", "=-inf /f"])
def test_statoverride_non_numbers(py: Run, tmp_path: Path, line: str) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    so = tmp_path / "so"
    so.write_text(line + "\n")
    repo = tmp_path / "repo"
    py("init", f"--repo={repo}", "--mode=archive")
    r = py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}", f"--statoverride={so}", check=False)
    assert r.rc == 1 and r.err == f"error: Malformed statoverride line '{line}'\n", r


@pytest.mark.parametrize("level", ["100", "-3", "0", "abc", "9"])
def test_zlib_level_clamped_like_ostree(py: Run, c: Run, tmp_path: Path, level: str) -> None:
    """``[archive] zlib-level`` is strtoull'd and clamped to 1..9 by libostree: same object bytes."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(bytes(range(256)) * 400 + b"text " * 5000)
    objs = []
    for tool, name in ((py, "ours"), (c, "theirs")):
        repo = tmp_path / name
        c("init", f"--repo={repo}", "--mode=archive")
        with (repo / "config").open("a") as f:
            f.write(f"\n[archive]\nzlib-level={level}\n")
        tool(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}", TS)
        objs.append(sorted((p.name, p.read_bytes()) for p in (repo / "objects").glob("*/*.filez")))
    assert objs[0] == objs[1]
