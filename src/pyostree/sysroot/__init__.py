"""The sysroot half of ostree: deployments of commits as bootable trees.

See core.py for the on-disk layout.  Public API:

* :class:`Sysroot` — load, deploy, write the deployment list, cleanup;
* :class:`Deployment`, :class:`BootConfig`, :class:`KernelArgs`.
"""

from pyostree.sysroot.bootconfig import BootConfig
from pyostree.sysroot.deploy import Sysroot
from pyostree.sysroot.deployment import Deployment
from pyostree.sysroot.kargs import KernelArgs

__all__ = ["BootConfig", "Deployment", "KernelArgs", "Sysroot"]
