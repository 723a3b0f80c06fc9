"""A deployment: one checked-out commit in ``ostree/deploy/OSNAME/deploy/CSUM.SERIAL``."""

from __future__ import annotations

from pyostree.store.keyfile import KeyFile
from pyostree.sysroot.bootconfig import BootConfig

UNLOCKED_NONE = "none"
UNLOCKED_DEVELOPMENT = "development"
UNLOCKED_HOTFIX = "hotfix"
UNLOCKED_TRANSIENT = "transient"


class Deployment:
    def __init__(self, index: int, osname: str, csum: str, deployserial: int,
                 bootcsum: str | None = None, bootserial: int = -1,
                 bootconfig: BootConfig | None = None, origin: KeyFile | None = None,
                 unlocked: str = UNLOCKED_NONE, staged: bool = False) -> None:
        self.index = index
        self.osname = osname
        self.csum = csum
        self.deployserial = deployserial
        self.bootcsum = bootcsum
        self.bootserial = bootserial
        self.bootconfig = bootconfig
        self.origin = origin
        self.unlocked = unlocked
        self.staged = staged

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def equal(self, other: Deployment | None) -> bool:
        """``ostree_deployment_equal``: same osname, commit and deploy serial."""
        if other is None:
            return False
        return (self is other or (self.osname == other.osname and self.csum == other.csum
                                  and self.deployserial == other.deployserial))

    @property
    def dirpath(self) -> str:
        """Path of the deployment root, relative to the sysroot."""
        return f"ostree/deploy/{self.osname}/deploy/{self.csum}.{self.deployserial}"

    @property
    def origin_relpath(self) -> str:
        return f"{self.dirpath}.origin"

    @property
    def is_pinned(self) -> bool:
        if self.origin is None:
            return False
        try:
            return self.origin.get_bool("libostree-transient", "pinned")
        except Exception:
            return False

    @property
    def origin_refspec(self) -> str | None:
        return self.origin.get("origin", "refspec") if self.origin is not None else None

    def clone(self) -> Deployment:
        return Deployment(self.index, self.osname, self.csum, self.deployserial, self.bootcsum,
                          self.bootserial, self.bootconfig.clone() if self.bootconfig else None,
                          KeyFile.parse(self.origin.to_data()) if self.origin is not None else None,
                          self.unlocked, self.staged)
