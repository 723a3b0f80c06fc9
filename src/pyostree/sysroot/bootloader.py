"""Boot loader configuration writers, run after the BLS entries are written.

* syslinux: active when ``boot/syslinux/syslinux.cfg`` exists; rewrites
  ``boot/loader.N/syslinux.cfg`` keeping non-ostree ``LABEL`` blocks.
* U-Boot: active when ``boot/loader/uEnv.txt`` exists; writes
  ``boot/loader.N/uEnv.txt`` (``kernel_image``, ``bootargs``... per entry).
* GRUB 2: active when ``boot/grub2/grub.cfg`` or ``boot/efi/EFI/*/grub.cfg``
  exists; runs ``$OSTREE_GRUB2_EXEC`` (or ``grub2-mkconfig``) to write
  ``boot/loader.N/grub.cfg``.

``sysroot.bootloader`` in the repository config selects one explicitly
(``none``, ``auto``, ``syslinux``, ``uboot``, ``grub2``).

A boot loader sees the sysroot only through a :class:`BootTarget` (its fd,
its path and a function giving the BLS entries of a boot version): this
module needs nothing of the Sysroot class.
"""

from __future__ import annotations

import os
import subprocess

from pyostree.errors import OstreeError
from pyostree.sysroot.fsutil import exists_at, read_text_at, replace_contents_at
from pyostree.sysroot.kargs import KernelArgs

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyostree.sysroot.bootconfig import BootConfig
    from pyostree.sysroot.deployment import Deployment


class BootTarget:
    """What a boot loader needs of the sysroot it writes the config of."""

    __slots__ = ("fd", "path", "read_boot_loader_configs")

    def __init__(self, fd: int, path: str,
                 read_boot_loader_configs: Callable[[int], list[BootConfig]]) -> None:
        self.fd = fd
        """The sysroot directory, open."""
        self.path = path
        """Its absolute path (for the tools run on it, and the GRUB/EFI probes)."""
        self.read_boot_loader_configs = read_boot_loader_configs
        """``read_boot_loader_configs(bootversion)``: the BLS entries of ``boot/loader.N``, newest first."""


def join_lines(lines: list[str]) -> str:
    """``_ostree_sysroot_join_lines``: newline-terminated, collapsing runs of empty lines."""
    out: list[str] = []
    prev_empty = False
    for i, line in enumerate(lines):
        if line == "":
            if prev_empty or i == 0:
                continue
            prev_empty = True
        out.append(line + "\n")
    return "".join(out)


def _gsplit(text: str) -> list[str]:
    return text.split("\n") if text else []


class Bootloader:
    name = "none"
    config_path = ""
    """The file whose presence selects this boot loader (``query``)."""

    @property
    def atomic(self) -> bool:
        """Whether writing the config is atomic (libostree's default: yes)."""
        return True

    def query(self, sysroot: BootTarget) -> bool:
        if not self.config_path:
            raise NotImplementedError
        return exists_at(sysroot.fd, self.config_path) is not None

    def write_config(self, sysroot: BootTarget, bootversion: int, deployments: list[Deployment]) -> None:
        raise NotImplementedError

    def post_bls_sync(self, sysroot: BootTarget, bootversion: int) -> None:
        return None


class Syslinux(Bootloader):
    name = "syslinux"
    config_path = "boot/syslinux/syslinux.cfg"

    def write_config(self, sysroot: BootTarget, bootversion: int, deployments: list[Deployment]) -> None:
        lines = _gsplit(read_text_at(sysroot.fd, self.config_path))
        new_lines: list[str] = []
        tmp: list[str] = []
        kernel_arg: str | None = None
        saw_default = regenerate_default = parsing_label = False
        for line in [*lines, None]:
            if parsing_label and (line is None or not line.startswith("\t")):
                parsing_label = False
                if kernel_arg is None:
                    raise OstreeError("No KERNEL argument found after LABEL")
                if not kernel_arg.startswith(("/ostree/", "/boot/ostree/")):
                    new_lines.extend(tmp)
                tmp = []
            if line is None:
                break
            skip = False
            if not parsing_label and line.startswith("LABEL "):
                parsing_label = True
                tmp = []
            elif parsing_label and line.startswith("\tKERNEL "):
                kernel_arg = line[len("\tKERNEL "):]
            elif not parsing_label and line.startswith("DEFAULT "):
                saw_default = True
                if line.startswith("DEFAULT ostree:") or "(ostree" in line:
                    regenerate_default = True
                skip = True
            if not skip:
                (tmp if parsing_label else new_lines).append(line)
        if not saw_default:
            regenerate_default = True
        for i, cfg in enumerate(sysroot.read_boot_loader_configs(bootversion)):
            title = cfg.get("title") or "(Untitled)"
            if regenerate_default and i == 0:
                new_lines.append(f"DEFAULT {title}")
            new_lines.append(f"LABEL {title}")
            val = cfg.get("linux")
            if val is None:
                raise OstreeError('No "linux" key in bootloader config')
            new_lines.append(f"\tKERNEL /boot{val}")
            for key, word in (("initrd", "INITRD"), ("devicetree", "DEVICETREE")):
                val = cfg.get(key)
                if val is not None:
                    new_lines.append(f"\t{word} /boot{val}")
            val = cfg.get("options")
            if val is not None:
                new_lines.append(f"\tAPPEND {val}")
        replace_contents_at(sysroot.fd, f"boot/loader.{bootversion}/syslinux.cfg",
                            join_lines(new_lines).encode(), fsync=True)


class Uboot(Bootloader):
    name = "U-Boot"
    config_path = "boot/loader/uEnv.txt"

    def write_config(self, sysroot: BootTarget, bootversion: int, deployments: list[Deployment]) -> None:
        read_text_at(sysroot.fd, self.config_path)  # must be readable, as in ostree
        new_lines: list[str] = []
        for i, cfg in enumerate(sysroot.read_boot_loader_configs(bootversion)):
            sfx = "" if i == 0 else str(i + 1)
            val = cfg.get("linux")
            if val is None:
                raise OstreeError('No "linux" key in bootloader config')
            new_lines.append(f"kernel_image{sfx}=/boot{val}")
            for key, word in (("initrd", "ramdisk_image"), ("devicetree", "fdt_file"),
                              ("fdtdir", "fdtdir")):
                val = cfg.get(key)
                if val is not None:
                    new_lines.append(f"{word}{sfx}=/boot{val}")
            val = cfg.get("options")
            if val is not None:
                new_lines.append(f"bootargs{sfx}={val}")
                if i == 0:
                    self._append_system_uenv(sysroot, val, new_lines)
        replace_contents_at(sysroot.fd, f"boot/loader.{bootversion}/uEnv.txt",
                            join_lines(new_lines).encode(), fsync=True)

    @staticmethod
    def _append_system_uenv(sysroot: BootTarget, bootargs: str, new_lines: list[str]) -> None:
        ostree_arg = KernelArgs.from_string(bootargs).get_last_value("ostree")
        if not ostree_arg:
            raise OstreeError("No ostree= kernel argument found in boot loader configuration file")
        path = ostree_arg[1:] + "/usr/lib/ostree-boot/uEnv.txt"
        if exists_at(sysroot.fd, path, follow=True) is None:
            return
        try:
            new_lines.append(read_text_at(sysroot.fd, path))
        except OstreeError as e:
            raise OstreeError(f"Reading {path}: {e}", errno=e.errno) from None


class Grub2(Bootloader):
    name = "grub2"

    def __init__(self) -> None:
        self.efi_config: str | None = None

    def query(self, sysroot: BootTarget) -> bool:
        # g_file_query_exists follows symlinks: a dangling grub.cfg link is "absent"
        for rel in ("boot/grub/grub.cfg", "boot/grub2/grub.cfg"):
            if os.path.exists(os.path.join(sysroot.path, rel)):
                return True
        efi = os.path.join(sysroot.path, "boot/efi/EFI")
        if os.path.isdir(efi):
            for ent in sorted(os.scandir(efi), key=lambda e: e.name):
                if ent.name == "BOOT" or not ent.is_dir(follow_symlinks=False):
                    continue
                cfg = os.path.join(ent.path, "grub.cfg")
                if os.path.exists(cfg):
                    self.efi_config = cfg
                    return True
        return False

    @property
    def atomic(self) -> bool:
        return self.efi_config is None

    def write_config(self, sysroot: BootTarget, bootversion: int, deployments: list[Deployment]) -> None:
        exe = os.environ.get("OSTREE_GRUB2_EXEC") or "grub2-mkconfig"
        if self.efi_config is not None:
            new_cfg = os.path.join(os.path.dirname(self.efi_config), "grub.cfg.new")
            if os.path.lexists(new_cfg):
                os.unlink(new_cfg)
        else:
            new_cfg = os.path.join(sysroot.path, f"boot/loader.{bootversion}/grub.cfg")
        env = dict(os.environ)
        env["_OSTREE_GRUB2_BOOTVERSION"] = str(bootversion)
        if self.efi_config is not None:
            env["_OSTREE_GRUB2_IS_EFI"] = "1"
        quiet = not os.environ.get("OSTREE_DEBUG_GRUB2")
        try:
            proc = subprocess.run([exe, "-o", new_cfg], env=env, check=False,
                                  stdout=subprocess.DEVNULL if quiet else None,
                                  stderr=subprocess.DEVNULL if quiet else None)
        except OSError as e:
            raise OstreeError(f"Failed to execute child process “{exe}” ({e.strerror})") from None
        if proc.returncode != 0:
            raise OstreeError(f"{exe}: Child process exited with code {proc.returncode}")
        try:
            fd = os.open(new_cfg, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            if self.efi_config is not None:
                import shutil

                old = os.path.join(os.path.dirname(self.efi_config), "grub.cfg.old")
                if os.path.lexists(old):
                    os.unlink(old)
                shutil.copyfile(self.efi_config, old)
                os.unlink(self.efi_config)
                os.rename(new_cfg, self.efi_config)
        except OSError as e:
            raise OstreeError(f"{e.filename}: {e.strerror}") from None


_BY_NAME: dict[str, type[Bootloader]] = {"syslinux": Syslinux, "uboot": Uboot, "grub2": Grub2}


def query_bootloader(sysroot: BootTarget, choice: str) -> Bootloader | None:
    """The boot loader *choice* names (``sysroot.bootloader`` of the repository config), or with
    ``auto`` the first one found (syslinux, grub2, U-Boot)."""
    if choice == "none":
        return None
    if choice == "auto":
        probe: tuple[type[Bootloader], ...] = (Syslinux, Grub2, Uboot)
        for c in probe:
            bl = c()
            if bl.query(sysroot):
                return bl
        return None
    cls = _BY_NAME.get(choice)
    if cls is None:
        if choice == "zipl":
            raise OstreeError("Bootloader zipl is not supported by pyostree")
        raise OstreeError(f"Invalid bootloader configuration: '{choice}'")
    return cls()
