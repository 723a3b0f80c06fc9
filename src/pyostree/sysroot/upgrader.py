"""``ostree admin upgrade`` / ``switch``: pull the origin's ref and deploy it.

Mirrors ``OstreeSysrootUpgrader``: the merge deployment's origin names a
``remote:ref`` (optionally ``override-commit``); the ref is pulled (HTTP(S)
and file:// remotes), end-of-life rebases are followed, a
chronologically older commit is refused unless allowed, and a changed
commit is deployed as the new default.
"""

from __future__ import annotations

import time

from pyostree.errors import OstreeError
from pyostree.store import objects as obj
from pyostree.store.keyfile import KeyFile
from pyostree.store.refs import parse_refspec, write_ref
from pyostree.store.repo import Repo
from pyostree.sysroot.deploy import Sysroot
from pyostree.sysroot.deployment import Deployment


def remove_transient_state(origin: KeyFile) -> None:
    origin.remove_group("libostree-transient")
    origin.remove_key("origin", "override-commit")
    origin.remove_key("origin", "unlocked")


def _fmt_ts(ts: int) -> str:
    return time.strftime("%a %d %b %Y %H:%M:%S %Z", time.gmtime(ts)).replace("GMT", "UTC")


def check_timestamps(repo: Repo, from_rev: str, to_rev: str) -> None:
    cur = repo.load_commit(from_rev).timestamp
    new = repo.load_commit(to_rev).timestamp
    if new > cur or new == cur or from_rev == to_rev:
        return
    raise OstreeError(f"Upgrade target revision '{to_rev}' with timestamp '{_fmt_ts(new)}' is "
                      f"chronologically older than current revision '{from_rev}' with timestamp "
                      f"'{_fmt_ts(cur)}'; use --allow-downgrade to permit")


def pull_remote_refs(repo: Repo, remote: str, refs: list[str], *,
                     timestamp_check_from_rev: str | None = None) -> None:
    """Pull *refs* (names or checksums) from *remote* into *repo* (HTTP(S) or file://)."""
    from pyostree.remote.pull import PullOptions, pull

    pull(repo, remote, refs, PullOptions(timestamp_check_from_rev=timestamp_check_from_rev))


class Upgrader:
    def __init__(self, sysroot: Sysroot, osname: str | None, *, ignore_unconfigured: bool = False) -> None:
        self.sysroot = sysroot
        self.ignore_unconfigured = ignore_unconfigured
        booted = sysroot.booted_deployment
        if booted is None and osname is None:
            raise OstreeError("Not currently booted into an OSTree system and no OS specified")
        if osname is None:
            assert booted is not None
            osname = booted.osname
        elif osname == "":
            raise OstreeError("Invalid empty osname")
        self.osname = osname
        merge = sysroot.get_merge_deployment(osname)
        if merge is None:
            raise OstreeError(f"No previous deployment for OS '{osname}'")
        self.merge_deployment: Deployment = merge
        if merge.origin is None:
            raise OstreeError(f"No origin known for deployment {merge.csum}.{merge.deployserial}")
        self.origin = KeyFile.parse(merge.origin.to_data())
        self.origin_remote: str | None = None
        self.origin_ref = ""
        self.override_csum: str | None = None
        self.new_revision: str | None = None
        self._parse_refspec()

    def set_origin(self, origin: KeyFile) -> None:
        self.origin = origin
        self._parse_refspec()

    def _parse_refspec(self) -> None:
        if not self.ignore_unconfigured:
            state = self.origin.get("origin", "unconfigured-state")
            if state:
                raise OstreeError(f"origin unconfigured-state: {state}")
        refspec = self.origin.get("origin", "refspec")
        if not refspec:
            raise OstreeError("No origin/refspec in current deployment origin; cannot upgrade via ostree")
        self.origin_remote, self.origin_ref = parse_refspec(refspec)
        csum = self.origin.get("origin", "override-commit")
        if csum is not None:
            obj.validate_checksum(csum)
        self.override_csum = csum

    def pull(self, *, allow_older: bool = False, synthetic: bool = False) -> bool:
        """Fetch the origin; True when the target differs from the merge deployment."""
        repo = self.sysroot.repo
        from_rev = self.merge_deployment.csum
        remote = self.origin_remote

        def refspec_of(ref: str) -> str:
            return f"{remote}:{ref}" if remote else ref

        if remote and not synthetic:
            pull_remote_refs(repo, remote, [self.override_csum or self.origin_ref],
                             timestamp_check_from_rev=None if allow_older else from_rev)
        if self.override_csum is None:
            new_rev = repo.resolve_rev(refspec_of(self.origin_ref))
            assert new_rev is not None
            rebase = obj.metadata_lookup(repo.load_commit(new_rev).metadata, "ostree.endoflife-rebase")
            if isinstance(rebase, str):
                if remote and not synthetic:
                    pull_remote_refs(repo, remote, [rebase])
                self.origin_ref = rebase
                self.origin.set("origin", "refspec", refspec_of(rebase))
            new_rev = repo.resolve_rev(refspec_of(self.origin_ref))
            assert new_rev is not None
        else:
            new_rev = self.override_csum
        if from_rev != new_rev and not allow_older:
            check_timestamps(repo, from_rev, new_rev)
        if self.override_csum is not None:
            write_ref(repo, remote, self.origin_ref, self.override_csum)
        self.new_revision = new_rev
        return from_rev != new_rev

    def deploy(self, *, stage: bool = False) -> Deployment:
        assert self.new_revision is not None
        if stage:
            raise OstreeError("Cannot stage deployment: Not currently booted into an OSTree system"
                              if self.sysroot.booted_deployment is None
                              else "Staging deployments is not supported by pyostree")
        new = self.sysroot.deploy_tree(self.osname, self.new_revision, self.origin,
                                       self.merge_deployment, None)
        self.sysroot.simple_write_deployment(self.osname, new, self.merge_deployment)
        return new
