"""ostree admin: pyostree's sysroot code against the real ostree 2022.7.

The same commit (with ``.ostree-wh.*`` overlayfs whiteout markers, a kernel
in /usr/lib/modules and a /usr/etc) is deployed into two sysroots, one by
each implementation, and the results are compared: deployment trees
(whiteouts become char 0:0 devices with the marker's mode and owner), BLS
entries, syslinux.cfg, origin files, bootlinks and deployment refs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, needs_ostree, needs_root

pytestmark = [needs_root, needs_ostree]

REF = "testos/buildmain/x86_64-runtime"
ENV = {"OSTREE_SYSROOT_DEBUG": "mutable-deployments"}
Run = Callable[..., Result]


def _make_osdata(root: Path, *, version: str = "1") -> None:
    for d in ("usr/bin", "usr/lib/modules/3.6.0", "usr/share", "usr/etc/NetworkManager",
              "usr/container/layers/abcd", "usr/etc/testdirectory"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/modules/3.6.0/vmlinuz").write_text("a kernel\n")
    (root / "usr/lib/modules/3.6.0/initramfs.img").write_text("an initramfs\n")
    (root / "usr/lib/modules/3.6.0/.vmlinuz.hmac").write_text("an hmac file\n")
    (root / "usr/bin/sh").write_text(f"an executable {version}\n")
    (root / "usr/share/langs.txt").write_text("some shared data\n")
    (root / "usr/lib/libfoo.so.0").write_text("a library\n")
    if not (root / "bin").is_symlink():
        os.symlink("usr/bin", root / "bin")
    (root / "usr/etc/os-release").write_text('NAME=TestOS\nVERSION=42\nID=testos\nPRETTY_NAME="TestOS 42"\n')
    (root / "usr/etc/aconfigfile").write_text("a config file\n")
    (root / "usr/etc/NetworkManager/nm.conf").write_text("a default daemon file\n")
    (root / "usr/etc/testdirectory/test").write_text("a default daemon file\n")
    wh = root / "usr/container/layers/abcd/.ostree-wh.whiteout"
    wh.write_bytes(b"")
    wh.chmod(0o400)
    wh2 = root / "usr/container/layers/abcd/.ostree-wh.whiteout2"
    wh2.write_bytes(b"")
    wh2.chmod(0o777)
    os.chown(wh2, 42, 43)
    (root / "usr/container/layers/abcd/not-a-whiteout").write_bytes(b"")
    if not (root / "usr/container/layers/abcd/.ostree-wh.symlink").is_symlink():
        os.symlink("target", root / "usr/container/layers/abcd/.ostree-wh.symlink")


@pytest.fixture(scope="module")
def osrepo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess

    base = tmp_path_factory.mktemp("osrepo")
    repo = base / "testos-repo"
    data = base / "osdata"
    _make_osdata(data)
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
    subprocess.run(["ostree", f"--repo={repo}", "commit", "--bootable", "-b", REF, "-s", "Build",
                    "--add-metadata-string", "version=1.0.9", f"--tree=dir={data}"],
                   check=True, capture_output=True)
    return repo


def _sysroot(tmp: Path, name: str, admin: Run, c: Run, osrepo: Path) -> Path:
    sr = tmp / name
    sr.mkdir()
    admin("admin", "init-fs", sr, env=ENV)
    admin("admin", "os-init", "testos", f"--sysroot={sr}", env=ENV)
    (sr / "boot/loader.0").mkdir()
    os.symlink("loader.0", sr / "boot/loader")
    (sr / "boot/loader/syslinux.cfg").write_text("")
    (sr / "boot/syslinux").mkdir()
    os.symlink("../loader/syslinux.cfg", sr / "boot/syslinux/syslinux.cfg")
    c(f"--repo={sr}/ostree/repo", "pull-local", "--remote=testos", osrepo, REF)
    return sr


def _deploy(admin: Run, sr: Path, *extra: str) -> Result:
    return admin("admin", "deploy", f"--sysroot={sr}", "--os=testos", *extra, f"testos:{REF}",
                 env=ENV)


def _tree(root: Path, *, nlink: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything that matters about a tree, keyed by relative path."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = f.read()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            linked = st.st_nlink > 1 if (nlink and stat.S_ISREG(st.st_mode)) else None
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, extra, linked)
    return out


def _layout(sr: Path) -> dict[str, object]:
    """Sysroot layout outside the repo and deployments: names, types, link targets."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(sr):
        rel_dir = os.path.relpath(dirpath, sr)
        if rel_dir.startswith(("ostree/repo", "ostree/deploy/testos/deploy/")):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.normpath(os.path.join(rel_dir, n))
            if rel == "ostree/lock":
                continue
            st = os.lstat(p)
            out[rel] = os.readlink(p) if stat.S_ISLNK(st.st_mode) else stat.S_IFMT(st.st_mode)
    return out


def _deployment_dir(sr: Path) -> Path:
    (d,) = [p for p in (sr / "ostree/deploy/testos/deploy").iterdir() if p.is_dir()]
    return d


@pytest.fixture(scope="module")
def pair(osrepo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One deployment each, by pyostree and by ostree, from the same repo."""
    import sys

    from conftest import REAL_OSTREE, _runner

    py = _runner([sys.executable, "-m", "pyostree"])
    c = _runner([str(REAL_OSTREE)])
    tmp = tmp_path_factory.mktemp("pair")
    srp = _sysroot(tmp, "py", py, c, osrepo)
    src = _sysroot(tmp, "c", c, c, osrepo)
    _deploy(py, srp, "--karg=root=LABEL=foo", "--karg=testkarg=1")
    _deploy(c, src, "--karg=root=LABEL=foo", "--karg=testkarg=1")
    return srp, src


def test_whiteouts_become_char_devices(pair: tuple[Path, Path]) -> None:
    srp, src = pair
    for sr in (srp, src):
        layer = _deployment_dir(sr) / "usr/container/layers/abcd"
        st = os.lstat(layer / "whiteout")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert stat.S_IMODE(st.st_mode) == 0o400
        st2 = os.lstat(layer / "whiteout2")
        assert stat.S_ISCHR(st2.st_mode) and st2.st_rdev == 0
        assert stat.S_IMODE(st2.st_mode) == 0o777 and (st2.st_uid, st2.st_gid) == (42, 43)
        assert not (layer / ".ostree-wh.whiteout").exists()
        # symlinks and ordinary empty files are not markers
        assert (layer / ".ostree-wh.symlink").is_symlink()
        assert (layer / "not-a-whiteout").is_file()


def test_deployment_tree_identical(pair: tuple[Path, Path]) -> None:
    srp, src = pair
    tp, tc = _tree(_deployment_dir(srp)), _tree(_deployment_dir(src))
    assert tp.keys() == tc.keys()
    for k in tp:
        assert tp[k] == tc[k], k
    # /usr comes from repo hardlinks, /etc is a copy
    assert tp["usr/bin/sh"][4] is True
    assert tp["etc/os-release"][4] is False
    assert _deployment_dir(srp).name == _deployment_dir(src).name


def test_boot_config_identical(pair: tuple[Path, Path]) -> None:
    srp, src = pair
    entry = "boot/loader/entries/ostree-1-testos.conf"
    text = (srp / entry).read_text()
    assert text == (src / entry).read_text()
    assert text.startswith("title TestOS 42 1.0.9 (ostree:0)\nversion 1\noptions root=LABEL=foo testkarg=1 ostree=/ostree/boot.1/testos/")
    assert (srp / "boot/loader/syslinux.cfg").read_text() == (src / "boot/loader/syslinux.cfg").read_text()
    dp, dc = _deployment_dir(srp), _deployment_dir(src)
    assert Path(f"{dp}.origin").read_text() == Path(f"{dc}.origin").read_text() == f"[origin]\nrefspec=testos:{REF}\n"
    assert _layout(srp) == _layout(src)
    assert os.readlink(srp / "boot/loader") == "loader.1"


def test_print_current_dir_and_status(pair: tuple[Path, Path], py: Run, c: Run) -> None:
    srp, src = pair
    out = py("admin", f"--sysroot={srp}", "--print-current-dir").out
    assert out == f"{_deployment_dir(srp)}\n"
    sp = py("admin", "status", env={"OSTREE_SYSROOT": str(srp)}).out
    sc = c("admin", "status", env={"OSTREE_SYSROOT": str(src)}).out
    assert sp == sc and "origin refspec: testos:" in sp
    rp = py(f"--repo={srp}/ostree/repo", "refs", "ostree").out
    rc = c(f"--repo={src}/ostree/repo", "refs", "ostree").out
    assert sorted(rp.split()) == sorted(rc.split()) == ["1/1/0"]


def test_redeploy_merges_etc_and_swaps(osrepo: Path, tmp_path: Path, py: Run, c: Run) -> None:
    srs = []
    for name, admin in (("py", py), ("c", c)):
        sr = _sysroot(tmp_path, name, admin, c, osrepo)
        _deploy(admin, sr, "--karg=root=LABEL=MOO", "--karg=quiet")
        etc = _deployment_dir(sr) / "etc"
        (etc / "a-new-config-file").write_text("local\n")
        (etc / "aconfigfile").unlink()
        (etc / "NetworkManager/nm.conf").write_text("changed\n")
        os.symlink("/ENOENT", etc / "a-broken-symlink")
        _deploy(admin, sr)
        _deploy(admin, sr, "--retain")  # 3 deployments: new boot version again
        srs.append(sr)
    srp, src = srs
    assert _layout(srp) == _layout(src)
    for n in (1, 2, 3):
        e = f"boot/loader/entries/ostree-{n}-testos.conf"
        assert (srp / e).read_text() == (src / e).read_text()
    assert (srp / "boot/loader/syslinux.cfg").read_text() == (src / "boot/loader/syslinux.cfg").read_text()
    base = "ostree/deploy/testos/deploy"
    names = sorted(p.name for p in (srp / base).iterdir())
    assert names == sorted(p.name for p in (src / base).iterdir())
    for n in names:
        if n.endswith(".origin"):
            continue
        assert _tree(srp / base / n / "etc", nlink=False) == _tree(src / base / n / "etc", nlink=False)
    newest = sorted(n for n in names if not n.endswith(".origin"))[-1]
    assert os.readlink(srp / base / newest / "etc/a-broken-symlink") == "/ENOENT"
    assert not (srp / base / newest / "etc/aconfigfile").exists()
    # undeploy the first two, compare again
    for admin, sr in ((py, srp), (c, src)):
        admin("admin", "undeploy", f"--sysroot={sr}", "0", env=ENV)
        admin("admin", "undeploy", f"--sysroot={sr}", "0", env=ENV)
    assert _layout(srp) == _layout(src)
    assert (srp / "boot/loader/entries/ostree-1-testos.conf").read_text() == \
        (src / "boot/loader/entries/ostree-1-testos.conf").read_text()


def test_bad_input_errors(osrepo: Path, tmp_path: Path, py: Run, c: Run) -> None:
    sr = _sysroot(tmp_path, "bad", py, c, osrepo)
    r = py("admin", "deploy", f"--sysroot={sr}", "--os=unknown", f"testos:{REF}", check=False, env=ENV)
    assert r.rc == 1 and r.err.startswith("error: ") and "Traceback" not in r.err
    r = py("admin", "deploy", f"--sysroot={sr}", f"testos:{REF}", check=False, env=ENV)
    assert r.rc == 1 and "no --os= argument given" in r.err
    # a hostile boot/loader symlink is refused, not followed
    (sr / "boot/loader").unlink()
    os.symlink("/etc", sr / "boot/loader")
    r = py("admin", "status", f"--sysroot={sr}", check=False)
    assert r.rc == 1 and "Invalid target '/etc' in boot/loader" in r.err
    assert "Traceback" not in r.err
    r = py("admin", "frobnicate", check=False)
    assert r.rc == 1 and "Unknown \"admin\" subcommand 'frobnicate'" in r.err


def test_hostile_osname(tmp_path: Path, py: Run) -> None:
    sr = tmp_path / "s"
    sr.mkdir()
    py("admin", "init-fs", "--modern", sr)
    for bad in ("../evil", "a/b", ".."):
        r = py("admin", "os-init", f"--sysroot={sr}", bad, check=False)
        assert r.rc == 1 and f"Invalid osname '{bad}'" in r.err
    assert not (tmp_path / "evil").exists()
    assert sorted(os.listdir(sr / "ostree/deploy")) == []


def test_kernel_args_semantics() -> None:
    from pyostree.sysroot import KernelArgs

    k = KernelArgs.from_string("root=/dev/sda console=tty0 quiet console=ttyS0")
    k.replace("console=hvc0")
    assert k.to_string() == "root=/dev/sda console=hvc0 quiet"
    k.append("console=ttyS1")
    k.append_if_missing("quiet")
    assert k.to_strv() == ["root=/dev/sda", "console=hvc0", "quiet", "console=ttyS1"]
    k.delete("console=ttyS1")
    k.new_replace("root=/dev/sda=/dev/vda")
    assert k.to_string() == "root=/dev/vda console=hvc0 quiet"
    assert k.get_last_value("root") == "/dev/vda"
    from pyostree.errors import OstreeError

    with pytest.raises(OstreeError, match="No key 'nope' found"):
        k.delete("nope")
    k.append("console=x")
    with pytest.raises(OstreeError, match="Multiple values for key 'console' found"):
        k.new_replace("console=y")


def test_bootconfig_roundtrip() -> None:
    from pyostree.sysroot import BootConfig

    text = ("title T\nversion 2\noptions a=b ostree=/ostree/boot.1/os/x/0\nlinux /k\n"
            "initrd /i\ninitrd /ostree/initramfs-overlays/o.img\nextra val\n")
    b = BootConfig.parse("# comment\n" + text.replace("linux /k\n", "") + "linux\t/k\n")
    assert b.get("linux") == "/k" and b.overlay_initrds == ["/ostree/initramfs-overlays/o.img"]
    assert b.to_text() == text


@pytest.mark.parametrize("loader", ["grub2", "uboot"])
def test_other_bootloaders_match(loader: str, osrepo: Path, tmp_path: Path, py: Run, c: Run) -> None:
    gen = "/usr/libexec/installed-tests/libostree/ostree-grub-generator"
    if loader == "grub2" and not os.path.exists(gen):
        pytest.skip("needs ostree-grub-generator (ostree-tests)")
    env = dict(ENV)
    outs = []
    for name, admin in (("py", py), ("c", c)):
        sr = tmp_path / name
        sr.mkdir()
        admin("admin", "init-fs", sr, env=ENV)
        admin("admin", "os-init", "testos", f"--sysroot={sr}", env=ENV)
        if loader == "grub2":
            (sr / "boot/grub2").mkdir()
            (sr / "boot/grub2/grub.cfg").write_text("")
            env.update(OSTREE_GRUB2_EXEC=gen, OSTREE_BOOT_PARTITION="/boot")
            cfg = "boot/loader/grub.cfg"
        else:
            (sr / "boot/loader.0").mkdir()
            os.symlink("loader.0", sr / "boot/loader")
            (sr / "boot/loader/uEnv.txt").write_text("")
            cfg = "boot/loader/uEnv.txt"
        c(f"--repo={sr}/ostree/repo", "pull-local", "--remote=testos", osrepo, REF)
        for extra in (["--karg=root=LABEL=x", "--karg-append=console=a", "--karg-append=console=b"], []):
            admin("admin", "deploy", f"--sysroot={sr}", "--os=testos", *extra, f"testos:{REF}", env=env)
        outs.append((sr / cfg).read_text().replace(str(sr), "SYSROOT"))
    assert outs[0] == outs[1]
    assert "console=a console=b" in outs[0]


def test_config_diff_matches(pair: tuple[Path, Path], py: Run, c: Run) -> None:
    srp, src = pair
    outs = []
    for admin, sr in ((py, srp), (c, src)):
        etc = _deployment_dir(sr) / "etc"
        (etc / "local-added").write_text("x\n")
        (etc / "aconfigfile").write_text("changed\n")
        outs.append(admin("admin", "config-diff", f"--sysroot={sr}", "--os=testos").out)
    assert outs[0] == outs[1]
    assert sorted(outs[0].splitlines()) == ["A    local-added", "M    aconfigfile"]


def test_command_output_matches(osrepo: Path, tmp_path: Path, py: Run, c: Run) -> None:
    """stdout/stderr of a deploy/undeploy/pin/status session, and --help texts, are ostree's."""
    logs = []
    for name, admin in (("py", py), ("c", c)):
        sr = _sysroot(tmp_path, name, admin, c, osrepo)
        out: list[str] = []
        for args in (["deploy", "--os=testos", f"testos:{REF}"], ["deploy", "--os=testos", f"testos:{REF}"],
                     ["undeploy", "1"], ["pin", "0"], ["pin", "0"], ["status"], ["undeploy", "7"],
                     ["pin", "x"], ["deploy", "--os=testos", "no-such-ref"]):
            r = admin("admin", args[0], f"--sysroot={sr}", *args[1:], check=False, env=ENV)
            out.append(f"{args} rc={r.rc}\n{r.out}{r.err}".replace(str(sr), "SR"))
        logs.append(out)
    assert logs[0] == logs[1]
    assert any("Copying /etc changes: 0 modified, 0 removed, 0 added" in x for x in logs[0])
    from conftest import REAL_OSTREE

    def norm(text: str) -> str:  # ostree prints argv[0] as invoked, pyostree its own name
        return text.replace(f"{REAL_OSTREE} ", "ostree ").replace("  pyostree ", "  ostree ")

    for sub in ("deploy", "status", "upgrade", "set-origin"):
        assert norm(py("admin", sub, "--help").out) == norm(c("admin", sub, "--help").out)
    assert norm(py("admin", check=False).err) == norm(c("admin", check=False).err)


def test_etc_merge_never_writes_through_symlinks(tmp_path: Path) -> None:
    """A symlinked directory in the new /etc is not followed by the merge."""
    from pyostree.errors import OstreeError
    from pyostree.store.repo import Repo
    from pyostree.sysroot.etcmerge import merge_etc

    old, new, outside = tmp_path / "old", tmp_path / "new", tmp_path / "outside"
    for d in (old / "usr/etc/sub", old / "etc/sub", new / "etc", outside):
        d.mkdir(parents=True)
    (old / "etc/sub/added").write_text("x\n")
    os.symlink(str(outside), new / "etc/sub")
    repo = Repo.create(str(tmp_path / "repo"))
    with pytest.raises(OstreeError, match="is a symlink"):
        merge_etc(repo, str(old), str(new))
    assert list(outside.iterdir()) == []


@needs_ostree
def test_remote_add_through_deployment_sysroot(tmp_path: Path, py: Run, c: Run) -> None:
    """``--sysroot=DEPLOYMENT remote add``: a deployment (a non-physical sysroot) keeps its remotes
    in its own etc/ostree/remotes.d; core.add-remotes-config-dir=false sends them to the repo config."""
    results = {}
    for name, tool in (("py", py), ("c", c)):
        top = tmp_path / name
        (top / "sysroot").mkdir(parents=True)
        tool("admin", "init-fs", str(top / "sysroot"))
        dep = top / "deploy"
        (dep / "etc").mkdir(parents=True)
        os.symlink("../sysroot", dep / "sysroot")
        os.symlink("sysroot/ostree", dep / "ostree")
        tool(f"--sysroot={dep}", "remote", "add", "--set=gpg-verify=false", "r1", "file:///srv/r1")
        conf = dep / "etc/ostree/remotes.d/r1.conf"
        repo_config = (top / "sysroot/ostree/repo/config").read_text()
        tool(f"--repo={top}/sysroot/ostree/repo", "config", "set", "core.add-remotes-config-dir", "false")
        tool(f"--sysroot={dep}", "remote", "add", "--set=gpg-verify=false", "r2", "file:///srv/r2")
        results[name] = (conf.read_text(), "r1" in repo_config,
                         (dep / "etc/ostree/remotes.d/r2.conf").exists(),
                         'remote "r2"' in (top / "sysroot/ostree/repo/config").read_text(),
                         tool(f"--repo={top}/sysroot/ostree/repo", "remote", "list").out)
    assert results["py"] == results["c"]
    conf_text, r1_in_config, r2_file, r2_in_config, listed = results["py"]
    assert "file:///srv/r1" in conf_text and not r1_in_config
    assert not r2_file and r2_in_config
    assert listed.split() == ["r2"]  # r1 lives in the deployment's /etc, not this repo's


def test_status_prints_gpg_lines_like_ostree(osrepo: Path, tmp_path: Path, py: Run, c: Run) -> None:
    """``admin status`` (and ``--verify``) prints a signed deployment's signatures as ``GPG: ...``
    lines, checked against the keyring of the remote named as the OS, as ostree does."""
    import shutil
    import subprocess

    gpghome_src = Path("/usr/libexec/installed-tests/libostree/gpghome")
    if not gpghome_src.is_dir() or shutil.which("gpg") is None:
        pytest.skip("needs gpg and ostree's test keys (ostree-tests)")
    home = tmp_path / "gpghome"
    shutil.copytree(gpghome_src, home)
    home.chmod(0o700)
    signed = tmp_path / "signed-repo"
    subprocess.run(["ostree", "init", f"--repo={signed}", "--mode=archive"], check=True)
    subprocess.run(["ostree", f"--repo={signed}", "pull-local", str(osrepo), REF], check=True,
                   capture_output=True)
    subprocess.run(["ostree", f"--repo={signed}", "gpg-sign", f"--gpg-homedir={home}", REF,
                    "7FCA23D8472CDAFA"], check=True, capture_output=True)
    try:
        outs = {}
        for name, tool in (("py", py), ("c", c)):
            sr = _sysroot(tmp_path, name, tool, c, signed)
            tool(f"--repo={sr}/ostree/repo", "remote", "add", f"--gpg-import={home}/key1.asc",
                 "--force", "testos", "file:///unused")
            c(f"--repo={sr}/ostree/repo", "pull-local", "--remote=testos", signed, REF)
            _deploy(tool, sr)
            env = {**ENV, "OSTREE_SYSROOT": str(sr), "TZ": "UTC"}
            plain = tool("admin", "status", env=env).out
            verify = tool("admin", "status", "--verify", env=env).out
            outs[name] = (plain, verify)
        assert outs["py"] == outs["c"]
        plain, verify = outs["py"]
        assert "    GPG: Signature made" in plain and "Good signature from" in plain
        assert verify.count("\nGPG: Signature made") == 1 and verify.endswith('>"\n\n')
    finally:
        subprocess.run(["gpg-connect-agent", "--homedir", str(home), "killagent", "/bye"],
                       capture_output=True, check=False)
