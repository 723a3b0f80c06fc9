"""Per-remote GPG keyrings (``REPO/NAME.trustedkeys.gpg``), managed with the ``gpg`` tool.

``ostree remote gpg-import`` and ``remote add --gpg-import`` merge keys into
the remote's keyring, as ``ostree_repo_remote_gpg_import`` does: the existing
keyring and the new keys are loaded into a scratch GnuPG home, and the
merged public keyring is written back atomically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from pyostree.errors import OstreeError
from pyostree.remote.remotes import get_remote

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:
    from pyostree.store.repo import Repo


def _gpg(home: str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("gpg")
    if exe is None:
        raise OstreeError("GPG support needs the gpg program, which was not found")
    # status lines go to stderr, so that --export output on stdout stays clean
    return subprocess.run([exe, "--homedir", home, "--batch", "--no-tty", "--status-fd", "2",
                           "--no-auto-check-trustdb", *args],
                          input=data, capture_output=True, check=False)


def _imported_count(status: bytes) -> int:
    for line in status.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[:2] == ["[GNUPG:]", "IMPORT_RES"]:
            return int(parts[4]) if len(parts) > 4 else 0
    return 0


def gpg_import(repo: Repo, remote: str, key_data: bytes, key_ids: list[str] | None = None) -> int:
    """Add the keys in *key_data* (optionally only *key_ids*) to the remote's keyring; returns how many."""
    r = get_remote(repo, remote)
    keyring = r.keyring
    with tempfile.TemporaryDirectory(prefix="ostree-gpg-") as home:
        os.chmod(home, 0o700)
        src_home = os.path.join(home, "src")
        os.mkdir(src_home, 0o700)
        dst_home = os.path.join(home, "dst")
        os.mkdir(dst_home, 0o700)
        # the keys to import, possibly filtered by ID
        res = _gpg(src_home, "--import", data=key_data)
        if res.returncode not in (0, 2):
            raise OstreeError(f"GPG import failed: {res.stderr.decode('utf-8', 'replace').strip()}")
        export = _gpg(src_home, "--export", *(key_ids or []))
        if export.returncode != 0 or not export.stdout:
            raise OstreeError("GPG: Unable to export keys: GPGME: No data")
        # merge into the existing keyring
        try:
            with open(f"/proc/self/fd/{repo.dfd}/{keyring}", "rb") as f:
                existing = f.read()
        except FileNotFoundError:
            existing = b""
        if existing:
            _gpg(dst_home, "--import", data=existing)
        imported = 0
        if export.stdout:
            res = _gpg(dst_home, "--import", data=export.stdout)
            imported = _imported_count(res.stderr)
        merged = _gpg(dst_home, "--export")
        if merged.returncode != 0:
            raise OstreeError(f"GPG export failed: {merged.stderr.decode('utf-8', 'replace').strip()}")
    from pyostree.store.files import write_file_atomic

    if merged.stdout or existing:
        write_file_atomic(repo.path, keyring, merged.stdout, fsync=not repo.disable_fsync, dir_fd=repo.dfd)
    return imported
