"""The sysroot half of ostree: deployments of commits as bootable trees.

See core.py for the on-disk layout.  Public API:

* :class:`Sysroot` — load, deploy, write the deployment list, cleanup;
* :class:`Deployment`, :class:`BootConfig`, :class:`KernelArgs`.
"""

from .bootconfig import BootConfig
from .core import Sysroot
from .deployment import Deployment
from .kargs import KernelArgs

__all__ = ["BootConfig", "Deployment", "KernelArgs", "Sysroot"]
