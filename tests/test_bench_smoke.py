"""The benchmark harness runs end to end on a tiny tree (it reports; nothing here is timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import needs_ostree, needs_root

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


@needs_ostree
@needs_root
def test_bench_quick_on_tiny_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(5):
        (tree / "sub" / f"f{i}").write_text(f"{i}\n" * (1 + 40 * i))
    os.symlink("sub/f0", tree / "link")
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    r = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--reps", "1", "--warmup", "0",
         "--ops", "commit-bare-nofsync,checkout-hardlink,startup-version,delta-generate",
         "--cache-dir", str(tmp_path / "cache"), "--json", str(out_json), "--md", str(out_md),
         str(tree)],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out_json.read_text())
    assert {"machine", "config", "trees", "results", "scaling"} <= rep.keys()
    assert rep["trees"]["tree"]["entries"] == 7
    assert rep["trees"]["tree"]["checksums"]["bare"]["match"] is True
    ops = {(x["tree"], x["op"]) for x in rep["results"]}
    assert ("tree", "commit-bare-nofsync") in ops and ("-", "startup-version") in ops
    assert ("tree", "delta-generate") in ops
    du = rep["trees"]["tree"]["delta_update"]
    assert du["pyostree_bytes"] > 0 and du["ostree_bytes"] > 0
    for x in rep["results"]:
        assert {"pyostree", "ostree", "ratio", "floor"} <= x.keys()
        assert x["ostree"]["median"] is not None
    assert "| tree | op |" in out_md.read_text()
    assert "commit-bare-nofsync" in r.stdout
