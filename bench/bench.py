#!/usr/bin/env python3
"""Side-by-side benchmark: pyostree against the C ostree, on the same bytes.

Every operation runs for both tools, alternating, after a warm-up; the median
of the timed runs is reported with the ratio pyostree/ostree, the ratio to a
floor (``cp -al``/``cp -a``/a bare interpreter) where one exists, and the peak
RSS of each run (``os.wait4`` rusage).  A command that fails (not implemented
yet, or broken) is reported as n/a with its error; the run goes on.

Benchmarks report, they never assert.  Stdlib only.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_CACHE = os.path.join(ROOT, ".cache", "bench")
DEFAULT_RESULTS = os.path.join(HERE, "results")
FIXED_TS = "2020-01-01"
REF = "bench"


# ---------------------------------------------------------------------------
# running and measuring one command


@dataclass
class Run:
    rc: int
    secs: float
    rss_kb: int
    err: str
    cpu: float = 0.0
    """user + system seconds (robust to other load on the machine, unlike wall time)"""


def run_measured(argv: list[str], cwd: str | None = None, timeout: float = 3600.0) -> Run:
    """Run *argv* to completion: wall time, peak RSS (KiB) and the tail of stderr."""
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=errf)
        except OSError as e:
            return Run(127, 0.0, 0, f"{argv[0]}: {e.strerror}")
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _pid, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        secs = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        errf.seek(0)
        tail = errf.read()[-4000:].decode("utf-8", "replace")
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    err = lines[-1][:300] if (rc != 0 and lines) else ("" if rc == 0 else f"exit status {rc}")
    return Run(rc, secs, int(ru.ru_maxrss), err, ru.ru_utime + ru.ru_stime)


def quiet(argv: list[str], cwd: str | None = None) -> None:
    """An untimed set-up step that must succeed."""
    r = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")


def try_quiet(argv: list[str]) -> str | None:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
    return None


class SetupError(Exception):
    pass


def rm_rf(path: str) -> None:
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                shutil.rmtree(path)
            except OSError:  # something still writing there: once more
                time.sleep(1)
                shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def count_entries(path: str) -> tuple[int, int]:
    """(entries below *path*, bytes of regular files)."""
    n = 0
    size = 0
    for dirpath, dirs, files in os.walk(path):
        n += len(dirs) + len(files)
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if st.st_mode & 0o170000 == 0o100000:
                size += st.st_size
    return n, size


# ---------------------------------------------------------------------------
# tools


@dataclass
class Tool:
    name: str
    argv: list[str]

    def cmd(self, repo: str | None, *args: str) -> list[str]:
        return self.argv + ([f"--repo={repo}"] if repo else []) + list(args)


def make_launcher() -> list[str] | None:
    """The direct launcher of scripts/make-launcher.sh (``python -ES``, paths preset).

    It is what the test suite runs and what README recommends where start-up
    matters: it skips version-manager shims and site's .pth processing, which
    on some machines imports heavy modules at every start.
    """
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "make-launcher.sh")],
                       env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True)
    path = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
    return [path] if path and os.access(path, os.X_OK) else None


def find_console_script() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m pyostree``."""
    cand = os.path.join(os.path.dirname(sys.executable), "pyostree")
    if os.access(cand, os.X_OK):
        return [cand]
    which = shutil.which("pyostree")
    if which and "shims" not in which:
        return [which]
    return [sys.executable, "-m", "pyostree"]


# ---------------------------------------------------------------------------
# trees


@dataclass
class Tree:
    name: str
    path: str
    entries: int = 0
    bytes: int = 0
    note: str = ""


def prepare_stdlib(cache: str) -> Tree:
    """A copy of the running interpreter's stdlib (without site-packages), made once."""
    import sysconfig

    src = sysconfig.get_paths()["stdlib"]
    dest = os.path.join(cache, f"stdlib-{sys.version_info.major}.{sys.version_info.minor}")
    if not os.path.isdir(dest):
        tmp = dest + ".tmp"
        rm_rf(tmp)
        shutil.copytree(src, tmp, symlinks=True,
                        ignore=lambda d, names: ["site-packages"] if os.path.samefile(d, src) else [])
        os.rename(tmp, dest)
    return Tree("stdlib", dest, note=f"copy of {src} without site-packages")


def prepare_debian(cache: str) -> Tree:
    """A Debian bookworm minbase rootfs made once with debootstrap (device nodes dropped)."""
    dest = os.path.join(cache, "debian-minbase")
    if not os.path.isdir(dest):
        if not shutil.which("debootstrap"):
            raise SetupError("debootstrap is not installed (make deps installs it)")
        if os.geteuid() != 0:
            raise SetupError("debootstrap needs root")
        tmp = dest + ".tmp"
        rm_rf(tmp)
        print("bench: debootstrap --variant=minbase bookworm (once, cached in .cache/bench)", file=sys.stderr)
        r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tmp],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            lines = (r.stdout + r.stderr).strip().splitlines()
            rm_rf(tmp)
            raise SetupError("debootstrap failed: " + (lines[-1] if lines else str(r.returncode)))
        os.rename(tmp, dest)
    # ostree commits only regular files, symlinks and directories
    devdir = os.path.join(dest, "dev")
    for dirpath, _dirs, files in os.walk(dest):
        for f in files:
            p = os.path.join(dirpath, f)
            mode = os.lstat(p).st_mode & 0o170000
            if mode not in (0o100000, 0o120000):
                os.unlink(p)
    del devdir
    return Tree("debian", dest, note="debootstrap --variant=minbase bookworm, device nodes removed")


def generate_tree(cache: str, nfiles: int, per_dir: int = 1000) -> Tree:
    """*nfiles* small distinct files, *per_dir* to a directory, made once."""
    dest = os.path.join(cache, f"gen-{nfiles}")
    if not os.path.isdir(dest):
        tmp = dest + ".tmp"
        rm_rf(tmp)
        os.makedirs(tmp)
        for i in range(nfiles):
            d = os.path.join(tmp, f"d{i // per_dir:05d}")
            if i % per_dir == 0:
                os.mkdir(d)
            fd = os.open(os.path.join(d, f"f{i:07d}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"small file %d\n" % i)
            os.close(fd)
        os.rename(tmp, dest)
    return Tree(f"gen-{nfiles}", dest, note=f"{nfiles} small files, {per_dir} per directory")


# ---------------------------------------------------------------------------
# operations


def make_update(src: str, dest: str) -> int:
    """Copy *src* to *dest* and edit one regular file in eight as updates do; returns files edited.

    Deterministic (the choice and the edits come from each path's CRC): a few
    4-byte changes spread over the file, and in one edited file of three 200
    bytes inserted in the middle, or 4 KiB appended in another third.
    """
    import zlib

    rm_rf(dest)
    shutil.copytree(src, dest, symlinks=True)
    edited = 0
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            h = zlib.crc32(os.path.relpath(path, dest).encode())
            if h % 8 or os.path.getsize(path) < 64:
                continue
            with open(path, "rb") as f:
                data = bytearray(f.read())
            for k in range(3):
                pos = (h >> (k * 5)) % (len(data) - 4)
                data[pos:pos + 4] = (h + k).to_bytes(4, "little")
            if (h >> 3) % 3 == 0:
                mid = len(data) // 2
                data[mid:mid] = bytes((h + i) & 0xFF for i in range(200))
            elif (h >> 3) % 3 == 1:
                data += bytes((h * 7 + i) & 0xFF for i in range(4096))
            mode = os.stat(path).st_mode
            os.chmod(path, mode | 0o200)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, mode)
            edited += 1
    return edited


@dataclass
class Op:
    name: str
    label: str
    # per tool: argv of one timed run; pre runs untimed before each run
    cmd: Callable[[Tool], list[str]]
    pre: Callable[[Tool], None] | None = None
    floor: list[str] | None = None
    floor_pre: Callable[[], None] | None = None
    floor_label: str = ""
    check: Callable[[Tool], str | None] | None = None
    """Untimed check after the warm-up run: an error string if the output is wrong."""


@dataclass
class Result:
    tree: str
    op: str
    label: str
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    floor: dict[str, Any] | None = None
    floor_label: str = ""

    def median(self, who: str) -> float | None:
        t = self.tools.get(who)
        if not t or t.get("median") is None:
            return None
        return float(t["median"])

    def cpu_ratio(self) -> float | None:
        p, c = self.tools.get("pyostree") or {}, self.tools.get("ostree") or {}
        if p.get("cpu_median") and c.get("cpu_median"):
            return round(p["cpu_median"] / c["cpu_median"], 3)
        return None

    def to_json(self) -> dict[str, Any]:
        py, c = self.median("pyostree"), self.median("ostree")
        fl = self.floor["median"] if self.floor and self.floor.get("median") is not None else None
        return {
            "tree": self.tree, "op": self.op, "label": self.label,
            "pyostree": self.tools.get("pyostree"), "ostree": self.tools.get("ostree"),
            "floor": self.floor, "floor_label": self.floor_label,
            "ratio": round(py / c, 3) if py and c else None,
            "ratio_cpu": self.cpu_ratio(),
            "ratio_floor_pyostree": round(py / fl, 3) if py and fl else None,
            "ratio_floor_ostree": round(c / fl, 3) if c and fl else None,
        }


def _summ(runs: list[Run]) -> dict[str, Any]:
    times = [r.secs for r in runs]
    return {
        "times": [round(t, 4) for t in times],
        "median": round(statistics.median(times), 4) if times else None,
        "cpu_median": round(statistics.median([r.cpu for r in runs]), 4) if runs else None,
        "rss_kb": max((r.rss_kb for r in runs), default=None),
        "rss_kb_median": int(statistics.median([r.rss_kb for r in runs])) if runs else None,
        "error": None,
    }


def measure(tree: str, op: Op, tools: list[Tool], reps: int, warmup: int, verbose: bool) -> Result:
    res = Result(tree, op.name, op.label, floor_label=op.floor_label)
    runs: dict[str, list[Run]] = {t.name: [] for t in tools}
    failed: dict[str, str] = {}

    def one(t: Tool) -> Run | None:
        if t.name in failed:
            return None
        try:
            if op.pre:
                op.pre(t)
            r = run_measured(op.cmd(t))
        except SetupError as e:
            failed[t.name] = f"setup: {e}"
            return None
        if r.rc != 0:
            failed[t.name] = r.err
            return None
        return r

    for _ in range(warmup):
        for t in tools:
            one(t)
    if op.check:
        for t in tools:
            if t.name not in failed:
                if warmup == 0 and one(t) is None:
                    continue
                msg = op.check(t)
                if msg:
                    failed[t.name] = msg
    floor_runs: list[Run] = []
    floor_err = None
    for i in range(reps):
        order = tools if i % 2 == 0 else list(reversed(tools))
        for t in order:
            r = one(t)
            if r is not None:
                runs[t.name].append(r)
        if op.floor and floor_err is None:
            if op.floor_pre:
                op.floor_pre()
            r = run_measured(op.floor)
            if r.rc != 0:
                floor_err = r.err
            else:
                floor_runs.append(r)
    for t in tools:
        s = _summ(runs[t.name])
        if t.name in failed:
            s = {"times": [], "median": None, "rss_kb": None, "rss_kb_median": None,
                 "error": failed[t.name]}
        res.tools[t.name] = s
    if op.floor:
        res.floor = _summ(floor_runs) if floor_err is None else {"median": None, "error": floor_err}
    if verbose:
        print_row(res, sys.stderr)
    return res


# ---------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cache = os.path.abspath(args.cache_dir)
        self.work = os.path.join(self.cache, "work")
        launcher = None if (args.pyostree or args.console_script) else make_launcher()
        self.launcher = launcher is not None
        py_argv = shlex.split(args.pyostree) if args.pyostree else (launcher or find_console_script())
        self.tools = [Tool("pyostree", py_argv), Tool("ostree", shlex.split(args.ostree))]
        self.console_startup: dict[str, Any] = {}
        self.ostree = self.tools[1]
        self.results: list[Result] = []
        self.trees: dict[str, dict[str, Any]] = {}
        self.scaling: list[dict[str, Any]] = []
        self.load_start = [round(x, 2) for x in os.getloadavg()]

    # -- helpers ------------------------------------------------------------
    def init_repo(self, path: str, mode: str, tool: Tool | None = None) -> None:
        rm_rf(path)
        quiet((tool or self.ostree).cmd(path, "init", f"--mode={mode}"))

    def ref_repo(self, wdir: str, src: str, mode: str) -> str:
        """A repository of *mode* holding *src* at ref ``bench``, written by the C ostree."""
        path = os.path.join(wdir, f"ref-{mode}")
        self.init_repo(path, mode)
        quiet(self.ostree.cmd(path, "commit", "-b", REF, "--fsync=false", f"--timestamp={FIXED_TS}", src))
        return path

    def checksums_match(self, wdir: str, src: str) -> dict[str, Any]:
        """Commit *src* with both tools (fixed timestamp) and compare the commit checksums."""
        out: dict[str, Any] = {}
        for mode in ("bare", "archive"):
            sums = {}
            for t in self.tools:
                repo = os.path.join(wdir, f"sum-{t.name}-{mode}")
                try:
                    self.init_repo(repo, mode)
                    r = subprocess.run(t.cmd(repo, "commit", "-b", REF, "--fsync=false",
                                             f"--timestamp={FIXED_TS}", "-s", "bench", src),
                                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
                    sums[t.name] = r.stdout.strip() if r.returncode == 0 else f"error: {r.stderr.strip()[-200:]}"
                except SetupError as e:
                    sums[t.name] = f"error: {e}"
                rm_rf(repo)
            out[mode] = {"match": sums.get("pyostree") == sums.get("ostree"), **sums}
        return out

    def want(self, op: str) -> bool:
        ops = self.args.ops
        return not ops or any(op == o or op.startswith(o + "-") for o in ops)

    # -- the operations on one tree ---------------------------------------
    def tree_ops(self, tree: Tree) -> list[Op]:
        src = tree.path
        wdir = os.path.join(self.work, tree.name)
        rm_rf(wdir)
        os.makedirs(wdir)
        ops: list[Op] = []
        dest = {t.name: os.path.join(wdir, f"out-{t.name}") for t in self.tools}
        fdest = os.path.join(wdir, "out-floor")

        def clean_dest(t: Tool) -> None:
            rm_rf(dest[t.name])

        def clean_floor() -> None:
            rm_rf(fdest)

        def check_tree(t: Tool) -> str | None:
            n, _ = count_entries(dest[t.name])
            return None if n == tree.entries else f"checkout incomplete: {n} of {tree.entries} entries"

        # commits into a fresh repository
        for mode in ("bare", "archive"):
            for fsync in (True, False):
                name = f"commit-{mode}" + ("" if fsync else "-nofsync")
                if not self.want(name):
                    continue
                repos = {t.name: os.path.join(wdir, f"c-{t.name}-{mode}") for t in self.tools}

                def pre(t: Tool, mode: str = mode, repos: dict[str, str] = repos) -> None:
                    self.init_repo(repos[t.name], mode)

                extra = [] if fsync else ["--fsync=false"]
                ops.append(Op(name, f"commit into {mode}" + ("" if fsync else " --fsync=false"),
                              lambda t, repos=repos, extra=extra: t.cmd(
                                  repos[t.name], "commit", "-b", REF, "-s", "bench", *extra, src),
                              pre=pre))

        need_bare = any(self.want(n) for n in ("recommit", "recommit-lcs", "checkout-hardlink",
                                               "checkout-union", "fsck-bare", "pull-local",
                                               "composefs-image"))
        bare = self.ref_repo(wdir, src, "bare") if need_bare else ""

        # an unchanged tree (a hardlink checkout of the parent) committed on top of its parent
        if self.want("recommit") or self.want("recommit-lcs"):
            co = os.path.join(wdir, "linkco")
            quiet(self.ostree.cmd(bare, "checkout", REF, co))
            repos = {}
            for t in self.tools:
                # each tool its own copy of the repository: objects hardlinked, refs copied
                r = os.path.join(wdir, f"re-{t.name}")
                quiet(["cp", "-al", bare, r])
                repos[t.name] = r
            for name, flags in (("recommit", []), ("recommit-lcs", ["--link-checkout-speedup"])):
                if self.want(name):
                    ops.append(Op(name, "commit unchanged tree on parent" + (" " + flags[0] if flags else ""),
                                  lambda t, flags=flags, repos=repos: t.cmd(
                                      repos[t.name], "commit", "-b", REF, "-s", "again",
                                      "--fsync=false", *flags, co)))

        if self.want("checkout-hardlink"):
            ops.append(Op("checkout-hardlink", "checkout (bare, hardlinks)",
                          lambda t: t.cmd(bare, "checkout", REF, dest[t.name]), pre=clean_dest,
                          floor=["cp", "-al", src, fdest], floor_pre=clean_floor, floor_label="cp -al",
                          check=check_tree))
        if self.want("checkout-user"):
            bu = self.ref_repo(wdir, src, "bare-user")
            ops.append(Op("checkout-user", "checkout -U (bare-user)",
                          lambda t: t.cmd(bu, "checkout", "-U", REF, dest[t.name]), pre=clean_dest,
                          floor=["cp", "-al", src, fdest], floor_pre=clean_floor, floor_label="cp -al",
                          check=check_tree))
        if self.want("checkout-archive") or self.want("fsck-archive"):
            ar = self.ref_repo(wdir, src, "archive")
            if self.want("checkout-archive"):
                ops.append(Op("checkout-archive", "checkout (archive, copies)",
                              lambda t: t.cmd(ar, "checkout", REF, dest[t.name]), pre=clean_dest,
                              floor=["cp", "-a", src, fdest], floor_pre=clean_floor, floor_label="cp -a",
                              check=check_tree))
        if self.want("checkout-union"):
            udest = {t.name: os.path.join(wdir, f"union-{t.name}") for t in self.tools}
            for t in self.tools:
                quiet(self.ostree.cmd(bare, "checkout", REF, udest[t.name]))
            ops.append(Op("checkout-union", "checkout --union over a checkout (bare)",
                          lambda t: t.cmd(bare, "checkout", "--union", REF, udest[t.name])))
        # composefs: pyostree builds the image; the ostree column (2022.7 has no composefs) and
        # the floor are the hardlink checkouts of the same commit by ostree and by pyostree
        for name, flag in (("composefs-image", "--composefs"), ("composefs-image-noverity", "--composefs-noverity")):
            if not self.want(name):
                continue
            py_tool = self.tools[0]

            def cfs_cmd(t: Tool, flag: str = flag, py_tool: Tool = py_tool) -> list[str]:
                if t is py_tool:
                    return t.cmd(bare, "checkout", flag, REF, dest[t.name] + ".cfs")
                return t.cmd(bare, "checkout", REF, dest[t.name])

            def cfs_pre(t: Tool) -> None:
                rm_rf(dest[t.name])
                rm_rf(dest[t.name] + ".cfs")

            ops.append(Op(name, f"checkout {flag} (pyostree) vs hardlink checkout (ostree; floor: pyostree)",
                          cfs_cmd, pre=cfs_pre, floor=py_tool.cmd(bare, "checkout", REF, fdest),
                          floor_pre=clean_floor, floor_label="pyostree checkout"))
        if self.want("fsck-bare"):
            ops.append(Op("fsck-bare", "fsck (bare)", lambda t: t.cmd(bare, "fsck")))
        if self.want("fsck-archive"):
            ops.append(Op("fsck-archive", "fsck (archive)", lambda t: t.cmd(ar, "fsck")))
        if self.want("pull-local"):
            pdest = {t.name: os.path.join(wdir, f"pull-{t.name}") for t in self.tools}

            def pull_pre(t: Tool) -> None:
                self.init_repo(pdest[t.name], "bare")

            ops.append(Op("pull-local", "pull-local (bare to new bare)",
                          lambda t: t.cmd(pdest[t.name], "pull-local", bare, REF), pre=pull_pre))
        if self.want("delta-generate"):
            ops.append(self.delta_op(tree, wdir))
        return ops

    def delta_op(self, tree: Tree, wdir: str) -> Op:
        """static-delta generate between the tree and an update of it (make_update), in archive
        repositories written by the C ostree; each tool's delta size goes into the tree's info."""
        upd = os.path.join(wdir, "updated")
        edited = make_update(tree.path, upd)
        base = os.path.join(wdir, "delta-base")
        self.init_repo(base, "archive")
        quiet(self.ostree.cmd(base, "commit", "-b", REF, "--fsync=false", f"--timestamp={FIXED_TS}", tree.path))
        quiet(self.ostree.cmd(base, "commit", "-b", REF, "--fsync=false", f"--timestamp={FIXED_TS}", upd))
        repos = {}
        for t in self.tools:
            repos[t.name] = os.path.join(wdir, f"delta-{t.name}")
            rm_rf(repos[t.name])
            quiet(["cp", "-al", base, repos[t.name]])
        info = self.trees.setdefault(tree.name, {})
        info["delta_update"] = {"files_edited": edited}

        def pre(t: Tool) -> None:
            rm_rf(os.path.join(repos[t.name], "deltas"))

        def check(t: Tool) -> str | None:
            size = 0
            for dirpath, _dirs, files in os.walk(os.path.join(repos[t.name], "deltas")):
                size += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
            info["delta_update"][f"{t.name}_bytes"] = size
            return None if size else "no delta written"

        return Op("delta-generate", f"static-delta generate (update: {edited} files edited)",
                  lambda t: t.cmd(repos[t.name], "static-delta", "generate", REF), pre=pre, check=check)

    def startup_ops(self) -> list[Op]:
        ops: list[Op] = []
        small = os.path.join(self.work, "small")
        rm_rf(small)
        os.makedirs(os.path.join(small, "tree", "sub"))
        for i in range(3):
            with open(os.path.join(small, "tree", "sub", f"f{i}"), "w") as f:
                f.write(f"{i}\n")
        repo = os.path.join(small, "repo")
        self.init_repo(repo, "bare")
        for b in ("a", "b/c", "d"):
            quiet(self.ostree.cmd(repo, "commit", "-b", b, "--fsync=false", os.path.join(small, "tree")))
        # the floor is the interpreter's own start-up, run the way pyostree is run
        interp = [sys.executable] + (["-ES"] if self.launcher else []) + ["-c", "pass"]
        label = "python -ES -c pass" if self.launcher else "python -c pass"
        if self.want("startup-version"):
            ops.append(Op("startup-version", "--version (start-up)", lambda t: t.cmd(None, "--version"),
                          floor=interp, floor_label=label))
            if self.launcher:
                self.console_startup = self.time_console_script()
        if self.want("startup-refs"):
            ops.append(Op("startup-refs", "refs on a small repo", lambda t: t.cmd(repo, "refs"),
                          floor=interp, floor_label=label))
        return ops

    def time_console_script(self) -> dict[str, Any]:
        """--version through the pip console script and ``python -c pass`` (both with site)."""
        out: dict[str, Any] = {}
        for key, argv in (("console_version", [*find_console_script(), "--version"]),
                          ("python_site", [sys.executable, "-c", "pass"])):
            runs = [run_measured(argv) for _ in range(max(self.args.reps, 5) + 1)][1:]
            ok = [r.secs for r in runs if r.rc == 0]
            out[key] = round(statistics.median(ok), 4) if ok else None
        return out

    # -- scaling ------------------------------------------------------------
    def run_scaling(self, sizes: list[int]) -> None:
        for n in sizes:
            tree = generate_tree(self.cache, n)
            wdir = os.path.join(self.work, tree.name)
            rm_rf(wdir)
            os.makedirs(wdir)
            row: dict[str, Any] = {"files": n}
            for t in self.tools:
                repo = os.path.join(wdir, f"repo-{t.name}")
                co = os.path.join(wdir, f"co-{t.name}")
                self.init_repo(repo, "bare")
                r = run_measured(t.cmd(repo, "commit", "-b", REF, "--fsync=false", tree.path))
                row[f"{t.name}_commit"] = {"secs": round(r.secs, 3), "cpu": round(r.cpu, 3), "rss_kb": r.rss_kb,
                                           "error": r.err or None}
                r2 = run_measured(t.cmd(repo, "checkout", REF, co)) if r.rc == 0 else Run(1, 0, 0, "no commit")
                row[f"{t.name}_checkout"] = {"secs": round(r2.secs, 3), "cpu": round(r2.cpu, 3), "rss_kb": r2.rss_kb,
                                             "error": r2.err or None}
                rm_rf(co)
                rm_rf(repo)
                print(f"scaling {n:>8} {t.name:<9} commit {r.secs:8.2f}s {r.rss_kb / 1024:7.1f}MB"
                      f" {'(' + r.err + ')' if r.err else ''} checkout {r2.secs:8.2f}s "
                      f"{r2.rss_kb / 1024:7.1f}MB {'(' + r2.err + ')' if r2.err else ''}", file=sys.stderr)
            rm_rf(wdir)
            self.scaling.append(row)

    # -- main -----------------------------------------------------------------
    def run(self) -> None:
        a = self.args
        os.makedirs(self.work, exist_ok=True)
        trees: list[Tree] = []
        names = a.trees.split(",") if a.trees is not None else (
            [] if a.dirs else (["stdlib"] if a.quick else ["stdlib", "debian"]))
        for name in [n for n in names if n]:
            try:
                if name == "stdlib":
                    trees.append(prepare_stdlib(self.cache))
                elif name == "debian":
                    trees.append(prepare_debian(self.cache))
                else:
                    raise SetupError(f"unknown tree {name!r} (stdlib, debian, or a directory argument)")
            except (SetupError, OSError) as e:
                print(f"bench: tree {name}: {e}; skipped", file=sys.stderr)
                self.trees[name] = {"error": str(e)}
                if name == "debian" and "stdlib" not in names:
                    trees.append(prepare_stdlib(self.cache))
        for d in a.dirs:
            trees.append(Tree(os.path.basename(os.path.normpath(d)) or "dir", os.path.abspath(d)))
        for tree in trees:
            tree.entries, tree.bytes = count_entries(tree.path)
            wdir = os.path.join(self.work, tree.name)
            os.makedirs(wdir, exist_ok=True)
            info: dict[str, Any] = {"path": tree.path, "entries": tree.entries, "bytes": tree.bytes,
                                    "note": tree.note}
            if not a.no_verify:
                info["checksums"] = self.checksums_match(wdir, tree.path)
            self.trees[tree.name] = info
            print(f"bench: tree {tree.name}: {tree.entries} entries, {tree.bytes / 1e6:.0f} MB", file=sys.stderr)
            try:
                ops = self.tree_ops(tree)
            except SetupError as e:
                info["error"] = str(e)
                print(f"bench: tree {tree.name}: set-up failed: {e}", file=sys.stderr)
                continue
            for op in ops:
                self.results.append(measure(tree.name, op, self.tools, a.reps, a.warmup, True))
            if not a.keep:
                rm_rf(wdir)
        if not a.quick or any(o.startswith("container") for o in a.ops or []):
            import container_bench  # the container rows (bench/container_bench.py)

            self.results += container_bench.results(sys.modules[__name__], self)
        try:
            for op in self.startup_ops():
                self.results.append(measure("-", op, self.tools, max(a.reps, 5), a.warmup, True))
        except SetupError as e:
            print(f"bench: start-up ops: {e}", file=sys.stderr)
        if a.scaling:
            self.run_scaling([int(s) for s in a.scaling_sizes.split(",") if s])
        if not a.keep:
            rm_rf(self.work)

    def report(self) -> dict[str, Any]:
        machine = machine_info(self.tools)
        machine["loadavg_start"] = self.load_start
        return {
            "version": 1,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine,
            "config": {"reps": self.args.reps, "warmup": self.args.warmup, "quick": self.args.quick,
                       "statistic": "median", "tools": {t.name: t.argv for t in self.tools},
                       "launcher": self.launcher},
            "console_startup": self.console_startup,
            "trees": self.trees,
            "results": [r.to_json() for r in self.results],
            "scaling": self.scaling,
        }


def machine_info(tools: list[Tool]) -> dict[str, Any]:
    def first(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.strip()

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for ln in f:
                if ln.startswith("MemTotal:"):
                    mem = int(ln.split()[1]) // 1024
    except OSError:
        pass
    ostree_ver = ""
    for ln in first([*tools[1].argv, "--version"]).splitlines():
        if "Version" in ln:
            ostree_ver = ln.split(":", 1)[1].strip().strip("'")
    rev = first(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = first(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", "src"])
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "mem_mb": mem, "kernel": platform.release(),
        "fs": first(["stat", "-f", "-c", "%T", ROOT]), "python": platform.python_version(),
        "ostree": ostree_ver, "pyostree_rev": rev + ("+dirty" if dirty else ""),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------
# output


def _fmt_t(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def _fmt_r(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _fmt_m(kb: int | None) -> str:
    return "n/a" if not kb else f"{kb / 1024:.0f}"


def _row(r: dict[str, Any]) -> list[str]:
    py, c, fl = r["pyostree"] or {}, r["ostree"] or {}, r["floor"] or {}
    note = "; ".join(f"{w}: {d['error']}" for w, d in (("pyostree", py), ("ostree", c)) if d.get("error"))
    return [r["tree"], r["op"], _fmt_t(py.get("median")), _fmt_t(c.get("median")), _fmt_r(r["ratio"]),
            _fmt_r(r.get("ratio_cpu")),
            (f"{_fmt_t(fl.get('median'))} {r['floor_label']}" if r["floor"] else ""),
            _fmt_r(r["ratio_floor_pyostree"]) if r["floor"] else "",
            _fmt_m(py.get("rss_kb")), _fmt_m(c.get("rss_kb")), note[:120]]


HEAD = ["tree", "op", "pyostree", "ostree", "py/c", "py/c cpu", "floor", "py/floor", "py MB", "c MB", "note"]


def print_row(res: Result, out: Any) -> None:
    print("  " + "  ".join(_row(res.to_json())).rstrip(), file=out)


def text_table(rep: dict[str, Any]) -> str:
    rows = [HEAD] + [_row(r) for r in rep["results"]]
    w = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def scaling_md(rep: dict[str, Any]) -> list[str]:
    if not rep["scaling"]:
        return []
    out = ["", "### Scaling (generated trees of small files, bare, --fsync=false, 1 run each)", "",
           "| files | op | pyostree | µs/file | peak MB | ostree | µs/file | peak MB | py/c |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rep["scaling"]:
        n = row["files"]
        for op in ("commit", "checkout"):
            p, c = row.get(f"pyostree_{op}", {}), row.get(f"ostree_{op}", {})
            def cell(d: dict[str, Any], n: int = n) -> list[str]:
                if d.get("error"):
                    return ["n/a", "", ""]
                return [f"{d['secs']:.2f}s", f"{d['secs'] / n * 1e6:.0f}", _fmt_m(d["rss_kb"])]
            ratio = (f"{p['secs'] / c['secs']:.2f}" if not p.get("error") and not c.get("error")
                     and c.get("secs") else "n/a")
            out.append(f"| {n} | {op} | " + " | ".join(cell(p)) + " | " + " | ".join(cell(c)) + f" | {ratio} |")
    return out


def markdown(rep: dict[str, Any]) -> str:
    m = rep["machine"]
    cfg = rep["config"]
    out = [f"## pyostree vs ostree {m['ostree']} — {rep['date']}", "",
           f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_mb']} MB RAM, Linux {m['kernel']}, "
           f"{m['fs']} file system; Python {m['python']}; pyostree {m['pyostree_rev']}; "
           f"load average {m.get('loadavg_start', ['?'])[0]} at start, {m.get('loadavg', ['?'])[0]} at end "
           "(other work on the machine inflates wall times; CPU ratios are steadier).  "
           f"Median of {cfg['reps']} alternating runs after {cfg['warmup']} warm-up; "
           "py/c < 1 means pyostree is faster (wall time); py/c cpu compares user+system "
           "CPU seconds, which other load on the machine disturbs less; peak RSS in MB.", ""]
    for name, t in rep["trees"].items():
        if "error" in t and "entries" not in t:
            out.append(f"- tree **{name}**: not run ({t['error']})")
            continue
        sums = t.get("checksums", {})
        same = ", ".join(f"{mode}: {'identical' if v['match'] else 'DIFFERENT'}" for mode, v in sums.items())
        out.append(f"- tree **{name}**: {t['entries']} entries, {t['bytes'] / 1e6:.0f} MB"
                   + (f" ({t['note']})" if t.get("note") else "")
                   + (f"; commit checksums pyostree vs ostree — {same}" if same else ""))
        du = t.get("delta_update") or {}
        if du.get("pyostree_bytes") and du.get("ostree_bytes"):
            out.append(f"- tree **{name}**, update with {du['files_edited']} files edited: static delta "
                       f"{du['pyostree_bytes'] / 1e3:.1f} kB from pyostree, {du['ostree_bytes'] / 1e3:.1f} kB "
                       f"from ostree ({du['pyostree_bytes'] / du['ostree_bytes']:.2f}x)")
    if cfg.get("launcher"):
        out.append("- pyostree runs through the direct launcher (`scripts/make-launcher.sh`: "
                   "`python -ES`, paths preset), as the test suite runs it.")
    cs = rep.get("console_startup") or {}
    if cs.get("console_version") and cs.get("python_site"):
        out.append(f"- through the pip console script instead, `pyostree --version` takes "
                   f"{cs['console_version'] * 1e3:.0f} ms; this machine's `python -c pass` with site "
                   f"(.pth start-up hooks included) alone takes {cs['python_site'] * 1e3:.0f} ms.")
    out += ["", "| " + " | ".join(HEAD) + " |", "|" + "|".join("---" for _ in HEAD) + "|"]
    for r in rep["results"]:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _row(r)) + " |")
    out += scaling_md(rep)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", help="extra directories to benchmark (alone unless --trees is given)")
    ap.add_argument("--trees", help="comma list of built-in trees: stdlib,debian (default both; --quick: stdlib)")
    ap.add_argument("--ops", type=lambda s: [x for x in s.split(",") if x],
                    help="comma list of operations (prefixes match: commit, checkout, fsck, startup...)")
    ap.add_argument("-n", "--reps", type=int, default=None, help="timed runs per tool and op (default 5, --quick 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--quick", action="store_true", help="fewer runs, stdlib tree only")
    ap.add_argument("--scaling", action="store_true", help="also run the generated-tree scaling series")
    ap.add_argument("--scaling-sizes", default="100000,300000",
                    help="file counts for --scaling (default 100000,300000; add 1000000 to go big)")
    ap.add_argument("--pyostree", help="pyostree command (default: the direct launcher of "
                    "scripts/make-launcher.sh, as the test suite runs it)")
    ap.add_argument("--console-script", action="store_true",
                    help="run pyostree through the pip console script (site and all) instead")
    ap.add_argument("--ostree", default="ostree", help="C ostree command (default: ostree)")
    ap.add_argument("--cache-dir", default=DEFAULT_CACHE, help="trees and scratch space (default .cache/bench)")
    ap.add_argument("--json", default=os.path.join(DEFAULT_RESULTS, "latest.json"))
    ap.add_argument("--md", default=os.path.join(DEFAULT_RESULTS, "latest.md"))
    ap.add_argument("--no-verify", action="store_true", help="skip the checksum comparison")
    ap.add_argument("--keep", action="store_true", help="keep the scratch repositories")
    a = ap.parse_args(argv)
    if a.reps is None:
        a.reps = 3 if a.quick else 5
    b = Bench(a)
    b.run()
    rep = b.report()
    print(text_table(rep))
    if rep["scaling"]:
        print("\n".join(scaling_md(rep)))
    for path, text in ((a.json, json.dumps(rep, indent=1) + "\n"), (a.md, markdown(rep))):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    if a.json:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        if os.path.dirname(os.path.abspath(a.json)) == DEFAULT_RESULTS:
            shutil.copyfile(a.json, os.path.join(DEFAULT_RESULTS, f"run-{stamp}.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
