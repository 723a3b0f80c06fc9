"""kill -9 at random instants of every writing operation; then both fscks pass, every ref lists
recursively, and the operation rerun completes.  ``make torture`` runs 100 trials per operation
and the same trials against the real ostree (recorded, not asserted); ``make test`` a few."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import make_sample_tree, needs_ostree, needs_root
from httpserve import StaticServer
from torture import BIG, PY, TOOLS, copy_tree, kill_trials, repo_sound, run

pytestmark = [needs_root, needs_ostree, pytest.mark.torture]

TOOL_PARAMS = ["pyostree", *(["ostree"] if BIG else [])]
REF = "testos/buildmain/x86_64-runtime"


def _tree(root: Path, n: int = 150) -> Path:
    make_sample_tree(root)
    for i in range(n):
        d = root / f"d{i % 10}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_text(f"file {i}\n" * (i % 7 + 1))
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared inputs: a tree, a source archive repo with history, an OS commit."""
    d = tmp_path_factory.mktemp("torture")
    tree = _tree(d / "tree")
    src = d / "src"
    ostree = TOOLS["ostree"]
    run([*ostree, "init", f"--repo={src}", "--mode=archive"])
    for i in range(4):
        (tree / f"gen{i}").write_text(f"generation {i}\n" * 100)
        run([*ostree, f"--repo={src}", "commit", "-b", "main", "-s", f"c{i}", f"--tree=dir={tree}"])
        run([*ostree, f"--repo={src}", "commit", "-b", "gone", "-s", f"g{i}", f"--tree=dir={tree / 'baz'}"])
    run([*ostree, f"--repo={src}", "summary", "-u"])
    return d


class Work:
    """Fresh copies of a template for each trial."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        self.template = template

    def __call__(self) -> Path:
        w = self.root / "w"
        if w.exists():
            shutil.rmtree(w)
        copy_tree(self.template, w)
        return w


def _report(out: object, tool: str) -> None:
    print(out)
    if tool == "pyostree":
        assert not out.broken and not out.rerun_failed, out  # type: ignore[attr-defined]


@pytest.mark.parametrize("tool", TOOL_PARAMS)
@pytest.mark.parametrize("mode", ["archive", "bare"])
def test_kill_commit(base: Path, tmp_path: Path, tool: str, mode: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    run([*TOOLS[tool], "init", f"--repo={t / 'repo'}", f"--mode={mode}"])
    out = kill_trials(f"commit-{mode}", tool, Work(tmp_path, t),
                      lambda w: [*TOOLS[tool], f"--repo={w / 'repo'}", "commit", "-b", "main",
                                 f"--tree=dir={base / 'tree'}"],
                      lambda w: repo_sound(w / "repo"))
    _report(out, tool)


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_kill_pull_local(base: Path, tmp_path: Path, tool: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    run([*TOOLS[tool], "init", f"--repo={t / 'repo'}", "--mode=bare-user"])
    out = kill_trials("pull-local", tool, Work(tmp_path, t),
                      lambda w: [*TOOLS[tool], f"--repo={w / 'repo'}", "pull-local", "--untrusted",
                                 str(base / "src"), "main", "gone"],
                      lambda w: repo_sound(w / "repo"))
    _report(out, tool)


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_kill_http_pull(base: Path, tmp_path: Path, tool: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    with StaticServer(base) as srv:
        run([*TOOLS[tool], "init", f"--repo={t / 'repo'}", "--mode=archive"])
        run([*TOOLS[tool], f"--repo={t / 'repo'}", "remote", "add", "--no-gpg-verify", "origin",
             f"{srv.url}/src"])
        out = kill_trials("pull-http", tool, Work(tmp_path, t),
                          lambda w: [*TOOLS[tool], f"--repo={w / 'repo'}", "pull", "origin", "main", "gone"],
                          lambda w: repo_sound(w / "repo"))
    _report(out, tool)


@pytest.mark.parametrize("tool", TOOL_PARAMS)
@pytest.mark.parametrize("how", ["refs-only", "depth0"])
def test_kill_prune(base: Path, tmp_path: Path, tool: str, how: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    copy_tree(base / "src", t / "repo")
    run([*PY, f"--repo={t / 'repo'}", "refs", "--delete", "gone"])  # its 4 commits become unreachable
    extra = ["--refs-only"] if how == "refs-only" else ["--refs-only", "--depth=0"]
    out = kill_trials(f"prune-{how}", tool, Work(tmp_path, t),
                      lambda w: [*TOOLS[tool], f"--repo={w / 'repo'}", "prune", *extra],
                      lambda w: repo_sound(w / "repo"))
    _report(out, tool)


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_kill_checkout(base: Path, tmp_path: Path, tool: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    copy_tree(base / "src", t / "repo")
    ref = tmp_path / "reference"
    run([*PY, f"--repo={t / 'repo'}", "checkout", "main", str(ref)])

    def same_as_reference(w: Path) -> list[str]:
        diff = run(["diff", "-r", "--no-dereference", str(ref), str(w / "co")], check=False)
        return [f"checkout differs: {diff.stdout[:300]}"] if diff.returncode != 0 else []

    out = kill_trials("checkout", tool, Work(tmp_path, t),
                      # the rerun goes over what the killed run left (--union), then must equal a clean one
                      lambda w: [*TOOLS[tool], f"--repo={w / 'repo'}", "checkout", "--union", "main",
                                 str(w / "co")],
                      lambda w: repo_sound(w / "repo"), after_rerun=same_as_reference)
    _report(out, tool)


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_kill_static_delta_generate(base: Path, tmp_path: Path, tool: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    copy_tree(base / "src", t / "repo")

    def deltas_sound(w: Path) -> list[str]:
        problems = repo_sound(w / "repo")
        cp = run([*PY, f"--repo={w / 'repo'}", "static-delta", "list"], check=False)
        if cp.returncode != 0:
            problems.append(f"static-delta list: {cp.stderr.strip()}")
        return problems

    def applies(w: Path) -> list[str]:
        # the regenerated delta must be whole: the real ostree applies it to a repo at main^
        dest = w / "dest"
        if dest.exists():
            shutil.rmtree(dest)
        ostree = TOOLS["ostree"]
        run([*ostree, "init", f"--repo={dest}", "--mode=archive"])
        parent = run([*ostree, f"--repo={w / 'repo'}", "rev-parse", "main^"]).stdout.strip()
        run([*ostree, f"--repo={dest}", "pull-local", str(w / "repo"), parent])
        cp = run([*ostree, f"--repo={dest}", "static-delta", "apply-offline",
                  *[str(p) for p in (w / "repo" / "deltas").glob("*/*")][:1]], check=False)
        return [f"apply-offline: {cp.stderr.strip()}"] if cp.returncode != 0 else []

    out = kill_trials("static-delta-generate", tool, Work(tmp_path, t),
                      lambda w: [*TOOLS[tool], f"--repo={w / 'repo'}", "static-delta", "generate", "main"],
                      deltas_sound, after_rerun=applies)
    _report(out, tool)


def test_kill_container_import(tmp_path: Path) -> None:
    from test_container import build_layout, entry, make_tar

    layers = []
    for i in range(4):
        ents = [entry(f"layer{i}/", kind=b"5", mode=0o755)]
        ents += [entry(f"layer{i}/f{j}", data=os.urandom(2000) * (j % 5 + 1)) for j in range(60)]
        layers.append((make_tar(ents), "gzip"))
    layout = tmp_path / "img"
    build_layout(layout, layers)
    t = tmp_path / "t"
    t.mkdir()
    run([*PY, "init", f"--repo={t / 'repo'}", "--mode=bare"])
    out = kill_trials("container-import", "pyostree", Work(tmp_path, t),
                      lambda w: [*PY, f"--repo={w / 'repo'}", "container", "import", f"oci:{layout}:t", "img"],
                      lambda w: repo_sound(w / "repo"))
    _report(out, "pyostree")


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_kill_admin_deploy(tmp_path: Path, tool: str) -> None:
    from test_admin import _make_osdata

    data = tmp_path / "osdata"
    _make_osdata(data)
    osrepo = tmp_path / "osrepo"
    ostree = TOOLS["ostree"]
    run([*ostree, "init", f"--repo={osrepo}", "--mode=archive"])
    run([*ostree, f"--repo={osrepo}", "commit", "--bootable", "-b", REF, "-s", "Build", f"--tree=dir={data}"])
    t = tmp_path / "t"
    sr = t / "sysroot"
    sr.mkdir(parents=True)
    admin = TOOLS[tool]
    run([*admin, "admin", "init-fs", str(sr)])
    run([*admin, "admin", "os-init", "testos", f"--sysroot={sr}"])
    (sr / "boot/loader.0").mkdir()
    os.symlink("loader.0", sr / "boot/loader")
    (sr / "boot/loader/syslinux.cfg").write_text("")
    (sr / "boot/syslinux").mkdir()
    os.symlink("../loader/syslinux.cfg", sr / "boot/syslinux/syslinux.cfg")
    run([*ostree, f"--repo={sr}/ostree/repo", "pull-local", "--remote=testos", str(osrepo), REF])

    def sysroot_sound(w: Path) -> list[str]:
        problems = repo_sound(w / "sysroot" / "ostree" / "repo")
        for name, tool_argv in TOOLS.items():
            cp = run([*tool_argv, "admin", "status", f"--sysroot={w / 'sysroot'}"], check=False)
            if cp.returncode != 0:
                problems.append(f"{name} admin status: {cp.stderr.strip()}")
        return problems

    out = kill_trials("admin-deploy", tool, Work(tmp_path, t),
                      lambda w: [*admin, "admin", "deploy", f"--sysroot={w / 'sysroot'}", "--os=testos",
                                 f"testos:{REF}"],
                      sysroot_sound)
    _report(out, tool)


def _prefix_failures(base: Path, tmp_path: Path, order: str) -> tuple[int, list[str]]:
    """Stop prune after each of its deletions in turn (every instant a kill could hit) and fsck."""
    from pyostree.store.prune import PruneOptions, delete_one, plan_deletions
    from pyostree.store.repo import Repo

    template = tmp_path / "template"
    copy_tree(base / "src", template)
    run([*PY, f"--repo={template}", "refs", "--delete", "gone"])
    repo = Repo.open(str(template))
    _, doomed = plan_deletions(repo, PruneOptions(refs_only=True, depth=0))
    repo.close()
    if order == "directory":  # the order prune used before (and ostree uses): as the objects lie on disk
        doomed.sort()
    failures = []
    for k in range(len(doomed) + 1):
        w = tmp_path / "w"
        copy_tree(template, w)
        r = Repo.open(str(w))
        for csum, objtype in doomed[:k]:
            delete_one(r, csum, objtype)
        r.close()
        problems = repo_sound(w)
        if problems:
            failures.append(f"after {k} deletions: {problems[0][:200]}")
    return len(doomed), failures


def test_every_instant_of_prune_passes_both_fscks(base: Path, tmp_path: Path) -> None:
    n, failures = _prefix_failures(base, tmp_path, "prune")
    assert n >= 8 and not failures, failures  # 4 commits and what only they reach


def test_directory_order_would_break_fsck(base: Path, tmp_path: Path) -> None:
    """The counter-proof: deleting in directory order leaves instants both fscks fail."""
    _, failures = _prefix_failures(base, tmp_path, "directory")
    assert failures
    print(f"directory order: {len(failures)} failing instants, e.g. {failures[0]}")
