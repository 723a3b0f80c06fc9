"""export writes the same tar bytes as the real ostree."""

from __future__ import annotations

import tarfile

import pytest

from conftest import needs_root


@needs_root
@pytest.mark.parametrize("mode", ["bare", "archive", "bare-user"])
@pytest.mark.parametrize("extra", [[], ["--subpath=baz"], ["--prefix=the-prefix/"],
                                   ["--subpath=baz", "--prefix=p/"]], ids=lambda a: " ".join(a) or "plain")
def test_export_byte_identical(tmp_path, c, py, sample_tree, mode, extra):
    repo = tmp_path / "repo"
    c(f"--repo={repo}", "init", f"--mode={mode}")
    c(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x", "--no-xattrs",
      "--timestamp=2021-02-03 04:05:06 +0000")
    c(f"--repo={repo}", "export", "main", *extra, f"--output={tmp_path / 'c.tar'}")
    py(f"--repo={repo}", "export", "main", *extra, f"--output={tmp_path / 'p.tar'}")
    assert (tmp_path / "p.tar").read_bytes() == (tmp_path / "c.tar").read_bytes()


def test_export_to_stdout_and_contents(tmp_path, py, sample_tree):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", "--mode=archive")
    py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x",
       "--timestamp=2021-02-03 04:05:06 +0000")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pyostree", f"--repo={repo}", "export", "main"],
                         capture_output=True, check=True).stdout
    assert len(out) % 10240 == 0
    (tmp_path / "s.tar").write_bytes(out)
    with tarfile.open(tmp_path / "s.tar") as tf:
        names = tf.getnames()
        assert names[0] == "."
        assert "baz/cow" in names and "baz/deeper/ohyeahx" in names
        m = tf.getmember("baz/deeper/ohyeahx")
        assert m.mode == 0o755 and m.mtime == 1612325106
        assert tf.getmember("baz/alink").linkname == "nonexistent"
        assert tf.extractfile("baz/cow").read() == b"moo\n"  # type: ignore[union-attr]


def test_export_missing_subpath(tmp_path, py, sample_tree):
    repo = tmp_path / "repo"
    py(f"--repo={repo}", "init", "--mode=archive")
    py(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={sample_tree}", "-s", "x")
    r = py(f"--repo={repo}", "export", "main", "--subpath=nope", f"--output={tmp_path / 'x.tar'}", check=False)
    assert r.rc == 1 and "nope" in r.err and "Traceback" not in r.err
