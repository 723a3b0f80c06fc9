"""docs/api.md is a tutorial that must run: every ``python`` block, in order, in one interpreter."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyostree

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_docs_api_examples_run(tmp_path: Path) -> None:
    if shutil.which("umoci") is None:
        pytest.skip("needs umoci (apt-get install umoci) for the container example")
    blocks = _blocks()
    assert len(blocks) >= 8
    script = "\n\n".join(blocks) + "\nprint('api examples ok')\n"
    (tmp_path / "api_examples.py").write_text(script)
    r = subprocess.run([sys.executable, "api_examples.py"], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("api examples ok")


def test_public_names_are_typed_and_documented() -> None:
    import inspect

    from pyostree import porcelain

    assert sorted(pyostree.__all__) == sorted(porcelain.__all__)
    for name in pyostree.__all__:
        obj = getattr(pyostree, name)
        assert obj is getattr(porcelain, name)
        if inspect.isfunction(obj):
            assert obj.__doc__, name
            hints = inspect.signature(obj)
            assert hints.return_annotation is not inspect.Signature.empty, name
    assert "commit" in dir(pyostree)
    with pytest.raises(AttributeError):
        _ = pyostree.no_such_name  # type: ignore[attr-defined]


def test_import_pyostree_stays_light() -> None:
    """The CLI imports the package at every start: the porcelain loads only on first use."""
    r = subprocess.run([sys.executable, "-c", "import sys, pyostree; "
                        "print(sorted(m for m in sys.modules if m.startswith('pyostree')))"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "['pyostree']"
