"""The torture suite's machinery: kill -9 trials and their sizes.

``make torture`` sets PYOSTREE_TORTURE=1: 100 kill trials per operation and 10,000 fuzz inputs
per parser.  Without it (``make test``) the same tests run a few trials each.  Sizes can be set
directly with PYOSTREE_TORTURE_TRIALS and PYOSTREE_TORTURE_EXAMPLES.  Every run is seeded
(PYOSTREE_TORTURE_SEED, default 11), so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from conftest import REAL_OSTREE

BIG = os.environ.get("PYOSTREE_TORTURE", "") not in ("", "0")
TRIALS = int(os.environ.get("PYOSTREE_TORTURE_TRIALS", "100" if BIG else "3"))
EXAMPLES = int(os.environ.get("PYOSTREE_TORTURE_EXAMPLES", "10000" if BIG else "150"))
SEED = int(os.environ.get("PYOSTREE_TORTURE_SEED", "11"))
RESULTS = Path(os.environ.get("PYOSTREE_TORTURE_RESULTS", "")) if os.environ.get("PYOSTREE_TORTURE_RESULTS") \
    else None

PY = [sys.executable, "-m", "pyostree"]
TOOLS = {"pyostree": PY, "ostree": [REAL_OSTREE or "ostree"]}
ENV = {**os.environ, "OSTREE_SYSROOT_DEBUG": "mutable-deployments"}
ENV.pop("OSTREE_REPO", None)


def run(argv: Sequence[str | os.PathLike[str]], check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=ENV)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({cp.returncode}): {cp.stderr[-2000:]}")
    return cp


def copy_tree(src: Path, dst: Path) -> None:
    """``cp -a``: owners, modes, xattrs and hardlinks kept (bare repos need them)."""
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def repo_sound(repo: Path) -> list[str]:
    """What is wrong with *repo*: both fscks must pass and every ref must list recursively."""
    problems = []
    for name, tool in TOOLS.items():
        cp = run([*tool, f"--repo={repo}", "fsck", "-q"], check=False)
        if cp.returncode != 0:
            problems.append(f"{name} fsck: {cp.stderr.strip()[-500:]}")
    refs = run([*PY, f"--repo={repo}", "refs"], check=False)
    if refs.returncode != 0:
        problems.append(f"refs: {refs.stderr.strip()}")
    for ref in refs.stdout.split():
        cp = run([*PY, f"--repo={repo}", "ls", "-R", ref], check=False)
        if cp.returncode != 0:
            problems.append(f"ls -R {ref}: {cp.stderr.strip()}")
    return problems


class Outcome:
    def __init__(self, op: str, tool: str) -> None:
        self.op = op
        self.tool = tool
        self.trials = 0
        self.killed = 0  # trials where the kill landed before the command finished
        self.broken: list[str] = []  # trials after which the repo failed a check
        self.rerun_failed: list[str] = []

    def record(self) -> None:
        if RESULTS is None:
            return
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps({"op": self.op, "tool": self.tool, "trials": self.trials, "killed": self.killed,
                                "broken": len(self.broken), "rerun_failed": len(self.rerun_failed),
                                "first_problem": (self.broken + self.rerun_failed)[:1]}) + "\n")

    def __repr__(self) -> str:
        return (f"{self.op}[{self.tool}]: {self.trials} trials, {self.killed} killed mid-run, "
                f"{len(self.broken)} left a broken repo, {len(self.rerun_failed)} reruns failed: "
                f"{(self.broken + self.rerun_failed)[:2]}")


def kill_trials(op: str, tool: str, fresh: Callable[[], Path], command: Callable[[Path], list[str]],
                check: Callable[[Path], list[str]], trials: int = TRIALS, seed: int = SEED,
                after_rerun: Callable[[Path], list[str]] | None = None) -> Outcome:
    """Kill *command* with SIGKILL at a random instant, *trials* times.

    *fresh* makes a new working copy and returns it; *command* is the argv to run on it;
    *check* lists problems (empty: sound).  After each kill the state is checked, the command
    is rerun to completion and the state is checked again.
    """
    rng = random.Random(f"{seed}-{op}-{tool}")
    out = Outcome(op, tool)
    # one uninterrupted run: how long the command takes sets the range of kill instants
    work = fresh()
    t0 = time.monotonic()
    run(command(work))
    span = time.monotonic() - t0
    assert not check(work), check(work)
    for i in range(trials):
        work = fresh()
        argv = command(work)
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        rc = p.wait()
        out.trials += 1
        if rc == -signal.SIGKILL:
            out.killed += 1
        problems = check(work)
        if problems:
            out.broken.append(f"trial {i}: {problems}")
        cp = run(argv, check=False)
        problems = check(work) + (after_rerun(work) if after_rerun else [])
        if cp.returncode != 0 or problems:
            out.rerun_failed.append(f"trial {i}: rc={cp.returncode} {cp.stderr.strip()[-300:]} {problems}")
    out.record()
    return out
